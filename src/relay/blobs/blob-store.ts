/**
 * The relay's blob *bytes* behind one interface (docs/protocol.md §3.7, §10), so the blob routes do not care
 * whether the bytes sit in a directory (embedded mode) or in an S3-compatible bucket (several
 * relay processes). Only bytes live here: content type, expiry, quotas and references are the
 * relay Store's business; a store keeps nothing in memory about the blobs it holds.
 *
 * The promises every implementation keeps (checked by `test/relay/blob-store.contract.ts`):
 * - `put` streams: memory is bounded by a chunk (fs) or two upload parts (S3), never the blob;
 *   a chunk is not touched after the next one is requested, so a source may reuse its buffer.
 * - `put` is atomic: the blob becomes visible complete or not at all. Over `maxBytes`, an aborted
 *   signal or a failing source leave nothing behind, and reject with a typed `BlobStoreError`.
 * - ids are checked (`owner`: a public key, `blobId`: `blob_` + 12 hex) before any I/O, so no
 *   hostile id ever reaches a path or an object key.
 * `drainBounded` is the one loop both stores use to pull a source: limit, hashing, abort.
 * Trade-off: a put of an existing id replaces it (ids are random; S3 has no cheap
 * "create only"), so the caller must not reuse ids.
 */
import { createHash } from 'node:crypto';
import { PUBLIC_KEY_RE } from '../../protocol/constants.js';

export const BLOB_ID_RE = /^blob_[0-9a-f]{12}$/;
/** Printable ASCII, as a header value and a `.meta` file can carry it. */
const CONTENT_TYPE_RE = /^[\x20-\x7e]{1,255}$/;

export interface PutOptions {
  /** Largest accepted size in bytes; one more byte rejects with `payload_too_large`. */
  maxBytes: number;
  /** Stored next to the bytes (fs `.meta`, S3 `Content-Type`) for operators; printable ASCII. */
  contentType: string;
  signal?: AbortSignal;
}

export interface PutResult {
  size: number;
  /** SHA-256 of the bytes, lowercase hex (the `hash` of §3.7). */
  sha256Hex: string;
  /** The same digest in base64url without padding (as body hashes are written in §2.2). */
  sha256Base64url: string;
}

export interface BlobHead {
  size: number;
}

/** An opened blob. Iterate `body` once; leaving the loop early releases the file or connection. */
export interface BlobReader extends BlobHead {
  readonly body: AsyncIterable<Uint8Array>;
  /** Releases the file or connection without reading (idempotent; needed only if `body` is never iterated). */
  cancel(): void;
}

export interface BlobStore {
  readonly kind: 'fs' | 's3';
  /** Streams `source` into storage, hashing as it goes. Replaces an existing blob of that id. */
  put(owner: string, blobId: string, source: AsyncIterable<Uint8Array>, opts: PutOptions): Promise<PutResult>;
  /** Opens a blob for streaming, or `undefined` when it does not exist. */
  get(owner: string, blobId: string, opts?: { signal?: AbortSignal }): Promise<BlobReader | undefined>;
  head(owner: string, blobId: string): Promise<BlobHead | undefined>;
  /** True if the blob existed. */
  delete(owner: string, blobId: string): Promise<boolean>;
  /** Removes every blob of an agent (agent deletion); returns how many objects were removed. */
  deleteOwner(owner: string): Promise<number>;
  /**
   * Every stored blob with its last write time (Unix ms), for reclaiming orphans (bytes whose
   * metadata is gone). Optional: a store that cannot list cheaply leaves it out.
   */
  list?(): AsyncIterable<{ owner: string; blobId: string; modifiedAt: number }>;
  /** Health probe: `'ok'` or a short reason for people (never secrets). */
  check(): Promise<'ok' | string>;
  /** Refuses new operations; operations in flight finish. */
  close(): Promise<void>;
}

export type BlobStoreErrorCode =
  | 'payload_too_large' // the source went over maxBytes
  | 'invalid_blob_ref' // a bad owner, blob id, content type or option: a caller bug or a hostile id
  | 'aborted' // the caller's signal fired
  | 'source_failed' // the source threw (client went away, body transform failed); `cause` holds it
  | 'storage_error' // the disk or the object store failed; `details` say how (S3 code, status)
  | 'closed'; // the store was closed

