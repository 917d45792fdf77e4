/**
 * The client side of blobs (docs/protocol.md §3.7): upload, download, head, delete, as
 * `RelayClient` methods. Both directions stream: an upload's bytes are signed by their hash
 * (§2.2: `BODY_HASH` is the SHA-256 of the file), so a streamed input must say its size and hash
 * before the first byte goes out — `BlobInput` carries them, and `open()` gives the bytes again
 * for a retry. A download is hashed while it streams and checked against `X-M2M-Blob-Hash` at
 * its end: the iterator throws `blob_hash_mismatch` instead of finishing, so a consumer that
 * writes to a temp file and renames only after the loop never keeps damaged bytes.
 *
 * No file system here (`./blob-file.ts` makes a `BlobInput` of a file), so this module works
 * wherever `fetch` streams.
 */
import { createHash } from 'node:crypto';
import { AbortError, MrpError, NetworkError, ProtocolError, RelayError, UsageError } from '../core/errors.js';
import { hasControlChars } from '../core/printable.js';
import { HEADERS, PATHS } from '../protocol/constants.js';
import type { BlobInfo } from '../protocol/types.js';
import { boundedText, MAX_SMALL_ANSWER_BYTES } from './bounded.js';
import type { RelayClient } from './http.js';

export type { BlobInfo } from '../protocol/types.js';

/**
 * What to upload: bytes in memory, or a stream that knows its size and SHA-256 in advance
 * (`open()` may be called more than once: once per attempt).
 */
export type BlobInput =
  | Uint8Array
  | {
      size: number;
      /** SHA-256 of the bytes (32 bytes). */
      sha256: Uint8Array;
      open(): AsyncIterable<Uint8Array> | NodeJS.ReadableStream;
    };

/** A blob's headers (`HEAD`, and the start of a download). */
export interface BlobHead {
  blob_id: string;
  size: number;
  /** SHA-256, lowercase hex. */
  hash: string;
  content_type: string;
}

export interface UploadOptions {
  /** Stored and echoed on download (default on the relay: application/octet-stream). */
  contentType?: string;
  onProgress?: (sent: number, total: number) => void;
  signal?: AbortSignal;
}

export interface DownloadOptions {
  signal?: AbortSignal;
  onProgress?: (received: number, total: number) => void;
}

/** Bytes per chunk when an in-memory input is sent (progress granularity). */
const CHUNK = 256 * 1024;
const HEX64_RE = /^[0-9a-f]{64}$/;
const CONTENT_TYPE_RE = /^[\x20-\x7e]{1,255}$/;
/** Longest blob id sent (a bound, not a format: ids are opaque, §0). */
const MAX_ID_LENGTH = 256;

/**
 * Refuses an id given for a path segment (a blob, message or thread id). Ids are opaque (spec §0:
 * never parsed): only bounded, so a relay with another id shape works and an unknown id is the
 * relay's 404. Refused locally only what cannot be a path segment at all: a non-string
 * (`undefined` would be asked for as "undefined"), empty, `.`/`..`, over 256 characters, control
 * characters, a lone surrogate (encodeURIComponent would throw a URIError). `advice` ends the message.
 */
export function checkPathId(id: unknown, what: string, advice = ''): asserts id is string {
  if (
    typeof id !== 'string' ||
    id === '' ||
    id === '.' ||
    id === '..' ||
    id.length > MAX_ID_LENGTH ||
    hasControlChars(id) ||
    /\p{Surrogate}/u.test(id)
  ) {
    throw new UsageError(
      `${JSON.stringify(String(id).slice(0, 40))} cannot be a ${what} (it must be 1-${MAX_ID_LENGTH} characters of well-formed text, no control characters)${advice}`,
      { code: 'invalid_argument' },
    );
  }
}

/** The path of a blob (its id checked by `checkPathId`, percent-encoded). */
function blobPath(id: string): string {
  checkPathId(id, 'blob id', '; give the id mrp blob upload printed');
  return `${PATHS.blobs}/${encodeURIComponent(id)}`;
}

function normalize(input: BlobInput): {
  size: number;
  sha256: Uint8Array;
  /** Read again for the upload (a file): it may have changed since it was hashed. */
  streamed: boolean;
  open(): AsyncIterable<Uint8Array>;
} {
  if (input instanceof Uint8Array) {
    return {
      streamed: false,
      size: input.byteLength,
      sha256: createHash('sha256').update(input).digest(),
      open: () => chunksOf(input),
    };
  }
  if (!input || !Number.isSafeInteger(input.size) || input.size < 0) {
    throw new UsageError('uploadBlob: input.size must be a whole number of bytes', { code: 'invalid_argument' });
  }
  if (!(input.sha256 instanceof Uint8Array) || input.sha256.byteLength !== 32) {
    throw new UsageError('uploadBlob: input.sha256 must be the 32-byte SHA-256 of the bytes', {
      code: 'invalid_argument',
    });
  }
  return {
    streamed: true,
    size: input.size,
    sha256: input.sha256,
    open: () => input.open() as AsyncIterable<Uint8Array>,
  };
}

