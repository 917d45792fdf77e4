import { relative } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import type { Command } from 'commander';
import { formatDuration } from '../../core/duration.js';
import { AbortError, UsageError } from '../../core/errors.js';
import { withoutUrlCredentials } from '../../core/printable.js';
import { FLEET_LEASE_MS, RUNTIME_DEFAULTS } from '../../runtime/defaults.js';
import { loadHandler } from '../../runtime/handler.js';
import { parseMode } from '../../runtime/mode.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { exitCodeFor } from '../exit.js';
import { keepServingWithoutOutput, loadWatched, trapRunnerExit } from '../handler-exit.js';
import { projectManifest } from '../manifest.js';
import { durationOption, intOption, listenError, sharedJournalUrl } from '../options.js';
import { action, addGlobalOptions, examples, ReportedError } from '../program.js';
import { shutdownSignals } from '../signals.js';
import { capYoungGeneration } from '../young-generation.js';

export interface RunOptions {
  handler?: string;
  mode?: string;
  manifest?: string;
  concurrency?: string;
  timeout?: string;
  grace?: string;
  interval?: string;
  logFormat?: string;
  logPayloads?: boolean;
  fsync?: boolean;
  healthPort?: string;
  healthHost?: string;
  maxCrashes?: string;
  journal?: string;
  lease?: string;
  standby?: boolean;
  listen?: string;
  publicUrl?: string;
  catchUp?: string;
}

/** Where `--mode webhook` listens when `--listen` is not given. */
export const DEFAULT_WEBHOOK_LISTEN = '127.0.0.1:8787';

/**
 * `--listen host:port` (also `:port`, `port`, `[::1]:port`; port 0 = any free port). A host that
 * is not a loopback address needs `--public-url`: the URL the relay must reach cannot be inferred
 * from `0.0.0.0` or an interface address (NAT, proxies, TLS in front).
 */
export function webhookListen(
  listen: string | undefined,
  publicUrl: string | undefined,
): { host: string; port: number; publicUrl?: string } {
  const value = listen ?? DEFAULT_WEBHOOK_LISTEN;
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new UsageError(`--listen: "${value}" must be host:port (e.g. 127.0.0.1:8787, 0.0.0.0:8787, :0)`, {
      code: 'invalid_argument',
    });
  }
  const host = m[1] || m[2] || '127.0.0.1';
  if (publicUrl !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(publicUrl);
    } catch {
      url = undefined;
    }
    if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.search || url.hash) {
      throw new UsageError(
        `--public-url: "${withoutUrlCredentials(publicUrl)}" must be an absolute http:// or https:// URL without query or fragment (e.g. https://agent.example.com/hook)`,
        { code: 'invalid_argument' },
      );
    }
    // The relay refuses a webhook URL with credentials; said here, before the URL (and its
    // password) is shown in the `webhook` line and sent.
    if (url.username !== '' || url.password !== '') {
      throw new UsageError(
        `--public-url: "${withoutUrlCredentials(publicUrl)}" must not contain a user name or password: relays refuse them (deliveries are signed with the runner's secret instead)`,
        { code: 'invalid_argument' },
      );
    }
    return { host, port, publicUrl: url.href };
  }
  if (!isLoopback(host)) {
    throw new UsageError(
      `--listen ${value}: the relay cannot be told where to post from "${host}"; add --public-url (the URL the relay reaches this runner at)`,
      {
        code: 'public_url_required',
        hint: 'e.g. --public-url https://agent.example.com/hook behind a TLS proxy that forwards to this port',
      },
    );
  }
  return { host, port };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * How V8 sizes a runner's heap. A runner lives long and its live data is small, so the heap is
 * kept near it: the old generation grows by 15% at a time, and the young generation may grow
 * under load to 2 × 8 MiB, then no further (`young-generation.ts`; V8 alone would go to 2 × 16
 * MiB, all of it resident; held at its first 2 × 1 MiB, the messages waiting their turn outlive
 * it and are copied at every scavenge). Measured with `bench/quick.ts ws` (100,000 echo messages,
 * 1,000 in flight), runner CPU per message and RSS at the end: ~79 µs and ~100 MB; held at 1 MiB
 * ~95 µs and ~89 MB (the previous setting); `--optimize-for-size` (before that) ~185 µs and ~96 MB;
 * V8's defaults ~62 µs and ~120–150 MB. Scavenges run on the main thread alone
 * (`--no-parallel-scavenge`): a runner's young generation is small, and handing a few MB of
 * survivors to helper threads cost more CPU than it saved (~4 µs per message: lower in 9 of 10
 * alternating pairs on 2 cores, equal in the tenth; an agent host runs many runners, each with its
 * own helpers). Only flags V8 reads while running take effect here (the semi-space *size* flags
 * are read once, at start-up).
 */
