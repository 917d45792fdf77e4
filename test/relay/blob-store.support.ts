/**
 * Helpers for the BlobStore tests: deterministic byte sources that allocate nothing per chunk
 * (so memory growth measured during a put is the store's), hashing readers, random ids, and a
 * memory probe that samples after full GCs (held memory, not garbage awaiting collection).
 */
import { createHash, randomBytes } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { BlobReader } from '../../src/relay/blobs/blob-store.js';

export const KIB = 1024;
export const MIB = 1024 * KIB;
const POOL = randomBytes(MIB + 4099);

export const newOwner = (): string => randomBytes(32).toString('base64url');
export const newBlobId = (): string => `blob_${randomBytes(6).toString('hex')}`;

/** Deterministic pseudo-random bytes as a stream of views into one pool (no allocation per chunk). */
export function patternSource(
  total: number,
  chunk = 64 * KIB,
  onChunk?: (pulled: number, n: number) => void,
): AsyncIterable<Uint8Array> {
  return {
    async *[Symbol.asyncIterator]() {
      let sent = 0;
      while (sent < total) {
        const n = Math.min(chunk, total - sent);
        const start = (sent * 7) % (POOL.length - n);
        sent += n;
        onChunk?.(sent, n);
        yield POOL.subarray(start, start + n);
      }
    },
  };
}

/** SHA-256 (hex) of what `patternSource(total, chunk)` yields. */
export async function patternHash(total: number, chunk = 64 * KIB): Promise<string> {
  const h = createHash('sha256');
  for await (const c of patternSource(total, chunk)) h.update(c);
  return h.digest('hex');
}

/** Reads a blob, hashing it, sampling memory at every chunk. */
export async function drain(reader: BlobReader, onChunk?: (n: number) => void): Promise<{ size: number; hex: string }> {
  const h = createHash('sha256');
  let size = 0;
  for await (const c of reader.body) {
    h.update(c);
    size += c.byteLength;
    onChunk?.(c.byteLength);
  }
  return { size, hex: h.digest('hex') };
}

export async function readAll(reader: BlobReader): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of reader.body) parts.push(Buffer.from(c));
  return Buffer.concat(parts);
}

/**
 * Full GCs, so memory samples count what is held rather than garbage not yet collected (one GC
 * sometimes leaves a dead 8 MiB upload part counted; two never did in our runs).
 */
const gc: () => void = (() => {
  setFlagsFromString('--expose-gc');
  const collect = runInNewContext('gc') as () => void;
  return () => {
    collect();
    collect();
  };
})();

/**
 * Peak growth of rss and arrayBuffers over a baseline taken now, sampled after a GC every 2 MiB
 * of data: a store that streams holds a few chunks or parts, one that buffers holds the blob.
 */
export function memoryProbe(): { tick(bytes: number): void; peak(): { rss: number; arrayBuffers: number } } {
  gc();
  const base = process.memoryUsage();
  let rss = 0;
  let ab = 0;
  let since = 0;
  const sample = () => {
    gc();
    const m = process.memoryUsage();
    rss = Math.max(rss, m.rss - base.rss);
    ab = Math.max(ab, m.arrayBuffers - base.arrayBuffers);
  };
  return {
    tick(bytes) {
      since += bytes;
      if (since < 2 * MIB) return;
      since = 0;
      sample();
    },
    peak: () => {
      sample();
      return { rss, arrayBuffers: ab };
    },
  };
}