async function* chunksOf(bytes: Uint8Array): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < bytes.byteLength; at += CHUNK) yield bytes.subarray(at, Math.min(at + CHUNK, bytes.byteLength));
}

/**
 * Counts (and checks) what a source yields: exactly `size` bytes, else the upload fails locally
 * (`failed` hears why: fetch reports a failing body only as a broken connection). With `sha256`
 * (a streamed input, hashed in an earlier pass), the bytes are hashed as they go and the last
 * chunk is held back unless they match: a file written to between the passes fails here, saying
 * so, instead of reaching the relay as a body its signature does not cover (`invalid_signature`,
 * which sends the user looking at their key).
 */
async function* counted(
  source: AsyncIterable<Uint8Array>,
  size: number,
  onProgress: UploadOptions['onProgress'],
  failed: (err: unknown) => void,
  sha256?: Uint8Array,
): AsyncGenerator<Uint8Array> {
  let sent = 0;
  const hash = sha256 ? createHash('sha256') : undefined;
  const check = (): void => {
    if (hash && !Buffer.from(sha256!).equals(hash.digest()))
      throw new UsageError(
        'the bytes to upload changed after they were hashed (a file still being written?); upload it again once it no longer changes',
        { code: 'invalid_argument' },
      );
  };
  try {
    for await (const raw of source) {
      const chunk = typeof raw === 'string' ? Buffer.from(raw) : raw;
      if (chunk.byteLength === 0) continue;
      sent += chunk.byteLength;
      if (sent > size)
        throw new UsageError(`uploadBlob: the input yielded more than its declared ${size} bytes`, {
          code: 'invalid_argument',
        });
      hash?.update(chunk);
      if (sent === size) check();
      yield chunk;
      onProgress?.(sent, size);
    }
    if (size === 0) check();
    if (sent !== size)
      throw new UsageError(`uploadBlob: the input yielded ${sent} bytes, not its declared ${size}`, {
        code: 'invalid_argument',
      });
  } catch (err) {
    failed(err);
    throw err;
  }
}

/** `POST /v1/blobs`: streams the input (signed by its hash); resolves with the relay's `BlobInfo`. */
export async function uploadBlob(client: RelayClient, input: BlobInput, opts: UploadOptions = {}): Promise<BlobInfo> {
  const blob = normalize(input);
  if (opts.contentType !== undefined && !CONTENT_TYPE_RE.test(opts.contentType)) {
    throw new UsageError('uploadBlob: contentType must be 1-255 printable ASCII characters', {
      code: 'invalid_argument',
    });
  }
  const headers: Record<string, string> = { 'Content-Length': String(blob.size) };
  if (opts.contentType !== undefined) headers['Content-Type'] = opts.contentType;
  // The input's own failure (a short or unreadable file) ends the call with that error, untried
  // again: fetch would report it only as a broken connection, which is retried.
  const inputFailed = new AbortController();
  const failed = (err: unknown): void =>
    inputFailed.abort(
      err instanceof UsageError
        ? err
        : new UsageError(`uploadBlob: reading the input failed (${(err as Error)?.message ?? String(err)})`, {
            code: 'invalid_argument',
            cause: err,
          }),
    );
  const exchange = await client.exchange('POST', PATHS.blobs, {
    bodyHash: Buffer.from(blob.sha256).toString('base64url'),
    // A failed attempt's body may still be read for a moment: its errors no longer count.
    body: (ended) =>
      counted(
        blob.open(),
        blob.size,
        opts.onProgress,
        (err) => {
          if (!ended.aborted) failed(err);
        },
        blob.streamed ? blob.sha256 : undefined,
      ),
    headers,
    signal: opts.signal ? AbortSignal.any([opts.signal, inputFailed.signal]) : inputFailed.signal,
    // A retried upload stores at most one more copy (a new id); both answers name the same bytes.
    idempotent: true,
  });
  const { response, done } = exchange;
  try {
    // A blob record is small: a relay that answers on and on is cut off (and does not parse).
    const info = JSON.parse(await boundedText(response, MAX_SMALL_ANSWER_BYTES)) as BlobInfo;
    if (typeof info?.blob_id !== 'string' || typeof info.hash !== 'string') throw new Error('not a blob record');
    return info;
  } catch (err) {
    throw new ProtocolError(
      'invalid_response',
      `POST ${PATHS.blobs}: unreadable answer from the relay (${(err as Error).message})`,
      { cause: err },
    );
  } finally {
    done();
  }
}

