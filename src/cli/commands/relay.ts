import type { Command } from 'commander';
import { formatDuration } from '../../core/duration.js';
import { UsageError } from '../../core/errors.js';
import { RATE_LIMITS, TIMING } from '../../protocol/constants.js';
import type { LogEntry, LogLevel } from '../../relay/index.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { keepServingWithoutOutput } from '../handler-exit.js';
import { durationOption, intOption, listenError } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { jsonText, safeText } from '../render.js';
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
  metrics?: boolean;
  metricsPort?: string;
  allowPrivateWebhooks?: boolean;
  databaseUrl?: string;
  blobStore?: string;
  dbPool?: string;
  connectionLease?: string;
}

export type RelayMode = { mode: 'embedded' } | { mode: 'external'; databaseUrl: string };

/**
 * Which storage `mrp relay` runs on (docs/protocol.md §10): `MRP_MODE=embedded|external`;
 * otherwise external when a database URL is given (`--database-url`, else `DATABASE_URL`), else
 * embedded. External without a URL, or an unknown `MRP_MODE`, is a usage error.
 */
export function relayMode(flagUrl: string | undefined, env: Record<string, string | undefined>): RelayMode {
  const raw = env['MRP_MODE']?.trim().toLowerCase();
  const url = flagUrl ?? (env['DATABASE_URL']?.trim() || undefined);
  if (raw !== undefined && raw !== '' && raw !== 'embedded' && raw !== 'external') {
    throw new UsageError(`MRP_MODE: "${env['MRP_MODE']}" must be embedded or external`, { code: 'invalid_argument' });
  }
  if (raw === 'embedded') {
    if (flagUrl !== undefined) {
      throw new UsageError('--database-url was given but MRP_MODE=embedded', {
        code: 'invalid_argument',
        hint: 'unset MRP_MODE (or set it to external) to run on PostgreSQL',
      });
    }
    return { mode: 'embedded' };
  }
  if (url !== undefined) return { mode: 'external', databaseUrl: url };
  if (raw === 'external') {
    throw new UsageError('MRP_MODE=external needs a PostgreSQL URL', {
      code: 'missing_argument',
      hint: 'pass --database-url postgres://user:password@host:5432/db or set DATABASE_URL',
    });
  }
  return { mode: 'embedded' };
}

/**
 * `--blob-store s3://bucket/prefix` (endpoint and credentials from the AWS_* variables) or
 * `file:///shared/dir` (the file store on a directory every process mounts). Loaded lazily.
 */
