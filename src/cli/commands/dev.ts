import { existsSync, type FSWatcher, watch } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { MrpError, UsageError } from '../../core/errors.js';
import { Keypair } from '../../protocol/signing.js';
import type { Relay } from '../../relay/index.js';
import { RUNTIME_DEFAULTS } from '../../runtime/defaults.js';
import { loadHandler } from '../../runtime/handler.js';
import { type AgentMode, parseMode } from '../../runtime/mode.js';
import { ensureDir, expandPath } from '../config.js';
import type { CliContext } from '../context.js';
import { type Deps, selfCommand } from '../deps.js';
import { EXIT } from '../exit.js';
import { loadWatched, trapRunnerExit } from '../handler-exit.js';
import { readKeyFile, writeKeyFile } from '../keys.js';
import { takeLock } from '../lockfile.js';
import { projectManifest } from '../manifest.js';
import { DEV_MODES, intOption, listenError } from '../options.js';
import { action, addGlobalOptions, examples, ReportedError } from '../program.js';
import { bodyPreview } from '../render.js';
import { shutdownSignals } from '../signals.js';

export interface DevOptions {
  handler?: string;
  port?: string;
  mode?: string;
  demo?: boolean;
  watch?: boolean;
  once?: boolean;
}

const ECHO = fileURLToPath(new URL('../../../handlers/echo.ts', import.meta.url));
const DEFAULT_PORT = 8787;

async function devKey(path: string): Promise<Keypair> {
  if (!existsSync(path)) {
    const kp = Keypair.generate();
    await writeKeyFile(path, kp);
    return kp;
  }
  return (await readKeyFile(path)).keypair;
}

/**
 * `mrp dev`: a relay and a handler on this machine, wired together. Sends a first message so
 * the whole path is visible at once, prints a ready-to-paste `mrp send`, shows the traffic, and
 * reloads the handler when its files change.
 */
export async function runDev(ctx: CliContext, options: DevOptions): Promise<void> {
  const mode = parseMode(options.mode ?? 'websocket', '--mode', DEV_MODES);
  if (ctx.globals.relay !== undefined) {
    throw new UsageError('--relay: `mrp dev` runs its own relay on this machine', {
      code: 'invalid_argument',
      hint: `to run a handler against another relay: \`${selfCommand(ctx.deps.env)} run --handler <file> --relay ${ctx.globals.relay}\``,
    });
  }
  const port = intOption(options.port, '--port', DEFAULT_PORT, 0, 65535);
  const handlerPath = options.handler ? resolve(ctx.deps.cwd, options.handler) : ECHO;
  const shown = options.handler ? relative(ctx.deps.cwd, handlerPath) || handlerPath : 'the bundled echo handler';
  const loaded = await loadWatched(() => loadHandler(handlerPath, { cwd: ctx.deps.cwd }), {
    onExitCall: 'exit',
    report: (err) => ctx.out.error(err),
  });

  const home = join(ctx.home, 'dev');
  await ensureDir(home);
  // One `mrp dev` per MRP_HOME: a second one would share the relay data and the agent's journal.
  const lock = takeLock(join(home, 'lock'));
  if ('heldBy' in lock) {
    throw new MrpError(
      'api',
      'dev_running',
      `another mrp dev (pid ${lock.heldBy}) is already running with MRP_HOME=${ctx.home}`,
      {
        hint: `use that one (it prints its \`mrp send\` command), stop it, or start another with its own state: \`MRP_HOME=$(mktemp -d) ${selfCommand(ctx.deps.env)} dev\``,
      },
    );
  }
  let relay: Relay | undefined;
  try {
    // --key: the agent runs as that identity (created if missing); by default a dev-only key.
    const agentKeyPath =
      ctx.globals.key === undefined ? join(home, 'agent.key') : expandPath(ctx.globals.key, ctx.deps);
    const agentKey = await devKey(agentKeyPath);
    const userKeyPath = join(home, 'user.key');
    const userKey = await devKey(userKeyPath);

    const { createRelay } = await import('../../relay/index.js');
    const makeRelay = (p: number): Relay =>
      createRelay({
        host: '127.0.0.1',
        port: p,
        dataDir: join(home, 'data'),
        sendRatePerMinute: 0,
        receiveRatePerMinute: 0,
        requestRatePerMinute: 0,
        clock: ctx.deps.clock,
        allowPrivateWebhooks: true,
      });
    relay = makeRelay(port);
    let url: string;
    try {
      url = await relay.listen();
    } catch (err) {
      await relay.close();
      relay = undefined;
      // The default port taken: any free one. A --port given and taken: say so, naming the flag.
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || options.port !== undefined)
        throw listenError(err, '--port', `127.0.0.1:${port}`, 'pick another with --port (0 = any free one)');
      relay = makeRelay(0);
      url = await relay.listen();
    }
    await runAgainst(ctx, options, { url, home, agentKey, userKey, userKeyPath, handlerPath, shown, loaded, mode });
  } finally {
    await relay?.close();
    lock.release();
  }
}

interface DevSetup {
  url: string;
  home: string;
  agentKey: Keypair;
  userKey: Keypair;
  userKeyPath: string;
  handlerPath: string;
  shown: string;
  loaded: Awaited<ReturnType<typeof loadHandler>>;
  mode: AgentMode;
}

