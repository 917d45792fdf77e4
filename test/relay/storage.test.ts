/**
 * Issue 9, relay item 6: one relay per data directory (robust to kill -9), a private database
 * file, readiness that looks at the disk, and start-up errors that name the file.
 */
import assert from 'node:assert/strict';
import {
  chmodSync,
  closeSync,
  mkdirSync,
  openSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { ConfigError } from '../../src/core/errors.js';
import { createRelay } from '../../src/relay/index.js';
import { newAgent, STORE_IN_DATA_DIR, startRelay } from '../helpers/relay.js';
import { Api, expectOk, spawnRelay, tempDir } from './_support.js';

function startError(dataDir: string): ConfigError {
  try {
    createRelay({ dataDir, port: 0 });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err;
  }
  assert.fail('the relay started');
}

/** These look at the relay's `mrp.db` (SQLite in its data directory): nothing to see on a store kept elsewhere. */
const sqliteOnly = {
  skip: STORE_IN_DATA_DIR ? false : 'the test store (MRP_TEST_STORE) keeps no mrp.db in the data directory',
};

describe('item 6: storage', () => {
  it(
    'a second relay on the same data directory is refused, naming the directory and the holder; it starts once the first is gone',
    sqliteOnly,
    async (t) => {
      const dataDir = await tempDir(t);
      const { relay } = await startRelay(t, { dataDir });
      const err = startError(dataDir);
      assert.equal(err.code, 'data_dir_locked');
      assert.ok(err.message.includes(dataDir), err.message);
      assert.match(err.message, /another relay/);
      await relay.close();
      const again = createRelay({ dataDir, port: 0 });
      await again.listen();
      await again.close();
    },
  );

  it('mrp relay: a second process is refused (exit 2, one line naming the directory); after kill -9 of the first, a restart works', async (t) => {
    const dataDir = await tempDir(t);
    const first = await spawnRelay(t, ['--port', '0', '--data-dir', dataDir]);
    const second = spawnRelay(t, ['--port', '0', '--data-dir', dataDir]);
    await assert.rejects(
      second,
      (e: Error) =>
        /exited early \(2\)/.test(e.message) &&
        e.message.includes(dataDir) &&
        /another relay is using the data directory/.test(e.message),
    );
    first.child.kill('SIGKILL');
    await first.exited;
    const third = await spawnRelay(t, ['--port', '0', '--data-dir', dataDir]);
    expectOk(await new Api(third.url).get(newAgent(), '/v1/agents/me'));
  });

  it('mrp.db, -wal and -shm are created 0600 even in an existing, world-readable directory', sqliteOnly, async (t) => {
    const parent = await tempDir(t);
    const dataDir = join(parent, 'data');
    mkdirSync(dataDir);
    chmodSync(dataDir, 0o755);
    const { url } = await startRelay(t, { dataDir });
    await new Api(url).send(newAgent(), newAgent().publicKey);
    for (const name of ['mrp.db', 'mrp.db-wal', 'mrp.db-shm', 'mrp.lock']) {
      assert.equal(statSync(join(dataDir, name)).mode & 0o777, 0o600, name);
    }
  });

  it('/v1/health/ready is 503 and /v1/health degraded when the disk is (nearly) full', sqliteOnly, async (t) => {
    const { url } = await startRelay(t, { minFreeDiskBytes: Number.MAX_SAFE_INTEGER });
    const ready = await fetch(`${url}/v1/health/ready`);
    assert.equal(ready.status, 503);
    assert.deepEqual(await ready.json(), { status: 'unavailable', reason: 'disk_full' });
    assert.equal(((await (await fetch(`${url}/v1/health`)).json()) as { status: string }).status, 'degraded');
  });

  it(
    '/v1/health/ready turns 503 when mrp.db is damaged on disk while the relay runs (probe cached for a second)',
    sqliteOnly,
    async (t) => {
      const clock = new ManualClock(Date.now());
      const { url, dataDir } = await startRelay(t, { clock });
      assert.equal((await fetch(`${url}/v1/health/ready`)).status, 200);
      const fd = openSync(join(dataDir, 'mrp.db'), 'r+');
      writeSync(fd, Buffer.from('this is not sqlite'), 0, 18, 0);
      closeSync(fd);
      clock.advance(1001);
      const ready = await fetch(`${url}/v1/health/ready`);
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { reason: string }).reason, 'corrupt');
      const details = (await (await fetch(`${url}/v1/health/details`)).json()) as {
        status: string;
        components: { database: { status: string } };
      };
      assert.equal(details.status, 'degraded');
      assert.equal(details.components.database.status, 'unavailable');
    },
  );

  it('/v1/health/ready turns 503 when mrp.db is truncated to 0 bytes while the relay runs', sqliteOnly, async (t) => {
    const clock = new ManualClock(Date.now());
    const { url, dataDir } = await startRelay(t, { clock });
    const a = newAgent();
    await new Api(url).send(a, newAgent().publicKey);
    assert.equal((await fetch(`${url}/v1/health/ready`)).status, 200);
    truncateSync(join(dataDir, 'mrp.db'), 0);
    clock.advance(1001);
    const ready = await fetch(`${url}/v1/health/ready`);
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as { reason: string }).reason, 'corrupt');
  });

  it(
    'a fresh relay is ready (its database has a header from the start, so 0 bytes is never "fresh" later)',
    sqliteOnly,
    async (t) => {
      const { url, dataDir } = await startRelay(t);
      assert.equal((await fetch(`${url}/v1/health/ready`)).status, 200);
      assert.ok(statSync(join(dataDir, 'mrp.db')).size > 0);
    },
  );

  it('start-up errors name the file: a corrupt mrp.db, a directory in its place, a data dir that is a file', async (t) => {
    const garbage = await tempDir(t);
    writeFileSync(join(garbage, 'mrp.db'), Buffer.alloc(8192, 0x41));
    let err = startError(garbage);
    assert.equal(err.code, 'storage_unusable');
    assert.ok(err.message.includes(join(garbage, 'mrp.db')), err.message);
    assert.match(err.message, /not a SQLite database/);
    assert.ok(!err.message.includes('\n'));

    const dir = await tempDir(t);
    mkdirSync(join(dir, 'mrp.db'));
    err = startError(dir);
    assert.equal(err.code, 'storage_unusable');
    assert.ok(err.message.includes(join(dir, 'mrp.db')), err.message);

    const parent = await tempDir(t);
    writeFileSync(join(parent, 'file'), 'x');
    err = startError(join(parent, 'file'));
    assert.match(err.message, /not a directory/);

    // A failed start releases the directory: with the bad file moved away, a relay starts there.
    rmSync(join(garbage, 'mrp.db'));
    const later = createRelay({ dataDir: garbage, port: 0 });
    await later.close();
  });
});
