/**
 * File-level care of `DATA_DIR/mrp.db`, apart from SQL: creating it private (0600, which SQLite
 * passes on to `-wal` and `-shm`), turning start-up failures into one-line errors that name the
 * file, and the checks behind `/v1/health/ready` that look at the disk rather than at SQLite's
 * page cache (a corrupted or truncated file, a full disk).
 */
import { closeSync, mkdirSync, openSync, readSync, statfsSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { ConfigError } from '../../core/errors.js';
import type { StorageHealth } from './store.js';

const HINT = 'move the file away to start with an empty database, or restore a backup';

/** Creates the data directory (0700) if needed; refuses a path that is not a directory. */
export function prepareDataDir(dataDir: string): void {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'EEXIST' || code === 'ENOTDIR' ? 'it is not a directory' : (err as Error).message;
    throw new ConfigError('storage_unusable', `cannot use the data directory ${dataDir}: ${why}`, {
      file: dataDir,
      cause: err,
    });
  }
}

/** Creates an empty database file with mode 0600 unless one exists; refuses anything but a file. */
export function ensureDbFile(path: string): void {
  let isFile: boolean | undefined;
  try {
    isFile = statSync(path).isFile();
  } catch {
    isFile = undefined;
  }
  if (isFile === false)
    throw new ConfigError('storage_unusable', `cannot use ${path}: it is not a regular file`, {
      file: path,
      hint: HINT,
    });
  if (isFile) return;
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw storageError(path, err);
  }
}

const REASONS: Record<string, string> = {
  SQLITE_NOTADB: 'it is not a SQLite database (corrupt, or not an mrp.db)',
  SQLITE_CORRUPT: 'the database is corrupt',
  SQLITE_CANTOPEN: 'it cannot be opened',
  SQLITE_READONLY: 'it is read-only',
  SQLITE_FULL: 'the disk is full',
  SQLITE_IOERR: 'a disk I/O error occurred',
  SQLITE_PERM: 'permission denied',
  EACCES: 'permission denied',
  EISDIR: 'it is a directory',
};

/** A one-line start-up error naming the file. */
export function storageError(path: string, err: unknown): ConfigError {
  if (err instanceof ConfigError) return err;
  const code = String((err as { code?: unknown }).code ?? '');
  const base = code.startsWith('SQLITE_IOERR')
    ? 'SQLITE_IOERR'
    : code.startsWith('SQLITE_CORRUPT')
      ? 'SQLITE_CORRUPT'
      : code;
  const why = REASONS[base] ?? (err as Error).message ?? String(err);
  return new ConfigError('storage_unusable', `cannot use ${path}: ${why}${code ? ` (${code})` : ''}`, {
    file: path,
    cause: err,
    hint: HINT,
  });
}

const MAGIC = 'SQLite format 3\u0000';

export interface FileCheckOptions {
  /** Less free space than this on the data directory's file system is "disk full". */
  minFreeBytes: number;
  /** Files up to this size also get a `PRAGMA quick_check` through a fresh read-only connection. */
  quickCheckMaxBytes: number;
  /**
   * The file has had a valid header before (see `hasDbHeader`): an empty file is then a truncated
   * database, not a fresh one. A new WAL-mode database can be 0 bytes until its first
   * checkpoint, so emptiness alone proves nothing.
   */
  headerSeen?: boolean;
}

/** Whether the file starts with the SQLite header (false for a missing or empty file). */
export function hasDbHeader(path: string): boolean {
  const header = Buffer.alloc(16);
  try {
    const fd = openSync(path, 'r');
    try {
      return readSync(fd, header, 0, 16, 0) === 16 && header.toString('latin1') === MAGIC;
    } finally {
      closeSync(fd);
    }
  } catch {
    return false;
  }
}

/**
 * Looks at the database on disk: free space, the file still there, its header, its length against
 * the page count the header records, and (for files up to `quickCheckMaxBytes`) a full
 * `quick_check` of every page as a fresh connection reads it.
 */
export function checkDbFile(path: string, options: FileCheckOptions): StorageHealth {
  try {
    const fs = statfsSync(dirname(path));
    const free = fs.bavail * fs.bsize;
    if (free < options.minFreeBytes) return { ok: false, reason: 'disk_full', detail: `${free} bytes free` };
  } catch (err) {
    return { ok: false, reason: 'missing', detail: (err as Error).message };
  }
  let size: number;
  const header = Buffer.alloc(100);
  try {
    const st = statSync(path);
    if (!st.isFile()) return { ok: false, reason: 'missing', detail: `${path} is not a file` };
    size = st.size;
    const fd = openSync(path, 'r');
    try {
      readSync(fd, header, 0, 100, 0);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    return { ok: false, reason: 'missing', detail: (err as Error).message };
  }
  if (size === 0 && options.headerSeen)
    return { ok: false, reason: 'corrupt', detail: 'the file was truncated to 0 bytes' };
  if (size > 0) {
    if (header.toString('latin1', 0, 16) !== MAGIC) return { ok: false, reason: 'corrupt', detail: 'bad file header' };
    const pageSize = header.readUInt16BE(16) === 1 ? 65_536 : header.readUInt16BE(16);
    const pages = header.readUInt32BE(28);
    // The in-header page count is valid when the change counter matches "version valid for".
    if (header.readUInt32BE(24) === header.readUInt32BE(92) && pages * pageSize > size) {
      return { ok: false, reason: 'corrupt', detail: `the file is shorter (${size} bytes) than its ${pages} pages` };
    }
  }
  if (size <= options.quickCheckMaxBytes) {
    let db: Database.Database | undefined;
    try {
      db = new Database(path, { readonly: true, fileMustExist: true });
      db.pragma('busy_timeout = 1000');
      const rows = db.pragma('quick_check') as Array<{ quick_check: string }>;
      if (rows[0]?.quick_check !== 'ok')
        return { ok: false, reason: 'corrupt', detail: rows[0]?.quick_check ?? 'quick_check failed' };
    } catch (err) {
      // Busy means a writer is checkpointing: no verdict this time, not a failure.
      if ((err as { code?: string }).code !== 'SQLITE_BUSY')
        return { ok: false, reason: 'corrupt', detail: (err as Error).message };
    } finally {
      db?.close();
    }
  }
  return { ok: true };
}
