/**
 * The PostgreSQL driver mrp loads (vendor/postgres: postgres.js 3.4.9 with the fixes listed in its
 * README) when the server closes connections under it: a database restart, a failover, an
 * administrator's pg_terminate_backend. Upstream, the next query on such a connection inside a
 * transaction or on a reserved connection threw from a timer and killed the process
 * (porsager/postgres#1208). Here each case must end in a rejected query, and the pool must serve
 * again afterwards. A real throwaway cluster; skipped without PostgreSQL.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import postgres from '../../vendor/postgres/index.js';
import { type PostgresCluster, postgresAvailable, startPostgres } from '../helpers/postgres.js';

const skip = postgresAvailable();
const root = fileURLToPath(new URL('../..', import.meta.url));

describe('vendor/postgres', () => {
  it('is exactly what scripts/vendor-postgres.mjs writes from the pinned package', async () => {
    await promisify(execFile)(process.execPath, ['scripts/vendor-postgres.mjs', '--check'], { cwd: root });
  });
});

describe('the PostgreSQL driver when the server closes its connections', { skip }, () => {
  let cluster: PostgresCluster;
  before(async () => {
    cluster = await startPostgres();
  });
  after(() => cluster?.stop());

  /** Per pool: who waits for the pool to see one of its connections close (the driver's `onclose`). */
  const closeWaiters = new Map<postgres.Sql, Array<() => void>>();

  async function pool(t: TestContext, max = 2): Promise<postgres.Sql> {
    const waiters: Array<() => void> = [];
    const sql = postgres(await cluster.database(t), {
      max,
      onnotice: () => {},
      onclose: () => {
        for (const wake of waiters.splice(0)) wake();
      },
    });
    closeWaiters.set(sql, waiters);
    t.after(() => sql.end({ timeout: 1 }));
    return sql;
  }

  /** Terminates backend `pid` of `sql`'s pool and waits until the pool has seen its connection close. */
  async function kill(sql: postgres.Sql, pid: number): Promise<void> {
    const closed = new Promise<void>((resolve) => closeWaiters.get(sql)!.push(resolve));
    await cluster.psql(`SELECT pg_terminate_backend(${pid})`);
    await closed;
  }

  /** Answers every query again, also several at once on every connection of the pool. */
  async function serves(sql: postgres.Sql): Promise<void> {
    const rows = await Promise.all(Array.from({ length: 20 }, (_, i) => sql`SELECT ${i}::int AS n`));
    assert.deepEqual(
      rows.map((r) => r[0]?.['n']),
      Array.from({ length: 20 }, (_, i) => i),
    );
  }

  it('a transaction whose connection is killed rejects; the process lives and the pool serves again', async (t) => {
    const sql = await pool(t);
    await serves(sql);
    const failed = await sql
      .begin(async (tx) => {
        const [row] = await tx`SELECT pg_backend_pid() AS pid`;
        // Once the pool has seen the close, the next statement (and the rollback after it) meet no socket.
        await kill(sql, row!['pid']);
        await tx`SELECT 1`;
      })
      .then(
        () => undefined,
        (err: Error & { code?: string }) => err,
      );
    assert.ok(failed, 'the transaction must fail');
    assert.match(String(failed.code), /^(CONNECTION_CLOSED|57P01)$/);
    // Give the timer the upstream driver would have thrown from its turn.
    await new Promise((r) => setImmediate(r));
    await serves(sql);
  });

  it('a statement sent while the kill is in flight rejects as well', async (t) => {
    const sql = await pool(t, 1);
    const failed = await sql
      .begin(async (tx) => {
        const [row] = await tx`SELECT pg_backend_pid() AS pid`;
        await Promise.all([kill(sql, row!['pid']), tx`SELECT pg_sleep(5)`]);
      })
      .then(
        () => undefined,
        (err: Error) => err,
      );
    assert.ok(failed);
    await serves(sql);
  });

  it('a reserved connection whose backend is killed rejects every later query, and releasing it heals the pool', async (t) => {
    const sql = await pool(t);
    const reserved = await sql.reserve();
    const [row] = await reserved`SELECT pg_backend_pid() AS pid`;
    await kill(sql, row!['pid']);
    for (let i = 0; i < 3; i++) {
      await assert.rejects(Promise.resolve(reserved`SELECT 1`), (err: Error & { code?: string }) =>
        /^(CONNECTION_CLOSED|57P01)$/.test(String(err.code)),
      );
    }
    await new Promise((r) => setImmediate(r));
    reserved.release();
    await serves(sql);
  });

  it('a COPY whose connection is killed ends its stream with the error, and the connection serves again', async (t) => {
    // closed() rejecting the query made it skip the error() that destroyed the stream: the reader
    // waited forever, and the connection, still "in COPY", never finished its next session's startup.
    const sql = await pool(t, 1);
    const [row] = await sql`SELECT pg_backend_pid() AS pid`;
    const stream = await sql`COPY (SELECT generate_series(1, 10000000)) TO STDOUT`.readable();
    const ended = new Promise<string>((resolve) => {
      stream.on('error', (err: Error & { code?: string }) => resolve(String(err.code)));
      stream.on('end', () => resolve('end'));
      stream.resume();
    });
    await kill(sql, row!['pid']);
    const timeout = (ms: number) => new Promise<string>((r) => setTimeout(r, ms, 'timeout').unref());
    assert.equal(await Promise.race([ended, timeout(5000)]), 'CONNECTION_CLOSED');
    assert.deepEqual(await Promise.race([sql`SELECT 1 AS n`.then((r) => r[0]?.['n']), timeout(5000)]), 1);
  });

  it('a cursor whose connection is killed while its loop runs: breaking out neither crashes nor disturbs the pool', async (t) => {
    // The suspended portal's continuation used the connection's current query, which the close set to
    // null: query.reject threw in an async function, an unhandled rejection that ends the process.
    const sql = await pool(t, 1);
    const [row] = await sql`SELECT pg_backend_pid() AS pid`;
    for await (const _rows of sql`SELECT generate_series(1, 100) AS n`.cursor(10)) {
      await kill(sql, row!['pid']);
      break;
    }
    // The portal's continuation runs on the break (a microtask); give it a whole turn besides.
    await new Promise((r) => setImmediate(r));
    await serves(sql);
  });

  it('a cursor whose connection is killed between two batches throws at its next step, never ends short', async (t) => {
    // Upstream ended the loop as if all rows were read: a page read through a cursor came back short, silently.
    const sql = await pool(t, 1);
    const [row] = await sql`SELECT pg_backend_pid() AS pid`;
    let batches = 0;
    const failed = await (async () => {
      for await (const _rows of sql`SELECT generate_series(1, 100) AS n`.cursor(10)) {
        if (++batches === 1) await kill(sql, row!['pid']);
      }
    })().then(
      () => undefined,
      (err: Error & { code?: string }) => err,
    );
    assert.equal(batches, 1, 'no batch after the kill');
    assert.ok(failed, 'the loop must fail, not end as if it had read all 100 rows');
    assert.match(String(failed.code), /^(CONNECTION_CLOSED|57P01|ECONNRESET)$/);
    await serves(sql);
  });

  it("statements waiting in a transaction's own queue when its connection is killed are rejected, not left pending", async (t) => {
    const sql = await pool(t, 1);
    let both: Promise<unknown> | undefined;
    await sql
      .begin(async (tx) => {
        const [row] = await tx`SELECT pg_backend_pid() AS pid`;
        // The first, new and with a parameter, is described first: the connection counts as busy and
        // the second waits in the transaction's queue.
        both = Promise.allSettled([tx`SELECT ${1}::int AS a, pg_sleep(0.5)`, tx`SELECT 2`]);
        await kill(sql, row!['pid']);
        await both;
      })
      .catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise((r) => {
      timer = setTimeout(r, 5000, 'pending');
    });
    const outcome = await Promise.race([
      both!.then((r) => (r as PromiseSettledResult<unknown>[]).map((x) => x.status)),
      timeout,
    ]);
    clearTimeout(timer);
    assert.deepEqual(outcome, ['rejected', 'rejected']);
    await serves(sql);
  });

  it('every connection killed at once, eight times under mixed load: each query settles, the pool recovers', {
    timeout: 60_000,
  }, async (t) => {
    // Single statements, pipelined transactions and savepoints on 3 connections for 10 workers. A
    // statement sent between a socket's error and its close used to stay queued past the reconnect
    // and take the answer of the query behind it, which then waited forever.
    const sql = await pool(t, 3);
    const db = sql.options.database;
    let settled = 0;
    let failed = 0;
    let stop = false;
    let wake: (() => void) | undefined;
    const tally = (p: Promise<unknown>) =>
      p.then(
        () => settled++,
        (err: Error & { code?: string }) => {
          settled++;
          failed++;
          assert.match(String(err.code), /^(CONNECTION_CLOSED|ECONNRESET|57P01|EPIPE)$/, String(err));
        },
      );
    const work = Array.from({ length: 10 }, async (_, w) => {
      for (let i = 0; !stop; i++) {
        const kind = (w + i) % 3;
        if (kind === 0) await tally(sql`SELECT ${i}::int AS n, pg_sleep(0.001)`);
        else if (kind === 1)
          await tally(
            sql.begin(async (tx) => {
              await Promise.all([tx`SELECT ${w}::int`, tx`SELECT 2`, tx`SELECT pg_sleep(0.002)`]);
              await tx`SELECT ${i}::text`;
            }),
          );
        else
          await tally(
            sql.begin(async (tx) => {
              await tx`SELECT ${w}::int`;
              await tx.savepoint((sp) => sp`SELECT 1`);
            }),
          );
        wake?.();
      }
    });
    const settledReaches = (n: number) =>
      new Promise<void>((resolve) => {
        wake = () => settled >= n && resolve();
        wake();
      });
    for (let k = 1; k <= 8; k++) {
      await settledReaches(k * 40);
      await cluster.psql(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '${db}' AND pid <> pg_backend_pid()`,
      );
    }
    await settledReaches(9 * 40);
    stop = true;
    await Promise.all(work);
    assert.ok(failed > 0, 'sanity: the kills cost some queries');
    await serves(sql);
  });
});
