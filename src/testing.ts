/**
 * `mrp/testing`: what a handler author's tests import. `invoke` runs a handler once with a real
 * `ctx` and no network and says what would have been sent; `createTestRelay` starts a real relay
 * in this process, on a free port, in a temporary directory, for tests that want the wire.
 *
 * The third public entry point (after `mrp` and `mrp/relay`): the one besides `mrp/relay` that may
 * load the relay, and it does so only inside `createTestRelay` (`invoke` alone never loads SQLite).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsageError } from './core/errors.js';
import { didYouMean, unknownKey } from './core/suggest.js';
import type { Relay, RelayOptions } from './relay/index.js';

export {
  type InvokeMessage,
  type InvokeOptions,
  type InvokeResult,
  type InvokeSent,
  type InvokeUpload,
  invoke,
  testMessage,
} from './runtime/invoke.js';

export interface TestRelay {
  /** Base URL, e.g. `http://127.0.0.1:41234` (give it to `new Agent(url, …)`). */
  readonly url: string;
  /** The WebSocket endpoint (`ws://…/v1/ws`). */
  readonly wsUrl: string;
  /** Its temporary data directory (removed by `close`). */
  readonly dataDir: string;
  /** The relay itself (suspend agents, count connections). */
  readonly relay: Relay;
  /** Stops the relay and removes its directory. Safe to call twice. */
  close(): Promise<void>;
}

export type TestRelayOptions = Omit<Partial<RelayOptions>, 'port' | 'host' | 'dataDir'>;

/** Every option `createTestRelay` takes (a missing or extra one is a compile error here). */
const OPTION_KEYS: Record<keyof TestRelayOptions, true> = {
  clock: true,
  version: true,
  timestampToleranceMs: true,
  sendRatePerMinute: true,
  receiveRatePerMinute: true,
  requestRatePerMinute: true,
  maxConnectionsPerAgent: true,
  maxConnections: true,
  maxConnectionsPerAddress: true,
  maxSockets: true,
  maxSocketsPerAddress: true,
  maxInboundFrameBytes: true,
  maxOutboundBytes: true,
  partialFrameTimeoutMs: true,
  maxUnsentResponseBytes: true,
  maxUnsentResponseBytesPerAddress: true,
  responseStallTimeoutMs: true,
  authTimeoutMs: true,
  heartbeatIntervalMs: true,
  heartbeatTimeoutMs: true,
  maxBodyBytes: true,
  maxEnvelopeBytes: true,
  sweepIntervalMs: true,
  synchronous: true,
  bodyTimeoutMs: true,
  headersTimeoutMs: true,
  maxConcurrentBodies: true,
  maxConcurrentBodiesPerAddress: true,
  minBodyBytesPerWindow: true,
  bodyRateWindowMs: true,
  maxBodyBufferBytes: true,
  maxReplayEntries: true,
  maxBlobBytes: true,
  maxBlobStorageBytes: true,
  maxBlobsPerAgent: true,
  blobTtlMs: true,
  minFreeDiskBytes: true,
  allowPrivateWebhooks: true,
  webhookTimeoutMs: true,
  webhookConcurrency: true,
  webhookConcurrencyPerAgent: true,
  webhookResolver: true,
  logger: true,
  logLevel: true,
  metrics: true,
  blobStore: true,
  store: true,
  bus: true,
  replayCache: true,
  rateLimiter: true,
  connectionRegistry: true,
  caches: true,
  routes: true,
};
const FIXED = ['port', 'host', 'dataDir'];

/** A misspelt option (`sendRate`) would be ignored and the test would run against other limits. */
function checkOptions(options: unknown): void {
  const bad = (message: string): UsageError =>
    new UsageError(`createTestRelay: ${message}`, { code: 'invalid_option' });
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw bad('the options must be an object');
  const known = Object.keys(OPTION_KEYS);
  const key = unknownKey(options, known);
  if (key !== undefined && FIXED.includes(key))
    throw bad(
      `option ${key} is not taken: the test relay listens on 127.0.0.1, port 0, in a temporary directory (its url says where)`,
    );
  if (key !== undefined) throw bad(`unknown option ${key}${didYouMean(key, known)}`);
}

/**
 * Starts a relay on 127.0.0.1, port 0 (any free port), with its data in a new temporary
 * directory and its logs silenced. `options` are the relay's (`createRelay`), e.g. rate limits.
 */
export async function createTestRelay(options: TestRelayOptions = {}): Promise<TestRelay> {
  checkOptions(options);
  const dataDir = await mkdtemp(join(tmpdir(), 'mrp-test-relay-'));
  let relay: Relay;
  try {
    const { createRelay } = await import('./relay/server.js');
    relay = createRelay({ logger: () => undefined, ...options, host: '127.0.0.1', port: 0, dataDir });
  } catch (err) {
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  let url: string;
  try {
    url = await relay.listen();
  } catch (err) {
    await relay.close().catch(() => undefined);
    await rm(dataDir, { recursive: true, force: true });
    throw err;
  }
  let closed: Promise<void> | undefined;
  return {
    url,
    wsUrl: `${url.replace(/^http/, 'ws')}/v1/ws`,
    dataDir,
    relay,
    close: () =>
      (closed ??= (async () => {
        try {
          await relay.close();
        } finally {
          await rm(dataDir, { recursive: true, force: true });
        }
      })()),
  };
}