export class BlobStoreError extends Error {
  override name = 'BlobStoreError';
  readonly code: BlobStoreErrorCode;
  /** Machine-readable facts (limit, S3 error code, HTTP status, operation). Never credentials. */
  readonly details: Record<string, string | number> | undefined;

  constructor(
    code: BlobStoreErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, string | number> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details;
  }
}

/** Throws `invalid_blob_ref` unless both ids have their exact shape. Call before any I/O. */
export function assertBlobRef(owner: string, blobId?: string): void {
  if (typeof owner !== 'string' || !PUBLIC_KEY_RE.test(owner)) {
    throw new BlobStoreError('invalid_blob_ref', 'owner is not a public key');
  }
  if (blobId !== undefined && (typeof blobId !== 'string' || !BLOB_ID_RE.test(blobId))) {
    throw new BlobStoreError('invalid_blob_ref', 'blob id is not blob_ followed by 12 hex digits');
  }
}

export function assertPutOptions(opts: PutOptions): void {
  if (!Number.isSafeInteger(opts.maxBytes) || opts.maxBytes < 0) {
    throw new BlobStoreError('invalid_blob_ref', 'maxBytes must be a non-negative integer');
  }
  if (typeof opts.contentType !== 'string' || !CONTENT_TYPE_RE.test(opts.contentType)) {
    throw new BlobStoreError('invalid_blob_ref', 'content type must be 1-255 printable ASCII characters');
  }
}

export function abortedError(signal: AbortSignal): BlobStoreError {
  return new BlobStoreError('aborted', 'blob operation aborted', { cause: signal.reason });
}

export function tooLargeError(maxBytes: number): BlobStoreError {
  return new BlobStoreError('payload_too_large', `blob is larger than ${maxBytes} bytes`, {
    details: { limit: maxBytes },
  });
}

/**
 * Pulls `source` chunk by chunk into `sink`, awaiting the sink before the next pull (that await
 * is the back-pressure). Enforces `maxBytes` before a byte over the limit reaches the sink,
 * hashes, and stops promptly when the signal fires even while the source is stalled. On any
 * failure the source's iterator is told to stop (not awaited: a stuck source cannot hang us).
 */
export async function drainBounded(
  source: AsyncIterable<Uint8Array>,
  opts: PutOptions,
  sink: (chunk: Uint8Array) => Promise<void> | void,
): Promise<PutResult> {
  const { maxBytes, signal } = opts;
  const hash = createHash('sha256');
  let size = 0;
  let finished = false;
  let it: AsyncIterator<Uint8Array> | undefined;
  try {
    if (signal?.aborted) throw abortedError(signal);
    try {
      it = source[Symbol.asyncIterator]();
    } catch (err) {
      throw new BlobStoreError('source_failed', 'the blob source failed', { cause: err });
    }
    for (;;) {
      const pending = it.next();
      pending.catch(() => {});
      let step: IteratorResult<Uint8Array>;
      try {
        step = await (signal === undefined ? pending : untilAborted(pending, signal));
      } catch (err) {
        if (err instanceof BlobStoreError) throw err;
        throw new BlobStoreError('source_failed', 'the blob source failed', { cause: err });
      }
      if (step.done) break;
      const chunk = step.value;
      if (!(chunk instanceof Uint8Array))
        throw new BlobStoreError('source_failed', 'the blob source yielded a non-byte chunk');
      if (chunk.byteLength === 0) continue;
      size += chunk.byteLength;
      if (size > maxBytes) throw tooLargeError(maxBytes);
      hash.update(chunk);
      await sink(chunk);
      if (signal?.aborted) throw abortedError(signal);
    }
    finished = true;
  } finally {
    if (!finished && it !== undefined) stopQuietly(it);
  }
  const digest = hash.digest();
  return { size, sha256Hex: digest.toString('hex'), sha256Base64url: digest.toString('base64url') };
}

/**
 * `step`, or `aborted` as soon as the signal fires. One listener per step, removed when the step
 * settles: racing every step against one long-lived "aborted" promise would leave a reaction on
 * it per step, each keeping its step's chunk reachable (a 100 MiB upload held whole).
 */
function untilAborted<T>(step: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(abortedError(signal));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(abortedError(signal));
    signal.addEventListener('abort', onAbort, { once: true });
    step.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

function stopQuietly(it: AsyncIterator<Uint8Array>): void {
  try {
    const result = it.return?.();
    if (result !== undefined) Promise.resolve(result).catch(() => {});
  } catch {
    // a source that throws while stopping has nothing more to tell us
  }
}