export const RUNNER_V8_FLAGS = '--heap-growing-percent=15 --no-parallel-scavenge';
/** The new space (both semi-spaces) at which the young generation stops growing. */
export const RUNNER_YOUNG_GENERATION_BYTES = 16 * 1024 * 1024;
// `MRP_RUNNER_V8_FLAGS` replaces both (empty: V8's defaults); README, "Performance".

/** `mrp run`: keeps a handler online until SIGINT/SIGTERM. */
export async function runRun(ctx: CliContext, options: RunOptions): Promise<void> {
  if (!options.handler) {
    throw new UsageError('--handler <path> is required (e.g. --handler ./handler.ts)', {
      code: 'missing_argument',
      hint: 'create one with `mrp init`',
    });
  }
  const mode = parseMode(options.mode ?? 'websocket', '--mode');
  if (mode !== 'webhook') {
    const flag = [
      ['listen', options.listen],
      ['public-url', options.publicUrl],
      ['catch-up', options.catchUp],
    ].find(([, value]) => value !== undefined)?.[0];
    if (flag) throw new UsageError(`--${flag} only applies to --mode webhook`, { code: 'invalid_argument' });
  }
  const webhook =
    mode === 'webhook'
      ? {
          ...webhookListen(options.listen, options.publicUrl),
          ...(options.catchUp === undefined
            ? {}
            : { catchUpIntervalMs: durationOption(options.catchUp, '--catch-up', 0) }),
        }
      : undefined;
  const logFormat = options.logFormat ?? (ctx.out.isTTY && !ctx.globals.json ? 'pretty' : 'json');
  if (logFormat !== 'pretty' && logFormat !== 'json')
    throw new UsageError(`--log-format: "${logFormat}" must be pretty or json`, { code: 'invalid_argument' });
  const concurrency = intOption(options.concurrency, '--concurrency', RUNTIME_DEFAULTS.concurrency, 1, 10_000);
  const timeoutMs = durationOption(options.timeout, '--timeout', RUNTIME_DEFAULTS.timeoutMs);
  if (timeoutMs <= 0) throw new UsageError('--timeout must be longer than 0', { code: 'invalid_argument' });
  const graceMs = durationOption(options.grace, '--grace', RUNTIME_DEFAULTS.graceMs);
  const intervalMs = options.interval === undefined ? undefined : durationOption(options.interval, '--interval', 2000);
  const healthPort =
    options.healthPort === undefined ? undefined : intOption(options.healthPort, '--health-port', 0, 0, 65535);
  const maxCrashes = intOption(options.maxCrashes, '--max-crashes', RUNTIME_DEFAULTS.maxCrashes, 1, 1000);
  const journalUrl = sharedJournalUrl(options.journal ?? ctx.deps.env['MRP_JOURNAL']);
  if (!journalUrl) {
    const flag = options.lease !== undefined ? 'lease' : options.standby ? 'standby' : undefined;
    if (flag)
      throw new UsageError(`--${flag} only applies with a shared journal`, {
        code: 'invalid_argument',
        hint: 'add --journal postgres://user:password@host:port/database (or set MRP_JOURNAL), or drop the flag',
      });
  }
  if (options.standby && mode !== 'websocket')
    throw new UsageError(`--standby waits for a WebSocket slot; --mode ${mode} never takes one`, {
      code: 'invalid_argument',
      hint: 'drop --standby, or run with --mode websocket',
    });
  const leaseMs = options.lease === undefined ? undefined : durationOption(options.lease, '--lease', FLEET_LEASE_MS);
  if (leaseMs !== undefined && leaseMs < 1000)
    throw new UsageError('--lease must be at least 1s', { code: 'invalid_argument' });

  const settings = await ctx.settings();
  const { keypair } = await ctx.identity();
  const handlerFile = options.handler;
  const loaded = await loadWatched(() => loadHandler(handlerFile, { cwd: ctx.deps.cwd }), {
    onExitCall: 'exit',
    report: (err) => ctx.out.error(err),
  });
  const manifest = await projectManifest(ctx, options.manifest);

  // Health and metrics load only when asked for.
  const ops = healthPort === undefined ? undefined : await startOps(options.healthHost ?? '127.0.0.1', healthPort);
  let exitTrap: { dispose(): void } | undefined;
  // Process-wide: set once the command line is known to be good, undone when the runner ends.
  const v8Flags = process.env['MRP_RUNNER_V8_FLAGS'];
  setFlagsFromString(v8Flags ?? RUNNER_V8_FLAGS);
  const uncapYoungGeneration = v8Flags === undefined ? capYoungGeneration(RUNNER_YOUNG_GENERATION_BYTES) : undefined;
  try {
    // The runtime (ws, jiti) loads only here, so `mrp --help` stays fast.
    const { startAgent } = await import('../agent.js');
    // A standby may wait for a WebSocket slot for hours: SIGINT/SIGTERM then ends the wait and the
    // command (exit 0, its fleet row removed) instead of killing the process. Other runners keep the
    // default handling until they have started (a second Ctrl-C must still end a slow start-up).
    const standby = journalUrl !== undefined && options.standby === true;
    let signals = standby ? shutdownSignals(ctx.deps) : undefined;
    const stopWaiting = new AbortController();
    void signals?.first.then(() => stopWaiting.abort());
    let started: Awaited<ReturnType<typeof startAgent>>;
    try {
      started = await startAgent(ctx, {
        relayUrl: settings.relay.value,
        keypair,
        handler: loaded.handler,
        handlerLabel: relative(ctx.deps.cwd, loaded.file) || loaded.file,
        mode,
        ...(webhook ? { webhook } : {}),
        concurrency,
        timeoutMs,
        graceMs,
        ...(intervalMs === undefined ? {} : { intervalMs }),
        manifest,
        logFormat,
        payloads: options.logPayloads === true,
        fsync: options.fsync === true,
        trace: ops ? ops.monitor.tracers(ctx.tracers) : ctx.tracers,
        maxCrashes,
        ...(journalUrl
          ? {
              sharedJournal: {
                url: journalUrl,
                standby: options.standby === true,
                ...(leaseMs === undefined ? {} : { leaseMs }),
                signal: stopWaiting.signal,
              },
            }
          : {}),
      });
    } catch (err) {
      signals?.dispose();
      // Stopped while waiting as a standby: it held nothing, so this is a clean stop.
      if (stopWaiting.signal.aborted && err instanceof AbortError) return;
      throw err;
    }
    const { runtime, reporter, journal, journalPath } = started;
    if (ops) {
      ops.monitor.attach(runtime, journalPath, mode);
      reporter.line(ctx.out.style.dim(`  health ${ops.server.url}/healthz · /readyz · /metrics`));
      reporter.event('health', { url: ops.server.url });
    }

    signals ??= shutdownSignals(ctx.deps);
    keepServingWithoutOutput();
    const offUncaught = ctx.deps.onUncaught((err) => reporter.problem('uncaught', err));
    exitTrap = trapRunnerExit(
      { reporter, journal },
      'the runner',
      ` (after ${maxCrashes} such runs the message is answered with handler_crashed)`,
    );
    let fatal: unknown;
    runtime.on('fatal', (err) => (fatal = err));
    try {
      runtime.start();
      const first = await Promise.race([signals.first, runtime.finished.then(() => undefined)]);
      if (first) {
        await signals.finishOrInterrupt(runtime.stop());
      }
      await runtime.finished;
    } finally {
      signals.dispose();
      offUncaught();
      // A second Ctrl-C ends the process at once (exit 130): what was logged goes out first.
      reporter.flush();
    }
    if (fatal) {
      reporter.problem('fatal', fatal);
      throw new ReportedError(exitCodeFor(fatal));
    }
  } finally {
    exitTrap?.dispose();
    uncapYoungGeneration?.();
    await ops?.server.close();
  }
}

