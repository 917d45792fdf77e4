/**
 * Blob bytes on the local disk, in the official relay's embedded layout (docs/protocol.md §10) so an operator
 * can swap implementations on one data directory: `<dataDir>/blobs/blobs/<owner>/<blobId>` plus
 * `<blobId>.meta` holding the content type.
 *
 * A put writes a temp file with an unguessable name in the blob's own directory (same file
 * system, so the final `rename` is atomic), one awaited write per chunk (back-pressure), then
 * `fsync`, `rename`, and an fsync of the directory: an answered upload survives a power cut, and
 * a reader never sees a partial blob. Files are 0600, directories 0700. Temp files left by a
 * crash are removed when the store opens (only those idle for `staleTempMs`, so several relays
 * may share the directory). Trade-off: one fsync per upload (a few ms) for durability; the
 * `.meta` lands just before its blob, so a crash in between leaves a harmless orphan `.meta`.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { access, constants, type FileHandle, mkdir, open, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { addAbortSignal } from 'node:stream';
import { PUBLIC_KEY_RE } from '../../protocol/constants.js';
import {
  assertBlobRef,
  assertPutOptions,
  BLOB_ID_RE,
  type BlobHead,
  type BlobReader,
  type BlobStore,
  BlobStoreError,
  drainBounded,
  type PutOptions,
  type PutResult,
} from './blob-store.js';

/** `.<blobId>.<32 hex>.tmp` (`.meta` temps use `<blobId>.meta` in the first slot). */
const TEMP_RE = /^\.blob_[0-9a-f]{12}(?:\.meta)?\.[0-9a-f]{32}\.tmp$/;
const READ_CHUNK = 256 * 1024;

export interface FsBlobStoreOptions {
  /** The relay's data directory (`DATA_DIR`); blobs go under `<dataDir>/blobs/blobs/`. */
  dataDir: string;
  /** A temp file not written to for this long is a crash leftover (default 15 minutes). */
  staleTempMs?: number;
}

export class FsBlobStore implements BlobStore {
  readonly kind = 'fs' as const;
  readonly root: string;
  private closed = false;

  private constructor(root: string) {
    this.root = root;
  }

  /** Creates the blob root (0700) and removes stale temp files. */
  static async open(options: FsBlobStoreOptions): Promise<FsBlobStore> {
    const store = new FsBlobStore(join(options.dataDir, 'blobs', 'blobs'));
    await mkdir(store.root, { recursive: true, mode: 0o700 });
    await store.removeStaleTemps(options.staleTempMs ?? 15 * 60_000);
    return store;
  }

