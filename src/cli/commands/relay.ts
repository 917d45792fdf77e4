import type { Command } from 'commander';
import { formatDuration } from '../../core/duration.js';
import { UsageError } from '../../core/errors.js';
import { RATE_LIMITS, TIMING } from '../../protocol/constants.js';
import type { LogEntry, LogLevel } from '../../relay/index.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { durationOption, intOption } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { shutdownSignals } from '../signals.js';

export interface RelayCommandOptions {
  host?: string;
  port?: string;
  dataDir?: string;
  sendRate?: string;
  receiveRate?: string;
  requestRate?: string;
  timestampTolerance?: string;
  logLevel?: string;
  logFormat?: string;
  fsync?: boolean;
  metricsPort?: string;
  allowPrivateWebhooks?: boolean;
}

const LEVELS = ['debug', 'info', 'warn', 'error'];

/** `mrp relay`: a faithful, durable MRP relay on this machine. Stops cleanly on SIGINT/SIGTERM. */
export async function runRelay(ctx: CliContext, options: RelayCommandOptions): Promise<void> {
  const env = ctx.deps.env;
  // The relay's defaults are named once, in the relay (`RELAY_DEFAULTS`); loaded only for this command.
  const { createRelay, Registry, RELAY_DEFAULTS } = await import('../../relay/index.js');
  const port = intOption(options.port ?? env['PORT'], options.port ? '--port' : 'PORT', RELAY_DEFAULTS.port, 0, 65535);
  const dataDir = options.dataDir ?? env['DATA_DIR'] ?? RELAY_DEFAULTS.dataDir;
  const level = (options.logLevel ?? env['LOG_LEVEL'] ?? RELAY_DEFAULTS.logLevel).toLowerCase();
  if (!LEVELS.includes(level)) {
    throw new UsageError(`${options.logLevel ? '--log-level' : 'LOG_LEVEL'}: "${level}" must be one of ${LEVELS.join(', ')}`, {
      code: 'invalid_argument',
    });
  }
  const toleranceMs = durationOption(
    options.timestampTolerance ?? env['TIMESTAMP_TOLERANCE'],
    options.timestampTolerance ? '--timestamp-tolerance' : 'TIMESTAMP_TOLERANCE',
    RELAY_DEFAULTS.timestampToleranceMs,
  );
  if (toleranceMs <= 0) throw new UsageError('--timestamp-tolerance must be longer than 0', { code: 'invalid_argument' });
  const format = options.logFormat ?? (ctx.out.isTTY && !ctx.globals.json ? 'pretty' : 'json');
  if (format !== 'pretty' && format !== 'json') {
    throw new UsageError(`--log-format: "${format}" must be pretty or json`, { code: 'invalid_argument' });
  }
  const metricsPort = options.metricsPort === undefined ? undefined : intOption(options.metricsPort, '--metrics-port', 0, 0, 65535);
  const { resolve } = await import('node:path');
  const registry = metricsPort === undefined ? undefined : new Registry();
  const { style } = ctx.out;
  const write = (entry: LogEntry): void => {
    const time = new Date(ctx.deps.clock.now()).toISOString();
    if (format === 'json') {
      ctx.deps.stderr.write(`${JSON.stringify({ time, ...entry, ...(env['PUBLIC_URL'] ? { public_url: env['PUBLIC_URL'] } : {}) })}\n`);
      return;
    }
    const { level: lvl, msg, ...fields } = entry;
    const paint = lvl === 'error' ? style.red : lvl === 'warn' ? style.yellow : lvl === 'debug' ? style.gray : (t: string) => t;
    const rest = Object.entries(fields)
      .map(([k, v]) => `${style.dim(`${k}=`)}${typeof v === 'string' ? v : JSON.stringify(v)}`)
      .join(' ');
    ctx.deps.stderr.write(`${style.dim(time.slice(11, 19))} ${paint(msg)} ${rest}\n`);
  };
  const relay = createRelay({
    host: options.host ?? RELAY_DEFAULTS.host,
    port,
    dataDir: resolve(ctx.deps.cwd, dataDir),
    sendRatePerMinute: intOption(options.sendRate, '--send-rate', RELAY_DEFAULTS.sendRatePerMinute),
    receiveRatePerMinute: intOption(options.receiveRate, '--receive-rate', RELAY_DEFAULTS.receiveRatePerMinute),
    requestRatePerMinute: intOption(options.requestRate, '--request-rate', RELAY_DEFAULTS.requestRatePerMinute),
    timestampToleranceMs: toleranceMs,
    clock: ctx.deps.clock,
    logger: write,
    logLevel: level as LogLevel,
    synchronous: options.fsync ? 'full' : 'normal',
    allowPrivateWebhooks: options.allowPrivateWebhooks === true,
    ...(registry ? { metrics: registry } : {}),
  });
  let metricsServer: { url: string; close(): Promise<void> } | undefined;
  const signals = shutdownSignals(ctx.deps);
  try {
    let url: string;
    try {
      url = await relay.listen();
    } catch (err) {
      await relay.close();
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EADDRINUSE') {
        throw new UsageError(`port ${port} is already in use`, { code: 'address_in_use', hint: 'pick another with --port, or stop the other process' });
      }
      throw err;
    }
    if (registry && metricsPort !== undefined) {
      metricsServer = await serveMetrics(options.host ?? RELAY_DEFAULTS.host, metricsPort, registry).catch(async (err: unknown) => {
        await relay.close();
        throw err;
      });
    }
    const db = resolve(ctx.deps.cwd, dataDir, 'mrp.db');
    const metricsUrl = metricsServer ? `${metricsServer.url}/metrics` : undefined;
    ctx.out.result({ url, data_dir: resolve(ctx.deps.cwd, dataDir), database: db, pid: process.pid, ...(metricsUrl ? { metrics_url: metricsUrl } : {}) }, () => [
      `${style.green('●')} mrp relay listening on ${style.bold(url)}`,
      style.dim(`  data ${db} · tolerance ${formatDuration(toleranceMs)} · Ctrl-C to stop`),
      ...(metricsUrl ? [style.dim(`  metrics ${metricsUrl}`)] : []),
    ]);
    const signal = await signals.first;
    ctx.out.info(style.dim(`${signal}: closing connections and flushing storage…`));
    await signals.finishOrInterrupt(relay.close());
    ctx.out.info(style.dim('relay stopped'));
  } finally {
    signals.dispose();
    await metricsServer?.close();
  }
}

