/**
 * The library's identity file (docs/protocol.md §1.2): read one in any form `mrp keygen` and the
 * other SDKs write, or create it when it is missing — 32 raw seed bytes, mode 0600, like the
 * Python SDK. Synchronous on purpose: `new Agent(…)` knows its public key as soon as it returns.
 *
 * Creation is atomic: the seed is written (and synced) to a private temporary file which is then
 * hard-linked to the path, so nobody ever sees a half-written key, and two processes creating
 * the same file at once end up with the same key (the second one reads the first one's).
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fstatSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { booleanArg, knownArgs } from '../core/suggest.js';
import { decodeKeyFile, encodeKeyFile, type KeyFileFormat } from '../protocol/keyfile.js';
import { Keypair } from '../protocol/signing.js';

/** No key file form is longer than this (a hex seed with a newline is 65 bytes). */
const MAX_KEY_FILE_BYTES = 4096;
const checkPermissions = process.platform !== 'win32';

/**
 * A key file must be a regular file nobody else can read (as ssh insists; not checked on
 * Windows). Shared by the library (`loadOrCreateKeyFile`) and the CLI (`cli/keys.ts`).
 */
export function checkKeyFileStat(path: string, info: { isFile(): boolean; mode: number }): void {
  if (!info.isFile()) throw new ConfigError('key_invalid', `key file ${path} is not a regular file`, { file: path });
  if (checkPermissions && (info.mode & 0o077) !== 0) {
    const mode = (info.mode & 0o777).toString(8).padStart(4, '0');
    throw new ConfigError(
      'key_permissions',
      `key file ${path} is accessible by other users (mode ${mode}); it must be private`,
      {
        file: path,
        hint: `run \`chmod 600 ${path}\``,
      },
    );
  }
}

export interface KeyFileIdentity {
  keypair: Keypair;
  format: KeyFileFormat;
  /** Whether this call created the file. */
  created: boolean;
}

/** Reads the key file at `path`, creating it (0600, in a 0700 directory if new) when missing. */
export function loadOrCreateKeyFile(path: string): KeyFileIdentity {
  const existing = readKeyFileSync(path);
  if (existing) return { ...existing, created: false };
  const keypair = Keypair.generate();
  if (createKeyFile(path, keypair)) return { keypair, format: 'raw-seed', created: true };
  // Someone else created it meanwhile: theirs is the key.
  const theirs = readKeyFileSync(path);
  if (!theirs)
    throw new ConfigError('key_unreadable', `key file ${path} appeared and vanished while being created`, {
      file: path,
    });
  return { ...theirs, created: false };
}

/**
 * `Keypair.fromFile(path)`: the key in `path` (any form `mrp keygen` or an MRP SDK writes);
 * `{ create: true }` creates the file when it is missing. A missing file is `key_not_found`.
 */
export function keypairFromFile(path: string, options: { create?: boolean } = {}): Keypair {
  if (typeof path !== 'string' || path === '')
    throw new ConfigError('key_not_found', "Keypair.fromFile: give the key file's path");
  // A misspelt `{ creat: true }` or `{ create: 'yes' }` would read "does not exist" instead of
  // creating the key: named instead.
  knownArgs('Keypair.fromFile', options, ['create']);
  booleanArg('Keypair.fromFile', 'create', options.create);
  if (options.create === true) return loadOrCreateKeyFile(path).keypair;
  const found = readKeyFileSync(path);
  if (!found)
    throw new ConfigError('key_not_found', `key file ${path} does not exist`, {
      file: path,
      hint: 'create it with Keypair.fromFile(path, { create: true }) or `mrp keygen`',
    });
  return found.keypair;
}

/**
 * `keypair.save(path)`: writes the seed to a new file (32 raw bytes, 0600, atomically; a 0700
 * directory when new). An existing file is never overwritten (`key_exists`): a key lost is an
 * identity lost.
 */
export function saveKeypair(keypair: Keypair, path: string): void {
  if (typeof path !== 'string' || path === '')
    throw new ConfigError('key_not_found', "keypair.save: give the key file's path");
  if (!createKeyFile(path, keypair))
    throw new ConfigError('key_exists', `key file ${path} already exists; it was not overwritten`, {
      file: path,
      hint: 'save to another path, or move the old key aside first',
    });
}

/** Creates `path` holding `keypair`'s seed, atomically; false when the file already exists. */
function createKeyFile(path: string, keypair: Keypair): boolean {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const temp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    const fd = openSync(temp, 'wx', 0o600);
    try {
      writeSync(fd, encodeKeyFile(keypair));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(temp, path);
    } catch (err) {
      // It exists (someone else may have created it meanwhile): never overwritten.
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError('key_unreadable', `cannot create key file ${path}: ${(err as Error).message}`, {
      file: path,
      cause: err,
    });
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // Not created, or already gone.
    }
  }
  syncDirectory(dirname(path));
  return true;
}

/** The key in `path`, or undefined when there is no such file. Typed errors name the file. */
function readKeyFileSync(path: string): Omit<KeyFileIdentity, 'created'> | undefined {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError('key_unreadable', `cannot read key file ${path}: ${(err as Error).message}`, {
      file: path,
      cause: err,
    });
  }
  try {
    const info = fstatSync(fd);
    checkKeyFileStat(path, info);
    if (info.size > MAX_KEY_FILE_BYTES) {
      throw new ConfigError(
        'key_invalid',
        `key file ${path} is ${info.size} bytes; no Ed25519 key file is larger than ${MAX_KEY_FILE_BYTES}`,
        {
          file: path,
          hint: 'point keyFile at a key created by `mrp keygen` or an MRP SDK',
        },
      );
    }
    const bytes = Buffer.alloc(info.size);
    let read = 0;
    while (read < bytes.length) {
      const n = readSync(fd, bytes, read, bytes.length - read, read);
      if (n === 0) break;
      read += n;
    }
    try {
      return decodeKeyFile(bytes.subarray(0, read), path);
    } catch (err) {
      // The codec's hint speaks to CLI users (`--key`); a library user names the file with `keyFile`.
      if (err instanceof ConfigError && err.hint?.includes('--key'))
        throw new ConfigError(err.code, err.message, {
          file: path,
          hint: 'point keyFile at a key created by `mrp keygen` or an MRP SDK',
        });
      throw err;
    }
  } finally {
    closeSync(fd);
  }
}

function syncDirectory(dir: string): void {
  try {
    const fd = openSync(dir, 'r');
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch {
    // Not every platform can sync a directory; the file itself is synced.
  }
}

declare module '../protocol/signing.js' {
  interface Keypair {
    /** Writes this key's seed to a new file at `path` (0600; never overwrites: `key_exists`). */
    save(path: string): void;
  }
  namespace Keypair {
    /** The key in the file at `path` (any form `mrp keygen` or an MRP SDK writes); `{ create: true }` creates it when missing. */
    function fromFile(path: string, options?: { create?: boolean }): Keypair;
  }
}

// The MRP SDKs' `Keypair.fromFile(path, { create })` and `keypair.save(path)` (docs/protocol.md §9),
// added here: the protocol layer that defines `Keypair` does no I/O.
Object.defineProperty(Keypair, 'fromFile', { value: keypairFromFile, writable: true, configurable: true });
Object.defineProperty(Keypair.prototype, 'save', {
  value(this: Keypair, path: string): void {
    saveKeypair(this, path);
  },
  writable: true,
  configurable: true,
});
