/**
 * Identity files on disk (docs/protocol.md §1.2). Written as 32 raw seed bytes, mode 0600, in a 0700
 * directory; never overwritten without `force`, and then atomically. Read tolerantly, but a file
 * other users can read is refused, as ssh does.
 */

import type { Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ConfigError } from '../core/errors.js';
import { decodeKeyFile, encodeKeyFile, type KeyFileFormat } from '../protocol/keyfile.js';
import type { Keypair } from '../protocol/signing.js';
import { checkKeyFileStat } from '../runtime/identity.js';
import { ensureDir } from './config.js';
import { syncDir, writeExclusive, writeFileAtomic } from './files.js';

export interface LoadedKey {
  keypair: Keypair;
  format: KeyFileFormat;
  path: string;
}

/** Reads an identity file. Missing → `key_not_found` (says to run keygen); too open → `key_permissions`. */
export async function readKeyFile(path: string, keygenHint = 'mrp keygen'): Promise<LoadedKey> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new ConfigError('key_not_found', `no identity key at ${path}`, {
        file: path,
        hint: `run \`${keygenHint}\` to create one, or point --key / MRP_KEY_FILE at an existing key`,
      });
    }
    throw new ConfigError('key_unreadable', `cannot read key file ${path}: ${(err as Error).message}`, {
      file: path,
      cause: err,
    });
  }
  checkKeyFileStat(path, info);
  const bytes = await readFile(path);
  const { keypair, format } = decodeKeyFile(bytes, path);
  return { keypair, format, path };
}

/**
 * Writes a new identity file. Without `force` an existing file is an error and stays untouched;
 * with it the old file is replaced atomically (write a temp file, then rename).
 */
export async function writeKeyFile(path: string, keypair: Keypair, options: { force?: boolean } = {}): Promise<void> {
  const dir = dirname(path);
  await ensureDir(dir);
  const data = encodeKeyFile(keypair);
  if (!options.force) {
    try {
      await writeExclusive(path, data);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new ConfigError('key_exists', `key file ${path} already exists; refusing to overwrite it`, {
          file: path,
          hint: 'pass --force to replace it (the old key is kept as a .bak file), or choose another path with --key',
        });
      }
      throw err;
    }
    await syncDir(dir);
  } else {
    await writeFileAtomic(path, data);
  }
}
