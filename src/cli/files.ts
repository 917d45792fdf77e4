/** Small, careful file I/O: exclusive create, atomic replace, private modes, fsync; bounded reads. */
import { randomBytes } from 'node:crypto';
import { chmod, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { decodeUtf8 } from '../protocol/json.js';

/** Creates `path` (fails with EEXIST if it exists), writes, fsyncs. */
export async function writeExclusive(path: string, data: Uint8Array | string, mode = 0o600): Promise<void> {
  const handle = await open(path, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces `path` atomically: a temp file in the same directory, fsync, rename, fsync the dir. */
export async function writeFileAtomic(path: string, data: Uint8Array | string, mode = 0o600): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  try {
    await writeExclusive(tmp, data, mode);
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await chmod(path, mode);
  await syncDir(dir);
}

/** fsync a directory so a rename or create in it survives a crash (best effort). */
export async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Not supported on every platform and file system.
  }
}

export interface LocalTextOptions {
  /** The error code for every problem with this file (e.g. `config_invalid`). */
  code: string;
  /** What the file is, for messages ("config file", "contacts file"). */
  what: string;
  /** Refuse larger files (default 4 MiB). */
  maxBytes?: number;
  /** What to do about it, when the file is unusable. */
  hint?: string;
}

/**
 * Reads a small local text file people edit by hand: `undefined` when it does not exist; strict
 * UTF-8 with a leading BOM (Windows editors add one) dropped; a directory, an unreadable or
 * oversized file, or bytes that are not UTF-8 fail with `options.code`, naming the file.
 */
export async function readLocalText(path: string, options: LocalTextOptions): Promise<string | undefined> {
  const { code, what } = options;
  const max = options.maxBytes ?? 4 * 1024 * 1024;
  const fail = (reason: string, hint = options.hint, cause?: unknown): never => {
    throw new ConfigError(code, `${what} ${path} ${reason}`, {
      file: path,
      ...(hint ? { hint } : {}),
      ...(cause ? { cause } : {}),
    });
  };
  let bytes: Buffer;
  try {
    const info = await stat(path);
    if (info.isDirectory()) fail('is a directory, not a file', `move it away (\`mv ${path} ${path}.bak\`)`);
    if (!info.isFile()) fail('is not a regular file');
    if (info.size > max) fail(`is ${info.size} bytes; the limit is ${max}`);
    bytes = await readFile(path);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const errno = (err as NodeJS.ErrnoException).code;
    if (errno === 'ENOENT') return undefined;
    if (errno === 'EISDIR') fail('is a directory, not a file', `move it away (\`mv ${path} ${path}.bak\`)`);
    return fail(
      `cannot be read (${errno ?? (err as Error).message})`,
      errno === 'EACCES' ? `check its permissions (\`ls -l ${path}\`)` : options.hint,
      err,
    );
  }
  let text: string;
  try {
    text = decodeUtf8(bytes);
  } catch {
    return fail('is not UTF-8 text', options.hint);
  }
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}