/** `/metrics` (and `/healthz`) on a port of their own, so they need not be public with the API. */
async function serveMetrics(host: string, port: number, registry: { expose(): string }): Promise<{ url: string; close(): Promise<void> }> {
  const [{ startOpsServer }, { PROMETHEUS_CONTENT_TYPE }] = await Promise.all([import('../health-server.js'), import('../../core/metrics.js')]);
  try {
    return await startOpsServer({
      host,
      port,
      routes: {
        '/metrics': () => ({ status: 200, body: registry.expose(), contentType: PROMETHEUS_CONTENT_TYPE }),
        '/healthz': () => ({ status: 200, body: '{"alive":true}\n', contentType: 'application/json' }),
      },
    });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new UsageError(`--metrics-port: port ${port} is already in use`, { code: 'address_in_use', hint: 'pick another with --metrics-port' });
    }
    throw err;
  }
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('relay')
    .description('run an MRP relay (HTTP + WebSocket, SQLite storage) on this machine')
    .option('--host <host>', 'address to bind (default 127.0.0.1)')
    .option('--port <port>', 'port to listen on (env PORT; 0 = any free port)')
    .option('--data-dir <dir>', 'directory for mrp.db (env DATA_DIR)', undefined)
    .option('--send-rate <n>', 'messages a sender may send per minute (0 = unlimited)')
    .option('--receive-rate <n>', 'messages a recipient may receive per minute (0 = unlimited)')
    .option('--request-rate <n>', 'other authenticated requests per agent per minute (0 = unlimited)')
    .option('--timestamp-tolerance <duration>', 'allowed clock skew of signed requests (env TIMESTAMP_TOLERANCE)')
    .option('--log-level <level>', 'debug | info | warn | error (env LOG_LEVEL)')
    .option('--log-format <format>', 'pretty | json (default: pretty on a terminal)')
    .option('--fsync', 'fsync every commit: stored messages survive power cuts, not just crashes (slower)')
    .option('--metrics-port <port>', 'serve Prometheus /metrics (requests, messages, sockets, store latency) on this port, apart from the API')
    .option('--allow-private-webhooks', 'let webhooks reach loopback, private and link-local addresses (local development only)');
  examples(addGlobalOptions(cmd), [
    'mrp relay                                  # http://127.0.0.1:8080, data in ./data',
    'mrp relay --port 0 --data-dir /var/lib/mrp # any free port',
    'mrp relay --send-rate 0 --receive-rate 0   # no rate limits (benchmarks)',
    'PORT=9000 LOG_LEVEL=debug mrp relay',
    'mrp relay --metrics-port 9091             # curl 127.0.0.1:9091/metrics',
    'mrp relay --allow-private-webhooks        # webhooks to http://127.0.0.1:… (development)',
  ]);
  // The rates and tolerance are the protocol's (RELAY_DEFAULTS takes them from there too); the
  // relay module itself is loaded only when the command runs, so its constants cannot be read here.
  cmd.addHelpText(
    'after',
    `\nDefaults: port 8080, data ./data, ${RATE_LIMITS.sendPerMinute} sends/min, ${RATE_LIMITS.receivePerMinute} receives/min, ` +
      `${RATE_LIMITS.requestsPerMinute} requests/min, tolerance ${formatDuration(TIMING.timestampToleranceMs)}.\n`,
  );
  cmd.action(action(deps, runRelay));
}