  /** Removes temp files idle for at least `olderThanMs`; returns how many. */
  async removeStaleTemps(olderThanMs: number): Promise<number> {
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    for (const owner of await readdir(this.root).catch(() => [] as string[])) {
      const dir = join(this.root, owner);
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        if (!TEMP_RE.test(name)) continue;
        const file = join(dir, name);
        const info = await stat(file).catch(() => undefined);
        if (info === undefined || info.mtimeMs > cutoff) continue;
        await unlink(file).then(
          () => removed++,
          () => {},
        );
      }
    }
    return removed;
  }

  async put(owner: string, blobId: string, source: AsyncIterable<Uint8Array>, opts: PutOptions): Promise<PutResult> {
    assertBlobRef(owner, blobId);
    assertPutOptions(opts);
    this.assertOpen();
    const dir = join(this.root, owner);
    const final = join(dir, blobId);
    const temp = join(dir, `.${blobId}.${randomBytes(16).toString('hex')}.tmp`);
    const metaTemp = join(dir, `.${blobId}.meta.${randomBytes(16).toString('hex')}.tmp`);
    let file: FileHandle | undefined;
    let metaPlaced = false;
    try {
      await mkdir(dir, { recursive: true, mode: 0o700 }).catch(storageError('mkdir'));
      file = await open(temp, 'wx', 0o600).catch(storageError('open'));
      const handle = file;
      const result = await drainBounded(source, opts, async (chunk) => {
        let offset = 0;
        while (offset < chunk.byteLength) {
          const { bytesWritten } = await handle
            .write(chunk, offset, chunk.byteLength - offset)
            .catch(storageError('write'));
          offset += bytesWritten;
        }
      });
      await handle.sync().catch(storageError('fsync'));
      file = undefined;
      await handle.close().catch(storageError('close'));
      await writeSmallFile(metaTemp, opts.contentType);
      await rename(metaTemp, join(dir, `${blobId}.meta`)).catch(storageError('rename'));
      metaPlaced = true;
      await rename(temp, final).catch(storageError('rename'));
      await syncDir(dir);
      return result;
    } catch (err) {
      await file?.close().catch(() => {});
      await unlink(temp).catch(() => {});
      await unlink(metaTemp).catch(() => {});
      if (metaPlaced) await unlink(join(dir, `${blobId}.meta`)).catch(() => {});
      throw err;
    }
  }

  async get(owner: string, blobId: string, opts: { signal?: AbortSignal } = {}): Promise<BlobReader | undefined> {
    assertBlobRef(owner, blobId);
    this.assertOpen();
    if (opts.signal?.aborted)
      throw new BlobStoreError('aborted', 'blob operation aborted', { cause: opts.signal.reason });
    // Open first, then measure the open file: a concurrent delete or replace cannot tear the read.
    const file = await open(join(this.root, owner, blobId), 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
      throw storageError('open')(err);
    });
    if (file === undefined) return undefined;
    let size: number;
    try {
      size = (await file.stat()).size;
    } catch (err) {
      await file.close().catch(() => {});
      throw storageError('stat')(err);
    }
    const stream = createReadStream('', { fd: file, highWaterMark: READ_CHUNK, autoClose: true });
    if (opts.signal !== undefined) addAbortSignal(opts.signal, stream);
    // An error with nobody iterating (e.g. an abort before the first read) must not crash the process.
    stream.on('error', () => {});
    return { size, body: stream, cancel: () => void stream.destroy() };
  }

  async head(owner: string, blobId: string): Promise<BlobHead | undefined> {
    assertBlobRef(owner, blobId);
    this.assertOpen();
    const info = await stat(join(this.root, owner, blobId)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return undefined;
      throw storageError('stat')(err);
    });
    return info?.isFile() ? { size: info.size } : undefined;
  }

  async delete(owner: string, blobId: string): Promise<boolean> {
    assertBlobRef(owner, blobId);
    this.assertOpen();
    const dir = join(this.root, owner);
    const existed = await unlink(join(dir, blobId)).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return false;
        throw storageError('unlink')(err);
      },
    );
    await unlink(join(dir, `${blobId}.meta`)).catch(() => {});
    return existed;
  }

  async deleteOwner(owner: string): Promise<number> {
    assertBlobRef(owner);
    this.assertOpen();
    const dir = join(this.root, owner);
    const names = await readdir(dir).catch(() => [] as string[]);
    await rm(dir, { recursive: true, force: true }).catch(storageError('rm'));
    return names.filter((n) => BLOB_ID_RE.test(n)).length;
  }

  async *list(): AsyncIterable<{ owner: string; blobId: string; modifiedAt: number }> {
    this.assertOpen();
    for (const owner of await readdir(this.root).catch(() => [] as string[])) {
      if (!PUBLIC_KEY_RE.test(owner)) continue;
      const dir = join(this.root, owner);
      for (const name of await readdir(dir).catch(() => [] as string[])) {
        if (!BLOB_ID_RE.test(name)) continue;
        const info = await stat(join(dir, name)).catch(() => undefined);
        if (info?.isFile()) yield { owner, blobId: name, modifiedAt: info.mtimeMs };
      }
    }
  }

  async check(): Promise<'ok' | string> {
    if (this.closed) return 'blob store closed';
    try {
      await access(this.root, constants.R_OK | constants.W_OK | constants.X_OK);
      return 'ok';
    } catch (err) {
      return `blob directory not writable (${(err as NodeJS.ErrnoException).code ?? 'error'})`;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new BlobStoreError('closed', 'blob store closed');
  }
}

/** Wraps an fs failure as `storage_error` with the errno code (no path: it says nothing useful to a client). */
function storageError(op: string): (err: unknown) => never {
  return (err: unknown) => {
    if (err instanceof BlobStoreError) throw err;
    const code = (err as NodeJS.ErrnoException | undefined)?.code ?? 'unknown';
    throw new BlobStoreError('storage_error', `blob storage failed (${op}: ${code})`, {
      cause: err,
      details: { op, errno: code },
    });
  };
}

async function writeSmallFile(path: string, text: string): Promise<void> {
  const file = await open(path, 'wx', 0o600).catch(storageError('open'));
  try {
    await file.writeFile(text).catch(storageError('write'));
    await file.sync().catch(storageError('fsync'));
  } finally {
    await file.close().catch(() => {});
  }
}

/** Makes a rename durable. Some platforms cannot fsync a directory; nothing more to do there. */
async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r').catch(() => undefined);
  if (handle === undefined) return;
  await handle.sync().catch(() => {});
  await handle.close().catch(() => {});
}
