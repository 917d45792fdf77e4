/**
 * Connecting to PostgreSQL (external mode, docs/protocol.md §10): the driver (postgres.js) is
 * imported here, lazily, so a relay on SQLite never loads it. A bounded pool, `bigint` columns
 * read as numbers (times in ms and `seq` fit), and start-up failures turned into one-line errors
 * that name the database URL without its password.
 */

import type postgres from 'postgres';
import { ConfigError } from '../../core/errors.js';

export type Sql = postgres.Sql;

export interface PgConnectOptions {
  /** Pool size: connections this process opens at most (default 10). */
  max?: number;
  /** Seconds to wait for a connection (default 10). */
  connectTimeoutSeconds?: number;
  /** `application_name` the server shows in `pg_stat_activity`. */
  applicationName?: string;
}

/** The URL without its password (and without query parameters that may carry one), for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const name of [...u.searchParams.keys()]) if (/pass|secret|key/i.test(name)) u.searchParams.set(name, '***');
    return u.toString();
  } catch {
    return '<unparsable database URL>';
  }
}

/** Whether `url` looks like a PostgreSQL connection URL. */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

const BIGINT_AS_NUMBER = {
  to: 20,
  from: [20],
  serialize: (x: unknown) => String(x),
  parse: (x: string) => Number(x),
};

/**
 * Opens a pool and makes one round trip, so that an unreachable server or a refused login fails
 * here, with the URL named (`database_unreachable`, `database_auth_failed`), not at the first request.
 */
export async function connectPostgres(url: string, options: PgConnectOptions = {}): Promise<Sql> {
  const where = redactUrl(url);
  if (!isPostgresUrl(url)) {
    throw new ConfigError('database_unreachable', `${where}: not a postgres:// URL`, {
      hint: 'pass --database-url postgres://user:password@host:5432/database',
    });
  }
  // The driver patched in vendor/postgres (its README says why), not node_modules' copy.
  const { default: postgresJs } = await import('../../../vendor/postgres/index.js');
  let sql: ReturnType<typeof postgresJs>;
  try {
    sql = postgresJs(url, {
      max: options.max ?? 10,
      connect_timeout: options.connectTimeoutSeconds ?? 10,
      idle_timeout: 60,
      onnotice: () => {},
      connection: { application_name: options.applicationName ?? 'mrp-relay' },
      types: { bigint: BIGINT_AS_NUMBER },
    } as postgres.Options<Record<string, postgres.PostgresType>>);
  } catch {
    // The driver parses the URL synchronously (a space, a bad port, an unbalanced `[`): its own
    // message ("Invalid URL") names neither the setting nor the fix. The URL itself is not repeated:
    // an unparsable one cannot be redacted with certainty.
    throw new ConfigError('database_unreachable', `${where}: not a valid postgres:// URL`, {
      hint: 'pass --database-url postgres://user:password@host:5432/database (percent-encode special characters in the password, e.g. %40 for @, %20 for a space)',
    });
  }
  try {
    await sql`SELECT 1`;
  } catch (err) {
    await sql.end({ timeout: 0 }).catch(() => {});
    throw startupError(where, err, 'connect');
  }
  return sql as unknown as Sql;
}

/**
 * A start-up failure as a one-line `ConfigError` naming the (redacted) URL. `phase`: while
 * connecting (the first round trip) or while setting up the schema on a connection that works.
 */
export function startupError(where: string, err: unknown, phase: 'connect' | 'schema' = 'schema'): ConfigError {
  if (err instanceof ConfigError) return err;
  const code = String((err as { code?: unknown })?.code ?? '');
  const message = (err as Error)?.message ?? String(err);
  // 28P01 wrong password, 28000 no such role / pg_hba refusal, 3D000 no such database.
  if (code === '28P01' || code === '28000') {
    return new ConfigError('database_auth_failed', `${where}: authentication failed (${message})`, {
      hint: 'check the user and password in --database-url / DATABASE_URL',
    });
  }
  if (code === '3D000') {
    return new ConfigError('database_unreachable', `${where}: ${message}`, {
      hint: 'create the database first (createdb)',
    });
  }
  // Any other error the server sent (it has a severity) means the server was reached and answered:
  // the schema could not be set up (42501: the user may not create tables), not a connection
  // failure. Classes 08 (connection), 53 (too many connections) and 57P (shutting down, starting
  // up) are connection trouble.
  const fromServer = typeof (err as { severity?: unknown })?.severity === 'string';
  if (fromServer && phase === 'connect' && !/^(08|53|57P)/.test(code)) {
    return new ConfigError('database_unreachable', `${where}: the server refused the connection (${code} ${message})`, {
      hint: 'check the URL: its user, database and query parameters (?sslmode=… and server settings)',
    });
  }
  if (fromServer && !/^(08|53|57P)/.test(code)) {
    return new ConfigError('database_unreachable', `${where}: cannot set up the schema (${code} ${message})`, {
      hint:
        code === '42501'
          ? "the user needs to read and write mrp's tables, and to create tables on first start and after an upgrade of mrp (make it the owner: ALTER DATABASE … OWNER TO …, or GRANT CREATE ON SCHEMA public TO …)"
          : 'check that the database is one mrp relays use and that the user may create and change its tables',
    });
  }
  return new ConfigError('database_unreachable', `${where}: cannot connect (${code ? `${code} ` : ''}${message})`, {
    hint: 'check that PostgreSQL is running and reachable at that host and port',
  });
}
