/**
 * The relay conformance suite on PostgreSQL (test/helpers/relay.ts):
 *
 *     MRP_TEST_STORE=test/relay/_pg-store.ts node scripts/test.mjs test/relay
 *
 * Every relay a test starts gets a database of one throwaway cluster per test file (started on
 * first use, stopped when the file's process is about to exit): a fresh one per data directory,
 * the same one again for a relay restarted on the same directory.
 *
 * `openShared` goes further (`MRP_TEST_PAIR=1` as well): each relay a test starts is TWO relays,
 * each with its own external-mode state (pool, bus, registry, caches) on that database, behind a
 * proxy that alternates requests and WebSocket connections between them; blob bytes go to one
 * shared directory (the test's data directory), each relay with its own `FsBlobStore` on it, as
 * two processes started with `--blob-store file:///dir` would have.
 */
import { FsBlobStore } from '../../src/relay/blobs/fs-blob-store.js';
import { openExternal } from '../../src/relay/external.js';
import type { RelayOptions } from '../../src/relay/options.js';
import { PgStore } from '../../src/relay/store/pg-store.js';
import type { Store } from '../../src/relay/store/store.js';
import { type PostgresCluster, postgresAvailable, startPostgres } from '../helpers/postgres.js';

let cluster: Promise<PostgresCluster> | undefined;

function theCluster(): Promise<PostgresCluster> {
  const why = postgresAvailable();
  if (why) throw new Error(`MRP_TEST_STORE=_pg-store.ts: ${why}`);
  if (!cluster) {
    cluster = startPostgres();
    let stopping = false;
    process.on('beforeExit', () => {
      if (stopping) return;
      stopping = true;
      void cluster!.then((c) => c.stop());
    });
  }
  return cluster;
}

/** The relays' storage is a database, not `mrp.db` in their data directory (test/helpers/relay.ts). */
export const dataDirFiles = false;

/** One database per data directory: a relay restarted on the same directory finds its data again. */
const databases = new Map<string, Promise<string>>();

function databaseFor(dataDir: string): Promise<string> {
  let url = databases.get(dataDir);
  if (!url) {
    url = theCluster().then((c) => c.database());
    databases.set(dataDir, url);
  }
  return url;
}

export async function openStore(dataDir: string, _options: Partial<RelayOptions> = {}): Promise<Store> {
  return PgStore.open(await databaseFor(dataDir), { max: 4 });
}

/** Two sets of external-mode parts on one fresh database and one blob directory (the relay's clock for both). */
export async function openShared(dataDir: string, options: Partial<RelayOptions> = {}) {
  const url = await databaseFor(dataDir);
  const parts = await Promise.all(
    [1, 2].map(() =>
      openExternal({ databaseUrl: url, maxConnections: 4, ...(options.clock ? { clock: options.clock } : {}) }),
    ),
  );
  const blobs = await Promise.all(parts.map(() => FsBlobStore.open({ dataDir })));
  return {
    relayOptions: parts.map((p, i) => ({ ...p.relayOptions, blobStore: blobs[i]! })),
    close: async () => {
      for (const p of parts) await p.close();
      for (const b of blobs) await b.close();
    },
  };
}
