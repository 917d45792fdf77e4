/** `mrp relay` mode selection (docs/protocol.md §10) and `--blob-store` parsing. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { pathToFileURL } from 'node:url';
import { openBlobStore, relayMode } from '../../src/cli/commands/relay.js';
import { UsageError } from '../../src/core/errors.js';
import { runCli, testDeps } from '../helpers/cli.js';

const usage = (code: string, text: RegExp) => (err: unknown) => {
  assert.ok(err instanceof UsageError);
  assert.equal(err.code, code);
  assert.match(err.message, text);
  return true;
};

describe('mrp relay: embedded or external', () => {
  it('nothing configured → embedded; a URL (flag or DATABASE_URL) → external; the flag wins over the variable', () => {
    assert.deepEqual(relayMode(undefined, {}), { mode: 'embedded' });
    assert.deepEqual(relayMode(undefined, { DATABASE_URL: 'postgres://h/db' }), {
      mode: 'external',
      databaseUrl: 'postgres://h/db',
    });
    assert.deepEqual(relayMode('postgres://flag/db', { DATABASE_URL: 'postgres://env/db' }), {
      mode: 'external',
      databaseUrl: 'postgres://flag/db',
    });
    assert.deepEqual(relayMode(undefined, { DATABASE_URL: '  ' }), { mode: 'embedded' });
  });

  it('MRP_MODE decides: embedded ignores DATABASE_URL; external needs a URL; other values are refused', () => {
    assert.deepEqual(relayMode(undefined, { MRP_MODE: 'embedded', DATABASE_URL: 'postgres://h/db' }), {
      mode: 'embedded',
    });
    assert.deepEqual(relayMode(undefined, { MRP_MODE: 'EXTERNAL', DATABASE_URL: 'postgres://h/db' }), {
      mode: 'external',
      databaseUrl: 'postgres://h/db',
    });
    assert.throws(
      () => relayMode(undefined, { MRP_MODE: 'external' }),
      usage('missing_argument', /MRP_MODE=external needs a PostgreSQL URL/),
    );
    assert.throws(
      () => relayMode('postgres://h/db', { MRP_MODE: 'embedded' }),
      usage('invalid_argument', /--database-url.*MRP_MODE=embedded/),
    );
    assert.throws(
      () => relayMode(undefined, { MRP_MODE: 'cluster' }),
      usage('invalid_argument', /MRP_MODE: "cluster" must be embedded or external/),
    );
  });

  it('a flag of the other mode is refused (exit 2) instead of ignored: --db-pool and --connection-lease embedded, --data-dir external', {
    timeout: 20_000,
  }, async (t) => {
    const home = await mkdtemp(join(tmpdir(), 'mrp-relay-mode-'));
    t.after(() => rm(home, { recursive: true, force: true }));
    const deps = testDeps({ home });
    for (const [args, message] of [
      [['--db-pool', '4'], /^--db-pool only applies to external mode/],
      [['--connection-lease', '5s'], /^--connection-lease only applies to external mode/],
      [
        ['--database-url', 'postgres://u:s3cret@127.0.0.1:1/db', '--data-dir', home],
        /^--data-dir only applies to embedded mode/,
      ],
    ] as const) {
      const res = await runCli(['relay', '--port', '0', ...args, '--json'], deps);
      assert.equal(res.code, 2, res.stderr);
      const err = JSON.parse(res.stderr.trim().split('\n').at(-1)!).error;
      assert.equal(err.code, 'invalid_argument');
      assert.match(err.message, message);
      assert.doesNotMatch(res.stderr, /s3cret/);
    }
  });

  it('--blob-store: s3:// needs credentials and a bucket; file:// opens the file store there; anything else is refused', async (t) => {
    await assert.rejects(
      openBlobStore('s3://bucket/prefix', {}),
      (err: unknown) => (err as UsageError).code === 'missing_credentials',
    );
    const env = { AWS_ACCESS_KEY_ID: 'id', AWS_SECRET_ACCESS_KEY: 'secret', AWS_ENDPOINT_URL: 'http://127.0.0.1:9' };
    const s3 = await openBlobStore('s3://bucket/prefix', env);
    assert.equal(s3.kind, 's3');
    await s3.close();
    await assert.rejects(openBlobStore('s3://', env), usage('invalid_argument', /--blob-store/));
    const dir = await mkdtemp(join(tmpdir(), 'mrp-blobs-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const fs = await openBlobStore(pathToFileURL(dir).href, {});
    assert.equal(fs.kind, 'fs');
    await fs.close();
    await assert.rejects(
      openBlobStore('/shared/dir', {}),
      usage('invalid_argument', /must be s3:\/\/bucket\/prefix or file:\/\/\/shared\/dir/),
    );
  });
});
