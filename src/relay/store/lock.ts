/**
 * One relay per data directory. The directory cache (agents, ACLs) trusts that this process is
 * the only writer, so a second relay on the same `DATA_DIR` would serve stale decisions (a
 * blocked sender getting through). `DATA_DIR/mrp.lock` is a tiny SQLite file on which the running
 * relay holds a write lock (an open `BEGIN IMMEDIATE`) for its whole life.
 *
 * Why SQLite rather than a pid file: the lock is a kernel file lock, released when the process
 * ends however it ends (kill -9, power cut), so a stale lock never blocks a restart and a reused
 * pid is never mistaken for a live relay. Readers may still read the lock file while it is held,
 * which is how a refused relay learns the holder's pid for its error message. The file is safe to
 * delete whenever no relay runs.
 */
import { closeSync, openSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { ConfigError } from '../../core/errors.js';

export const LOCK_FILE = 'mrp.lock';

export class DataDirLock {
  readonly path: string;
  #db: Database.Database | undefined;

  private constructor(path: string, db: Database.Database) {
    this.path = path;
    this.#db = db;
  }

  /** Takes the lock of `dataDir` or throws `ConfigError('data_dir_locked')` naming the directory. */
  static acquire(dataDir: string): DataDirLock {
    const path = join(dataDir, LOCK_FILE);
    try {
      closeSync(openSync(path, 'a', 0o600));
    } catch (err) {
      throw new ConfigError('storage_unusable', `cannot create ${path}: ${(err as Error).message}`, {
        file: path,
        cause: err,
      });
    }
    let db: Database.Database;
    try {
      db = new Database(path);
      db.pragma('busy_timeout = 0');
    } catch (err) {
      throw new ConfigError('storage_unusable', `cannot open the lock file ${path}: ${(err as Error).message}`, {
        file: path,
        cause: err,
        hint: `no relay should be using ${dataDir}; delete ${path} and start again`,
      });
    }
    try {
      db.exec(
        'CREATE TABLE IF NOT EXISTS holder (id INTEGER PRIMARY KEY CHECK (id = 1), pid INTEGER NOT NULL, host TEXT NOT NULL, since TEXT NOT NULL)',
      );
      db.prepare('INSERT OR REPLACE INTO holder (id, pid, host, since) VALUES (1, ?, ?, ?)').run(
        process.pid,
        hostname(),
        new Date().toISOString(),
      );
      db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      const code = (err as { code?: string }).code;
      const holder = code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED' ? readHolder(db) : undefined;
      db.close();
      if (code !== 'SQLITE_BUSY' && code !== 'SQLITE_LOCKED') {
        throw new ConfigError('storage_unusable', `cannot use the lock file ${path}: ${(err as Error).message}`, {
          file: path,
          cause: err,
          hint: `no relay should be using ${dataDir}; delete ${path} and start again`,
        });
      }
      const who =
        holder && holder.pid !== process.pid
          ? `pid ${holder.pid} on ${holder.host}, since ${holder.since}`
          : 'another process';
      throw new ConfigError('data_dir_locked', `another relay is using the data directory ${dataDir} (${who})`, {
        file: dataDir,
        hint: 'stop that relay first, or give this one its own --data-dir',
      });
    }
    return new DataDirLock(path, db);
  }

  /** Gives the lock up (idempotent). */
  release(): void {
    const db = this.#db;
    this.#db = undefined;
    if (!db?.open) return;
    try {
      db.exec('ROLLBACK');
    } catch {
      // Closing releases the lock whatever state the transaction is in.
    }
    db.close();
  }
}

function readHolder(db: Database.Database): { pid: number; host: string; since: string } | undefined {
  try {
    return db.prepare('SELECT pid, host, since FROM holder WHERE id = 1').get() as
      | { pid: number; host: string; since: string }
      | undefined;
  } catch {
    return undefined;
  }
}