/** The agent, the demo message, the watcher: everything that runs against the dev relay. */
async function runAgainst(ctx: CliContext, options: DevOptions, d: DevSetup): Promise<void> {
  const { url, home, agentKey, userKey, userKeyPath, handlerPath, shown, loaded, mode } = d;
  const manifest = await projectManifest(ctx);
  const { startAgent } = await import('../agent.js');
  const logFormat = ctx.out.isTTY && !ctx.globals.json ? 'pretty' : 'json';
  const { runtime, reporter, journal } = await startAgent(ctx, {
    relayUrl: url,
    // The dev relay is its data directory, whichever port it got.
    journalRelay: `mrp dev relay (${join(home, 'data')})`,
    keypair: agentKey,
    handler: loaded.handler,
    handlerLabel: shown,
    mode,
    concurrency: RUNTIME_DEFAULTS.concurrency,
    timeoutMs: RUNTIME_DEFAULTS.timeoutMs,
    // Shorter than a runner's: `mrp dev` restarts on every change and Ctrl-C should feel instant.
    graceMs: 5_000,
    manifest,
    logFormat,
    payloads: true,
    trace: ctx.tracers,
  });
  const { style } = ctx.out;
  const sendCommand = `${selfCommand(ctx.deps.env)} send --relay ${url} --key ${userKeyPath} ${agentKey.publicKey} "hello" --wait`;
  reporter.line(`${style.green('●')} relay   ${style.bold(url)}  ${style.dim(`(data ${join(home, 'data')})`)}`);
  reporter.line(`${style.green('●')} agent   ${agentKey.publicKey}  ${style.dim(`running ${shown}`)}`);
  reporter.event('dev', {
    relay: url,
    agent: agentKey.publicKey,
    user: userKey.publicKey,
    handler: handlerPath,
    send: sendCommand,
  });

  const signals = shutdownSignals(ctx.deps);
  const offUncaught = ctx.deps.onUncaught((err) => reporter.problem('uncaught', err));
  // As in `mrp run`: a handler calling process.exit ends dev with 70 and says so (it ended
  // `mrp dev --once` with 0 and no word, as if the demo had been answered).
  const exitTrap = trapRunnerExit({ reporter, journal }, 'mrp dev');
  const watchers: FSWatcher[] = [];
  let demoFailed: unknown;
  try {
    runtime.start();
    await runtime.next('connected');
    if (options.demo !== false) {
      const { RelayClient } = await import('../../client/http.js');
      const user = new RelayClient({ relayUrl: url, keypair: userKey, clock: ctx.deps.clock });
      const body = { text: 'hello from mrp dev' };
      try {
        const sent = await user.send({ recipient_key: agentKey.publicKey, body });
        reporter.line(`${style.cyan('→')} demo    sent ${bodyPreview(body)} ${style.dim(sent.message_id)}`);
        const page = await user.poll({ in_reply_to: sent.message_id, wait: 10, limit: 1 });
        const reply = page.messages[0];
        if (reply)
          reporter.line(`${style.green('←')} reply   ${bodyPreview(reply.body, 200)} ${style.dim(reply.message_id)}`);
        else reporter.line(`${style.yellow('…')} the handler did not reply to the demo message within 10 s`);
        reporter.event('demo', { sent: sent.message_id, reply: reply ?? null });
        if (!reply)
          demoFailed = new MrpError(
            'timeout',
            'reply_timeout',
            'the handler did not answer the demo message within 10 s',
          );
      } catch (err) {
        demoFailed = err;
        reporter.problem('demo_failed', err);
      }
    }
    reporter.line('');
    reporter.line(`Try it from another terminal:\n  ${style.bold(sendCommand)}`);
    if (!options.once) {
      reporter.line(style.dim(`Watching ${basename(handlerPath)} and its folder for changes · Ctrl-C to stop`));
      if (options.watch !== false) {
        let pending: NodeJS.Timeout | undefined;
        const reload = (): void => {
          loadHandler(handlerPath, { cwd: ctx.deps.cwd, fresh: true }).then(
            (next) => {
              runtime.setHandler(next.handler);
              reporter.line(`${style.cyan('↻')} reloaded ${shown}`);
              reporter.event('reloaded', { handler: handlerPath });
            },
            (err: unknown) => reporter.problem('reload_failed', err instanceof MrpError ? err : new Error(String(err))),
          );
        };
        const onChange = (_event: string, file: string | Buffer | null): void => {
          if (file && !/\.(c|m)?[jt]s$/.test(String(file))) return;
          clearTimeout(pending);
          pending = setTimeout(reload, 150);
        };
        watchers.push(watch(dirname(handlerPath), onChange));
      }
      await Promise.race([signals.first, runtime.finished]);
    }
    await signals.finishOrInterrupt(runtime.stop());
  } finally {
    for (const w of watchers) w.close();
    signals.dispose();
    offUncaught();
    exitTrap.dispose();
  }
  if (options.once && demoFailed) throw new ReportedError(EXIT.failure);
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('dev')
    .description('run a local relay and a handler together (offline), show a message answered end to end')
    .option('-H, --handler <path>', 'handler module (default: the bundled echo handler)')
    .option('--port <port>', `relay port (default ${DEFAULT_PORT}, or any free one)`)
    .option('-m, --mode <mode>', 'websocket or poll', 'websocket')
    .option('--no-demo', 'do not send the first demo message')
    .option('--no-watch', 'do not reload the handler when its files change')
    .option('--once', 'send the demo message, show the reply, and exit');
  examples(addGlobalOptions(cmd), [
    'mrp dev',
    'mrp dev --handler ./handler.ts',
    'mrp dev --once   # a quick end-to-end check',
    'mrp dev --key ./agent.key   # run the agent as this identity',
  ]);
  cmd.addHelpText(
    'after',
    '\nKeys and data live under $MRP_HOME/dev (agent.key, user.key, data/); --key runs the agent as another identity\n(created if missing). One mrp dev per MRP_HOME. Rate limits are off.\n',
  );
  cmd.action(action(deps, runDev));
}