function headOf(id: string, headers: Headers): BlobHead {
  const size = Number(headers.get('content-length'));
  const hash = (headers.get(HEADERS.blobHash) ?? '').toLowerCase();
  if (!Number.isSafeInteger(size) || size < 0 || !HEX64_RE.test(hash)) {
    throw new ProtocolError(
      'invalid_response',
      `blob ${id}: the relay sent no usable Content-Length or X-M2M-Blob-Hash`,
    );
  }
  return { blob_id: id, size, hash, content_type: headers.get('content-type') ?? 'application/octet-stream' };
}

/** `HEAD /v1/blobs/{id}`. A HEAD answer has no error body, so a bare 404 is `blob_not_found` here. */
export async function headBlob(client: RelayClient, id: string, signal?: AbortSignal): Promise<BlobHead> {
  let exchange: Awaited<ReturnType<RelayClient['exchange']>>;
  try {
    exchange = await client.exchange('HEAD', blobPath(id), { idempotent: true, ...(signal ? { signal } : {}) });
  } catch (err) {
    if (err instanceof RelayError && err.status === 404 && err.code === 'not_found') {
      throw new RelayError('blob_not_found', `no blob ${id} visible to you`, {
        status: 404,
        cause: err,
        ...(err.requestId ? { requestId: err.requestId } : {}),
      });
    }
    throw err;
  }
  exchange.done();
  return headOf(id, exchange.response.headers);
}

/** `DELETE /v1/blobs/{id}` (owner only; 409 `blob_referenced` while a message lists it). */
export async function deleteBlob(client: RelayClient, id: string, signal?: AbortSignal): Promise<void> {
  const { response, done } = await client.exchange('DELETE', blobPath(id), {
    idempotent: true,
    ...(signal ? { signal } : {}),
  });
  // Nothing of a delete's answer is used: dropped unread (a relay answering on and on is not
  // read into memory until the idle limit).
  await response.body?.cancel().catch(() => undefined);
  done();
}

/**
 * `GET /v1/blobs/{id}`: the headers now, the bytes as they arrive. Iterate `body` once; it throws
 * `blob_hash_mismatch` at the end when the bytes do not match the relay's hash or length.
 * Leaving the loop early releases the connection; a body never iterated holds it until `signal`
 * aborts or the idle limit passes.
 */
export async function downloadBlob(
  client: RelayClient,
  id: string,
  opts: DownloadOptions = {},
): Promise<{ info: BlobHead; body: AsyncIterable<Uint8Array> }> {
  const exchange = await client.exchange('GET', blobPath(id), {
    idempotent: true,
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const { response, touch, done } = exchange;
  let info: BlobHead;
  try {
    info = headOf(id, response.headers);
  } catch (err) {
    await response.body?.cancel().catch(() => {});
    done();
    throw err;
  }
  const stream = response.body;
  async function* body(): AsyncGenerator<Uint8Array> {
    const hash = createHash('sha256');
    let received = 0;
    try {
      if (stream) {
        for await (const chunk of stream as unknown as AsyncIterable<Uint8Array>) {
          touch();
          received += chunk.byteLength;
          if (received > info.size) break;
          hash.update(chunk);
          yield chunk;
          opts.onProgress?.(received, info.size);
        }
      }
    } catch (err) {
      // fetch reports a cut-off body as a bare TypeError ("terminated"): say what broke.
      if (opts.signal?.aborted) throw opts.signal.reason instanceof Error ? opts.signal.reason : new AbortError();
      if (err instanceof MrpError) throw err;
      throw new NetworkError(
        `blob ${id}: the download broke off after ${received} of ${info.size} bytes (${(err as Error)?.message ?? String(err)})`,
        { cause: err },
      );
    } finally {
      done();
    }
    const actual = hash.digest('hex');
    if (received !== info.size || actual !== info.hash) {
      throw new ProtocolError(
        'blob_hash_mismatch',
        `blob ${id}: received ${received} bytes hashing to ${actual.slice(0, 12)}…, expected ${info.size} bytes hashing to ${info.hash.slice(0, 12)}…`,
        {
          details: {
            blob_id: id,
            expected_hash: info.hash,
            actual_hash: actual,
            expected_size: info.size,
            actual_size: received,
          },
        },
      );
    }
  }
  return { info, body: body() };
}

/** A whole blob in memory, refused (`payload_too_large`, before reading) past `maxBytes`; verified like `downloadBlob`. */
export async function downloadBlobBytes(
  client: RelayClient,
  id: string,
  opts: DownloadOptions & { maxBytes: number; onHead?: (info: BlobHead) => void },
): Promise<Buffer> {
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const { info, body } = await downloadBlob(client, id, { ...opts, signal });
  opts.onHead?.(info);
  if (info.size > opts.maxBytes) {
    stop.abort();
    throw new UsageError(`blob ${id} is ${info.size} bytes, more than the ${opts.maxBytes} allowed here`, {
      code: 'payload_too_large',
      details: { size: info.size, limit: opts.maxBytes },
    });
  }
  const parts: Uint8Array[] = [];
  for await (const chunk of body) parts.push(chunk);
  return Buffer.concat(parts, info.size);
}