/** The /healthz, /readyz, /metrics server, listening before the runner starts. */
async function startOps(host: string, port: number) {
  const [{ RunnerMonitor }, { startOpsServer }] = await Promise.all([
    import('../metrics.js'),
    import('../health-server.js'),
  ]);
  const monitor = new RunnerMonitor();
  try {
    return { monitor, server: await startOpsServer({ host, port, routes: monitor.routes() }) };
  } catch (err) {
    const flag = (err as NodeJS.ErrnoException)?.code === 'EADDRINUSE' ? '--health-port' : '--health-host';
    throw listenError(err, flag, `${host}:${port}`, 'pick another port, or stop the other process');
  }
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('run')
    .description('run a handler as an agent: stays connected, answers every message exactly once')
    .option('-H, --handler <path>', 'handler module (.ts .mts .cts .js .mjs .cjs)')
    .option('-m, --mode <mode>', 'websocket (push), poll, or webhook (the relay POSTs to --listen)', 'websocket')
    .option(
      '--listen <host:port>',
      `webhook mode: where to serve deliveries (0 = any free port; default ${DEFAULT_WEBHOOK_LISTEN})`,
    )
    .option(
      '--public-url <url>',
      'webhook mode: the URL the relay posts to, when it is not http://<listen>/ (a TLS proxy, a load balancer); its path is served',
    )
    .option(
      '--catch-up <duration>',
      'webhook mode: how often to poll for what deliveries did not bring (default 5m; 0 = at start and after declined deliveries only)',
    )
    .option('--manifest <file>', 'announce this profile at start (default: ./mrp.yaml if present)')
    .option('-c, --concurrency <n>', 'handlers running at once', String(RUNTIME_DEFAULTS.concurrency))
    .option('-t, --timeout <duration>', 'per-message handler deadline', formatDuration(RUNTIME_DEFAULTS.timeoutMs))
    .option(
      '--grace <duration>',
      'on SIGINT/SIGTERM, how long running handlers may finish',
      formatDuration(RUNTIME_DEFAULTS.graceMs),
    )
    .option('--interval <duration>', 'poll mode: pause between polls when the relay has no long poll')
    .option('--log-format <format>', 'pretty | json (default: pretty on a terminal, json when piped)')
    .option('--log-payloads', 'include message bodies in the output')
    .option('--fsync', 'sync the journal to disk before each step (survives power cuts, not just crashes; slower)')
    .option(
      '--health-port <port>',
      'serve /healthz, /readyz and /metrics (Prometheus) on this port (0 = any free port)',
    )
    .option('--health-host <host>', 'address for --health-port (use 0.0.0.0 in a container)', '127.0.0.1')
    .option(
      '--journal <url>',
      'share the journal with a fleet of runners of this identity: postgres://… (default: local; $MRP_JOURNAL)',
    )
    .option(
      '--lease <duration>',
      `with a shared journal: how long a dead runner holds its messages before another takes them over (default: ${formatDuration(FLEET_LEASE_MS)})`,
    )
    .option('--standby', 'with a shared journal: when both WebSocket slots are held, wait for one instead of polling')
    .option(
      '--max-crashes <n>',
      'runs of a handler on one message that may end the process before it is answered with handler_crashed',
      String(RUNTIME_DEFAULTS.maxCrashes),
    );
  examples(addGlobalOptions(cmd, { logPayloads: false }), [
    'mrp run --handler ./handler.ts',
    'mrp run -H handlers/echo.ts --relay http://127.0.0.1:8080',
    'mrp run -H ./handler.ts --mode poll --concurrency 2 --timeout 10s',
    'mrp run -H ./handler.ts --mode webhook --listen 0.0.0.0:8787 --public-url https://agent.example.com/hook',
    'mrp run -H ./handler.ts --log-format json | jq .',
    'mrp run -H ./handler.ts --health-port 9090   # curl localhost:9090/readyz',
    'mrp run -H ./handler.ts --journal postgres://mrp@db/mrp   # one of a fleet',
  ]);
  cmd.addHelpText(
    'after',
    `
Handler contract:
  export default async (msg, ctx) => ({ ok: true })   // the return value is the reply
  A string becomes {"text": …}; undefined/null sends no reply; a thrown error becomes
  {"status":"error","error":{"code","message"}}. ctx: self, signal, log, reply(), send(), redelivered.
  A handler that calls process.exit ends the runner with exit code 70; after --max-crashes such
  runs (or other crashes) on one message, it is answered with handler_crashed and not run again.
`,
  );
  cmd.action(action(deps, runRun));
}