export async function openBlobStore(spec: string, env: Record<string, string | undefined>) {
  if (/^s3:\/\//i.test(spec)) {
    const { S3BlobStore, s3OptionsFromEnv } = await import('../../relay/blobs/s3-blob-store.js');
    if (!/^s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/.*)?$/.test(spec)) {
      throw new UsageError(`--blob-store: "${spec}" is not s3://bucket or s3://bucket/prefix`, {
        code: 'invalid_argument',
      });
    }
    return new S3BlobStore({ url: spec, ...s3OptionsFromEnv(env) });
  }
  if (/^file:\/\//i.test(spec)) {
    const [{ fileURLToPath }, { FsBlobStore }] = await Promise.all([
      import('node:url'),
      import('../../relay/blobs/fs-blob-store.js'),
    ]);
    let dir: string;
    try {
      dir = fileURLToPath(spec);
    } catch (err) {
      throw new UsageError(`--blob-store: "${spec}" is not a file:///absolute/path URL (${(err as Error).message})`, {
        code: 'invalid_argument',
      });
    }
    return FsBlobStore.open({ dataDir: dir });
  }
  throw new UsageError(`--blob-store: "${spec}" must be s3://bucket/prefix or file:///shared/dir`, {
    code: 'invalid_argument',
  });
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
    throw new UsageError(
      `${options.logLevel ? '--log-level' : 'LOG_LEVEL'}: "${level}" must be one of ${LEVELS.join(', ')}`,
      {
        code: 'invalid_argument',
      },
    );
  }
  const toleranceMs = durationOption(
    options.timestampTolerance ?? env['TIMESTAMP_TOLERANCE'],
    options.timestampTolerance ? '--timestamp-tolerance' : 'TIMESTAMP_TOLERANCE',
    RELAY_DEFAULTS.timestampToleranceMs,
  );
  if (toleranceMs <= 0)
    throw new UsageError('--timestamp-tolerance must be longer than 0', { code: 'invalid_argument' });
  const format = options.logFormat ?? (ctx.out.isTTY && !ctx.globals.json ? 'pretty' : 'json');
  if (format !== 'pretty' && format !== 'json') {
    throw new UsageError(`--log-format: "${format}" must be pretty or json`, { code: 'invalid_argument' });
  }
  const metricsPort =
    options.metricsPort === undefined ? undefined : intOption(options.metricsPort, '--metrics-port', 0, 0, 65535);
  const mode = relayMode(options.databaseUrl, env);
  // A flag of the other mode would be ignored: say so instead (the variables may be set for either).
  const otherMode =
    mode.mode === 'embedded'
      ? options.dbPool !== undefined
        ? '--db-pool'
        : options.connectionLease !== undefined
          ? '--connection-lease'
          : undefined
      : options.dataDir !== undefined
        ? '--data-dir'
        : undefined;
  if (otherMode)
    throw new UsageError(
      mode.mode === 'embedded'
        ? `${otherMode} only applies to external mode (PostgreSQL)`
        : '--data-dir only applies to embedded mode (SQLite): external mode keeps its data in PostgreSQL',
      {
        code: 'invalid_argument',
        hint:
          mode.mode === 'embedded'
            ? 'add --database-url postgres://user:password@host:5432/db (or set DATABASE_URL), or drop the flag'
            : 'drop --data-dir; for blobs on a shared directory use --blob-store file:///shared/dir',
      },
    );
  const pool = intOption(options.dbPool, '--db-pool', 10, 1, 1000);
  const leaseMs = durationOption(options.connectionLease, '--connection-lease', 15_000);
  if (leaseMs < 300) throw new UsageError('--connection-lease must be at least 300ms', { code: 'invalid_argument' });
  const { resolve } = await import('node:path');
  const registry = metricsPort === undefined && !options.metrics ? undefined : new Registry();
  const { style } = ctx.out;
  const write = (entry: LogEntry): void => {
    const time = new Date(ctx.deps.clock.now()).toISOString();
    if (format === 'json') {
      ctx.deps.stderr.write(
        `${jsonText({ time, ...entry, ...(env['PUBLIC_URL'] ? { public_url: env['PUBLIC_URL'] } : {}) })}\n`,
      );
      return;
    }
    const { level: lvl, msg, ...fields } = entry;
    const paint =
      lvl === 'error' ? style.red : lvl === 'warn' ? style.yellow : lvl === 'debug' ? style.gray : (t: string) => t;
    // Fields carry what clients sent (a WebSocket close reason, an error text): through safeText.
    const rest = Object.entries(fields)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${style.dim(`${k}=`)}${safeText(typeof v === 'string' ? v : (JSON.stringify(v) ?? ''))}`)
      .join(' ');
    ctx.deps.stderr.write(`${style.dim(time.slice(11, 19))} ${paint(safeText(msg))} ${rest}\n`);
  };
  // External mode: the store, bus and shared state on PostgreSQL (the driver loads only here).
  let external: import('../../relay/external.js').External | undefined;
  let blobs: import('../../relay/blobs/blob-store.js').BlobStore | undefined;
  const closeStorage = async (): Promise<void> => {
    await external?.close();
    await blobs?.close();
  };
  try {
    if (mode.mode === 'external') {
      const { openExternal } = await import('../../relay/external.js');
      external = await openExternal({
        databaseUrl: mode.databaseUrl,
        clock: ctx.deps.clock,
        maxConnections: pool,
        leaseMs,
        onEvent: (what, detail) =>
          write({ level: what === 'bus_reconnected' ? 'info' : 'warn', msg: what, ...(detail ? { detail } : {}) }),
      });
    }
    if (options.blobStore !== undefined) blobs = await openBlobStore(options.blobStore, env);
  } catch (err) {
    await closeStorage();
    throw err;
  }
  // --metrics: GET /metrics on the relay's own listener, outside the API's /v1/ (unauthenticated,
  // like /v1/health); --metrics-port: on a port of its own, for when the API port is public.
  const metricsRoute = registry && options.metrics ? await ownMetricsRoute(registry) : undefined;
  const relay = createRelay({
    host: options.host ?? RELAY_DEFAULTS.host,
    port,
    ...(external ? external.relayOptions : { dataDir: resolve(ctx.deps.cwd, dataDir) }),
    ...(blobs ? { blobStore: blobs } : {}),
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
    ...(metricsRoute ? { routes: [metricsRoute] } : {}),
  });
  let metricsServer: { url: string; close(): Promise<void> } | undefined;
  const signals = shutdownSignals(ctx.deps);
  keepServingWithoutOutput();
  try {
    let url: string;
    try {
      url = await relay.listen();
    } catch (err) {
      await relay.close();
      await closeStorage();
      const flag = (err as NodeJS.ErrnoException)?.code === 'EADDRINUSE' ? '--port' : '--host';
      throw listenError(
        err,
        flag,
        `${options.host ?? RELAY_DEFAULTS.host}:${port}`,
        'pick another with --port, or stop the other process',
      );
    }
    if (registry && metricsPort !== undefined) {
      metricsServer = await serveMetrics(options.host ?? RELAY_DEFAULTS.host, metricsPort, registry).catch(
        async (err: unknown) => {
          await relay.close();
          await closeStorage();
          throw err;
        },
      );
    }
    const db = external ? external.store.location : resolve(ctx.deps.cwd, dataDir, 'mrp.db');
    const metricsUrl = metricsServer ? `${metricsServer.url}/metrics` : metricsRoute ? `${url}/metrics` : undefined;
    const storage = external ? { mode: 'external' } : { mode: 'embedded', data_dir: resolve(ctx.deps.cwd, dataDir) };
    const blobText = options.blobStore === undefined ? '' : ` · blobs ${options.blobStore}`;
    ctx.out.result(
      {
        url,
        ...storage,
        database: db,
        pid: process.pid,
        ...(options.blobStore ? { blob_store: options.blobStore } : {}),
        ...(metricsUrl ? { metrics_url: metricsUrl } : {}),
      },
      () => [
        `${style.green('●')} mrp relay listening on ${style.bold(url)}`,
        style.dim(
          external
            ? `  external mode: PostgreSQL ${db}${blobText} · tolerance ${formatDuration(toleranceMs)} · Ctrl-C to stop`
            : `  embedded mode: data ${db}${blobText} · tolerance ${formatDuration(toleranceMs)} · Ctrl-C to stop`,
        ),
        ...(metricsUrl ? [style.dim(`  metrics ${metricsUrl}`)] : []),
      ],
    );
    const signal = await signals.first;
    ctx.out.info(style.dim(`${signal}: closing connections and flushing storage…`));
    await signals.finishOrInterrupt(relay.close().then(closeStorage));
    ctx.out.info(style.dim('relay stopped'));
  } finally {
    signals.dispose();
    await metricsServer?.close();
  }
}

/** `GET /metrics` as a route of the relay itself (`--metrics`). */
async function ownMetricsRoute(registry: { expose(): string }) {
  const [{ NO_BODY }, { PROMETHEUS_CONTENT_TYPE }] = await Promise.all([
    import('../../relay/router.js'),
    import('../../core/metrics.js'),
  ]);
  return {
    method: 'GET' as const,
    path: '/metrics',
    auth: false,
    summary: 'Prometheus metrics of this relay (mrp relay --metrics)',
    body: NO_BODY,
    reply: 'text' as const,
    handler: () => ({
      kind: 'text' as const,
      status: 200,
      text: registry.expose(),
      contentType: PROMETHEUS_CONTENT_TYPE,
    }),
  };
}

/** `/metrics` (and `/healthz`) on a port of their own, so they need not be public with the API. */
async function serveMetrics(
  host: string,
  port: number,
  registry: { expose(): string },
): Promise<{ url: string; close(): Promise<void> }> {
  const [{ startOpsServer }, { PROMETHEUS_CONTENT_TYPE }] = await Promise.all([
    import('../health-server.js'),
    import('../../core/metrics.js'),
  ]);
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
    const flag = (err as NodeJS.ErrnoException)?.code === 'EADDRINUSE' ? '--metrics-port' : '--host';
    throw listenError(err, flag, `${host}:${port}`, 'pick another with --metrics-port');
  }
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('relay')
    .description('run an MRP relay (HTTP + WebSocket; SQLite, or PostgreSQL shared by several processes)')
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
    .option(
      '--metrics',
      "serve Prometheus /metrics (requests, messages, sockets, store latency) on the relay's own port, next to /v1/",
    )
    .option(
      '--metrics-port <port>',
      'serve Prometheus /metrics on a port of its own, apart from the API (when the API port is public)',
    )
    .option(
      '--allow-private-webhooks',
      'let webhooks reach loopback, private and link-local addresses (local development only)',
    )
    .option(
      '--database-url <url>',
      'external mode: PostgreSQL shared by any number of relay processes (env DATABASE_URL; MRP_MODE=embedded|external)',
    )
    .option('--db-pool <n>', 'external mode: database connections of this process at most (default 10)')
    .option(
      '--connection-lease <duration>',
      "external mode: a dead process's WebSocket slots free up after this (default 15s)",
    )
    .option(
      '--blob-store <url>',
      'where blobs go: s3://bucket/prefix (AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or file:///shared/dir',
    );
  examples(addGlobalOptions(cmd), [
    'mrp relay                                  # http://127.0.0.1:8080, data in ./data',
    'mrp relay --port 0 --data-dir /var/lib/mrp # any free port',
    'mrp relay --send-rate 0 --receive-rate 0   # no rate limits (benchmarks)',
    'PORT=9000 LOG_LEVEL=debug mrp relay',
    'mrp relay --metrics                       # curl 127.0.0.1:8080/metrics',
    'mrp relay --metrics-port 9091             # curl 127.0.0.1:9091/metrics',
    'mrp relay --allow-private-webhooks        # webhooks to http://127.0.0.1:… (development)',
    'mrp relay --database-url postgres://mrp:pw@db:5432/mrp --blob-store s3://bucket/blobs  # external mode',
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
