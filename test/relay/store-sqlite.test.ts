/**
 * The SQLite store on the store contract (test/relay/store.contract.ts): a fresh database in a
 * temporary directory per test.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteStore } from '../../src/relay/store/sqlite-store.js';
import { storeContract } from './store.contract.js';

storeContract('sqlite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mrp-store-'));
  const store = new SqliteStore(dir);
  return {
    store,
    close: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});
