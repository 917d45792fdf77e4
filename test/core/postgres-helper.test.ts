import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type PostgresCluster, postgresAvailable, startPostgres } from '../helpers/postgres.js';

const skip = postgresAvailable();

describe('throwaway PostgreSQL cluster (test helper)', { skip }, () => {
  let pg: PostgresCluster;
  before(async () => {
    pg = await startPostgres();
  });
  after(() => pg?.stop());

  it('starts on a free port and gives each test a fresh database', async (t) => {
    const url = await pg.database(t);
    const name = new URL(url).pathname.slice(1);
    assert.equal(await pg.psql('SELECT 1'), '1');
    await pg.psql('CREATE TABLE x (a int); INSERT INTO x VALUES (7)', name);
    assert.equal(await pg.psql('SELECT a FROM x', name), '7');
    const postgres = (await import('../../vendor/postgres/index.js')).default;
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const rows = await sql`SELECT a FROM x`;
      assert.equal(rows[0]?.['a'], 7);
    } finally {
      await sql.end();
    }
  });
});
