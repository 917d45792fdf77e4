/**
 * A throwaway PostgreSQL cluster for tests: `initdb` in a temp directory, `pg_ctl start` on a free
 * port with a Unix socket in that directory, stopped and removed afterwards. Never a system-wide
 * database. The server binaries come from the machine image (PostgreSQL 15 under
 * /usr/lib/postgresql/<v>/bin, or `MRP_PG_BIN`); PostgreSQL refuses to run as root, so when the
 * tests run as root the cluster runs as the `postgres` user through `runuser`.
 *
 * One cluster per test file (`startPostgres` in a `before`), one fresh database per test
 * (`cluster.database(t)`): ~1 s to start, ~30 ms per database. When no server binaries are found,
 * `postgresAvailable()` says why, and suites skip with that reason (CI has them).
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface PostgresCluster {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` — the maintenance database. */
  readonly url: string;
  readonly port: number;
  /** Creates a fresh, empty database and returns its URL; dropped when the test ends (if `t` is given). */
  database(t?: TestContext): Promise<string>;
  /** SQL on the maintenance database as the superuser, through `psql` (no driver needed). */
  psql(sql: string, db?: string): Promise<string>;
  /** Stops the server the way a crash would (`-m immediate`) and starts it again on the same port. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

function binDir(): string | undefined {
  const fromEnv = process.env['MRP_PG_BIN'];
  if (fromEnv) return existsSync(join(fromEnv, 'initdb')) ? fromEnv : undefined;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

/** `undefined` when a cluster can be started here, else why not (a skip reason). */
export function postgresAvailable(): string | undefined {
  if (!binDir()) return 'PostgreSQL server binaries not found (set MRP_PG_BIN to the directory holding initdb)';
  if (process.getuid?.() === 0 && !existsSync('/usr/sbin/runuser') && !existsSync('/sbin/runuser')) {
    return 'running as root without runuser: PostgreSQL cannot run as root';
  }
  return undefined;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

export async function startPostgres(): Promise<PostgresCluster> {
  const bin = binDir();
  if (!bin) throw new Error(postgresAvailable());
  const asRoot = process.getuid?.() === 0;
  const exec = (cmd: string, args: string[]) =>
    asRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]) : run(join(bin, cmd), args);

  const dir = await mkdtemp(join(tmpdir(), 'mrp-pg-'));
  const data = join(dir, 'data');
  if (asRoot) {
    const { stdout } = await run('id', ['-u', 'postgres']);
    const { stdout: gid } = await run('id', ['-g', 'postgres']);
    await chown(dir, Number(stdout.trim()), Number(gid.trim()));
  }
  await chmod(dir, 0o700);
  await exec('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '--no-sync', '-E', 'UTF8', '--locale=C']);

  let port = 0;
  for (let attempt = 0; ; attempt++) {
    port = await freePort();
    try {
      await exec('pg_ctl', [
        '-D',
        data,
        '-l',
        join(dir, 'server.log'),
        '-w',
        '-t',
        '30',
        '-o',
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200`,
        'start',
      ]);
      break;
    } catch (err) {
      if (attempt >= 2) throw err; // the free port was taken in between: try another
    }
  }

  const psql = async (sql: string, db = 'postgres'): Promise<string> => {
    const { stdout } = await run(join(bin, 'psql'), [
      '-X',
      '-q',
      '-A',
      '-t',
      '-v',
      'ON_ERROR_STOP=1',
      '-h',
      '127.0.0.1',
      '-p',
      String(port),
      '-U',
      'postgres',
      '-d',
      db,
      '-c',
      sql,
    ]);
    return stdout.trim();
  };

  let counter = 0;
  let stopped = false;
  const cluster: PostgresCluster = {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    psql,
    async database(t) {
      const name = `t_${process.pid}_${++counter}`;
      await psql(`CREATE DATABASE ${name}`);
      t?.after(async () => {
        if (stopped) return;
        await psql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
      });
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    async restart() {
      await exec('pg_ctl', ['-D', data, '-l', join(dir, 'server.log'), '-m', 'immediate', '-w', '-t', '30', 'restart']);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await exec('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']).catch(() => {});
      await rm(dir, { recursive: true, force: true });
    },
  };
  return cluster;
}
