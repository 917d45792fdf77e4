/**
 * The PostgreSQL store on the store contract (test/relay/store.contract.ts), one throwaway
 * cluster for the file (test/helpers/postgres.ts) and a fresh database per test; then what only
 * this backend has to show: verbatim bodies, migrations under concurrent starts, clear start-up
 * errors, the sweep lock. Skipped when no PostgreSQL server binaries are installed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ConfigError } from '../../src/core/errors.js';
import { MIGRATIONS } from '../../src/relay/store/pg-schema.js';
import { PgStore } from '../../src/relay/store/pg-store.js';
import { type PostgresCluster, postgresAvailable, startPostgres } from '../helpers/postgres.js';
import { agent, message, newKey, storeContract } from './store.contract.js';

const skip = postgresAvailable();
let cluster: PostgresCluster;

if (skip) {
  describe('Store contract: postgres', { skip }, () => {
    it('needs PostgreSQL', () => {});
  });
} else {
  before(async () => {
    cluster = await startPostgres();
  });
  after(() => cluster?.stop());

  storeContract('postgres', async () => {
    const url = await cluster.database();
    const store = await PgStore.open(url, { max: 4 });
    return {
      store,
      close: async () => {
        await store.close();
        await cluster.psql(`DROP DATABASE IF EXISTS ${new URL(url).pathname.slice(1)} WITH (FORCE)`);
      },
    };
  });

  describe('PgStore: what only PostgreSQL has to show', () => {
    it('bodies round-trip byte for byte (1e999, duplicate keys, big integers, escapes, quotes, braces, unicode)', async (t) => {
      const store = await PgStore.open(await cluster.database(t), { max: 2 });
      t.after(() => store.close());
      const [a, b] = [newKey(), newKey()];
      const bodies = [
        '{"n":1e999}',
        '{"a":1,"a":2}',
        '{"big":123456789012345678901234567890}',
        '{"s":"\\u0000\\ud800 \\"q\\" \\\\ {} , NULL"}',
        ' [ 1 ,\n\t2 ] ',
        '{"e":"é 𝄞 \u2028"}',
        '"NULL"',
      ];
      const ms = bodies.map((body_json) => message(a, b, { body_json, thread_id: null, metadata: { k: 'v"\\' } }));
      const result = await store.commit({ messages: ms, delivered: [], active: new Map() }, Date.UTC(2026, 0, 1));
      assert.equal(result.refused.size, 0);
      const got = await store.getMessages(ms.map((m) => m.message_id));
      assert.deepEqual(
        got.sort((x, y) => x.seq - y.seq).map((m) => m.body_json),
        bodies,
      );
      assert.deepEqual(got[0]!.metadata, { k: 'v"\\' });
    });

    it('processes starting at once migrate once (advisory lock); a newer schema is refused with the URL named', async (t) => {
      const url = await cluster.database(t);
      const stores = await Promise.all([1, 2, 3, 4].map(() => PgStore.open(url, { max: 1 })));
      for (const s of stores) await s.close();
      const dbName = new URL(url).pathname.slice(1);
      assert.equal(await cluster.psql('SELECT count(*) FROM mrp_migrations', dbName), String(MIGRATIONS.length));
      await cluster.psql(
        `INSERT INTO mrp_migrations (version, name) VALUES (${MIGRATIONS.length + 1}, 'future')`,
        dbName,
      );
      await assert.rejects(PgStore.open(url), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, /newer than this relay understands/);
        assert.match(err.message, new RegExp(dbName));
        // Not a connection failure: the hint must not send the operator to check the server.
        assert.doesNotMatch(err.message, /cannot connect/);
        assert.match(err.hint ?? '', /upgrade mrp/);
        return true;
      });
    });

    it('start-up errors: unreachable server and failed login name the URL without its password', async () => {
      await assert.rejects(
        PgStore.open('postgres://u:s3cret@127.0.0.1:1/db', { connectTimeoutSeconds: 2 }),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.equal(err.code, 'database_unreachable');
          assert.match(err.message, /127\.0\.0\.1:1\/db/);
          assert.doesNotMatch(err.message, /s3cret/);
          return true;
        },
      );
      await assert.rejects(
        PgStore.open(`postgres://nobody:s3cret@127.0.0.1:${cluster.port}/postgres`),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError);
          assert.match(err.code, /^database_(auth_failed|unreachable)$/);
          assert.doesNotMatch(err.message, /s3cret/);
          return true;
        },
      );
    });

    it('start-up errors: an unparsable URL and a user who may not create tables say so, not "cannot connect"', async (t) => {
      await assert.rejects(PgStore.open('postgres://u:s3 cret@[bad'), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.equal(err.code, 'database_unreachable');
        assert.match(err.message, /not a valid postgres:\/\/ URL/);
        assert.doesNotMatch(`${err.message} ${err.hint}`, /s3 cret/);
        return true;
      });
      const url = await cluster.database(t);
      // A server setting the server does not know is refused while connecting: not a schema problem.
      await assert.rejects(PgStore.open(`${url}?password=s3cret&no_such_setting=1`, { max: 1 }), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, /the server refused the connection \(42704 /);
        assert.doesNotMatch(err.message, /s3cret/);
        return true;
      });
      const role = `weak_${process.pid}`;
      await cluster.psql(`DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role} LOGIN`);
      t.after(() => cluster.psql(`DROP ROLE IF EXISTS ${role}`).catch(() => {}));
      const weak = new URL(url);
      weak.username = role;
      weak.password = 's3cret';
      await assert.rejects(PgStore.open(weak.toString(), { max: 1 }), (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.equal(err.code, 'database_unreachable');
        assert.match(err.message, /cannot set up the schema \(42501 /);
        assert.doesNotMatch(err.message, /cannot connect|s3cret/);
        assert.match(err.hint ?? '', /create tables/);
        return true;
      });
    });

    it('a user who may only read and write the tables (the owner migrated them) opens an up-to-date database', async (t) => {
      const url = await cluster.database(t);
      await (await PgStore.open(url, { max: 1 })).close(); // the owner migrates
      const dbName = new URL(url).pathname.slice(1);
      const role = `dml_${process.pid}`;
      await cluster.psql(`DROP ROLE IF EXISTS ${role}; CREATE ROLE ${role} LOGIN`);
      t.after(async () => {
        await cluster.psql(`DROP OWNED BY ${role}`, dbName).catch(() => {});
        await cluster.psql(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
      });
      await cluster.psql(
        `REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO ${role}; GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO ${role}`,
        dbName,
      );
      const dml = new URL(url);
      dml.username = role;
      const store = await PgStore.open(dml.toString(), { max: 2 });
      t.after(() => store.close());
      const m = message(newKey(), newKey());
      const result = await store.commit({ messages: [m], delivered: [], active: new Map() }, Date.UTC(2026, 0, 1));
      assert.equal(result.refused.size, 0);
      assert.equal((await store.getMessages([m.message_id]))[0]?.message_id, m.message_id);
    });

    it('two processes claiming webhook deliveries at once share the due work: none twice, none left behind', async (t) => {
      const url = await cluster.database(t);
      const [one, two] = await Promise.all([PgStore.open(url, { max: 4 }), PgStore.open(url, { max: 4 })]);
      t.after(async () => {
        await one.close();
        await two.close();
      });
      const T = Date.UTC(2026, 0, 1);
      const s = newKey();
      const rs = [newKey(), newKey(), newKey(), newKey()];
      for (const r of rs) await one.putWebhook(r, 'https://x.example/', 'secret-secret-secret', T);
      const ms = Array.from({ length: 24 }, (_, i) => message(s, rs[i % rs.length]!));
      await one.commit({ messages: ms, delivered: [], active: new Map() }, T);
      const claim = { limit: 2, leaseMs: 60_000, perAgent: 10, inFlight: new Map<string, number>() };
      // Twelve claimers of two each, at once, half through each process: exactly the 24 due, each once.
      const got = (
        await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? one : two).claimDeliveries(T, claim)))
      ).flat();
      const ids = got.map((c) => c.message.message_id);
      assert.equal(new Set(ids).size, ids.length, 'no delivery handed out twice');
      assert.equal(ids.length, ms.length, 'no claimer came back empty while work was due');
      assert.deepEqual(await one.claimDeliveries(T, claim), []);
    });

    it('a blob quota holds across processes: concurrent uploads through two stores never exceed it together', async (t) => {
      const url = await cluster.database(t);
      const [one, two] = await Promise.all([PgStore.open(url, { max: 4 }), PgStore.open(url, { max: 4 })]);
      t.after(async () => {
        await one.close();
        await two.close();
      });
      const T = Date.UTC(2026, 0, 1);
      const owner = newKey();
      const blob = (i: number) => ({
        blob_id: `blob_${i.toString(16).padStart(12, '0')}`,
        owner_key: owner,
        hash: 'ab'.repeat(32),
        size: 10,
        content_type: 'text/plain',
        created_at: T,
        expires_at: T + 86_400_000,
      });
      const quota = { maxCount: 5, maxBytes: 1_000_000 };
      const results = await Promise.all(
        Array.from({ length: 16 }, (_, i) => (i % 2 ? one : two).insertBlob(blob(i), quota, T)),
      );
      assert.equal(results.filter((r) => r.inserted).length, 5);
      assert.deepEqual(await two.blobUsage(owner, T), { count: 5, bytes: 50 });
    });

    it('sweep runs in one process at a time: a second sweeper skips while the lock is held', async (t) => {
      const url = await cluster.database(t);
      const [one, two] = await Promise.all([PgStore.open(url, { max: 2 }), PgStore.open(url, { max: 2 })]);
      t.after(async () => {
        await one.close();
        await two.close();
      });
      const [a, b] = [newKey(), newKey()];
      const T = Date.UTC(2026, 0, 1);
      await one.saveAgent(agent(b));
      await one.commit(
        { messages: [message(a, b, { created_at: T, expires_at: T + 10 })], delivered: [], active: new Map() },
        T,
      );
      // Hold the sweep lock from another session, as a sweeping process would.
      let release!: () => void;
      const held = new Promise<void>((r) => (release = r));
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => (locked = r));
      const holder = one.sql.begin(async (tx) => {
        await tx`SELECT pg_advisory_xact_lock(${0x6d7270}, ${2})`;
        locked();
        await held;
      });
      await isLocked;
      assert.deepEqual(await two.sweep(T + 100, 1000), { expired: 0, purged: 0 });
      release();
      await holder;
      assert.deepEqual(await two.sweep(T + 100, 1000), { expired: 1, purged: 0 });
    });
  });
}
