/**
 * A file as a `BlobInput` (./blobs.ts): hashed in one streaming pass now (the upload is signed by
 * the hash, §2.2), streamed again by `open()` for each attempt. If the file changes in between,
 * the upload fails (size checked by the client, hash by the relay's signature check) rather than
 * storing something else under the hash.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { UsageError } from '../core/errors.js';
import type { BlobInput } from './blobs.js';

const READ_CHUNK = 256 * 1024;

/** Opens, measures and hashes `path`; `UsageError` naming the file when it is not a readable regular file. */
export async function fileBlobInput(path: string): Promise<Exclude<BlobInput, Uint8Array>> {
  let size: number;
  const hash = createHash('sha256');
  try {
    // Checked before opening: opening a FIFO waits for a writer, so `mrp blob upload <fifo>`
    // would hang instead of being refused.
    if (!(await stat(path)).isFile())
      throw new UsageError(`${path} is not a regular file`, { code: 'invalid_argument' });
    const handle = await open(path, 'r');
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw new UsageError(`${path} is not a regular file`, { code: 'invalid_argument' });
      size = info.size;
      // One buffer, reused: the hashing pass leaves no garbage behind (a 100 MiB file would
      // otherwise leave 100 MiB of chunks for the collector, on top of the upload's own).
      const buf = Buffer.allocUnsafe(READ_CHUNK);
      for (;;) {
        const { bytesRead } = await handle.read(buf, 0, READ_CHUNK, null);
        if (bytesRead === 0) break;
        hash.update(buf.subarray(0, bytesRead));
      }
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new UsageError(`cannot read ${path}${code ? ` (${code})` : ''}`, { code: 'invalid_argument', cause: err });
  }
  const sha256 = hash.digest();
  return { size, sha256, open: () => createReadStream(path, { highWaterMark: READ_CHUNK }) };
}
