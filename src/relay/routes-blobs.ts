/**
 * The blob routes (docs/protocol.md §3.7): upload streamed into the `BlobStore`, download and HEAD
 * streamed out of it, delete. Bytes live in the `BlobStore`, metadata, quotas and references in
 * the `Store`; the order of the steps is what keeps the two consistent:
 *
 * - Upload: quota pre-check (Content-Length when given; the claimed key, nothing is stored yet)
 *   → bytes streamed into the blob store, which makes them visible only when the stream ENDS,
 *   and the stream ends only once the signature over its hash verified (router.ts) → the
 *   metadata inserted with the quota checked again atomically (`Store.insertBlob`: concurrent
 *   uploads) → 201. Any refusal after the bytes landed deletes them; a crash in between leaves
 *   an orphan file that the sweeper reclaims.
 * - Delete: metadata first (refused while referenced), bytes after.
 * Access (our choice): the uploader, or the sender or recipient of an unexpired message listing
 * the blob; everyone else, and every malformed id, gets `404 blob_not_found`.
 */
import { HEADERS, PATHS } from '../protocol/constants.js';
import { formatInstant } from '../protocol/signing.js';
import type { BlobInfo } from '../protocol/types.js';
import { BLOB_ID_RE, type BlobStore, BlobStoreError } from './blobs/blob-store.js';
import { ApiError } from './errors.js';
import { blobId as newBlobId } from './ids.js';
import { NO_BODY, type Request } from './router.js';
import { noContent, type RelayRoute, type Services } from './services.js';
import type { BlobRecord, BlobUsage } from './store/store.js';

/** Media type stored when the upload has none (§3.7, our choice). */
export const DEFAULT_BLOB_TYPE = 'application/octet-stream';
/** What a `.meta` file and a header can carry (same rule as the blob store's). */
const CONTENT_TYPE_RE = /^[\x20-\x7e]{1,255}$/;

function notFound(id: string): ApiError {
  return new ApiError('blob_not_found', `no blob ${id} visible to you`);
}

/**
 * 507. With `usage` (the verified owner's, at commit) the answer says it, headers included; the
 * early refusal (the key only claimed yet) says no more than the limit.
 */
function noStorage(usage: BlobUsage | undefined, limit: number, reason: string, byteLimit?: number): ApiError {
  return new ApiError('insufficient_storage', reason, {
    details: { limit, ...(usage ? { used: usage.bytes, count: usage.count } : {}) },
    ...(usage && byteLimit !== undefined ? { headers: storageHeaders(usage, byteLimit) } : {}),
  });
}

/** The blob store, or 404 when this relay keeps no blobs. */
async function blobStore(svc: Services): Promise<BlobStore> {
  const store = await svc.blobs.store();
  if (!store) throw new ApiError('not_found', 'blobs are not supported by this relay (it has no blob storage)');
  return store;
}

/** The Content-Type to store: the header as given (printable ASCII), or the default when absent. */
function contentTypeOf(req: Request): string {
  const raw = req.header('content-type')?.trim();
  if (raw === undefined || raw === '') return DEFAULT_BLOB_TYPE;
  if (!CONTENT_TYPE_RE.test(raw)) {
    throw new ApiError('bad_request', 'the Content-Type header must be 1-255 printable ASCII characters', {
      details: { field: 'Content-Type', reason: 'not printable ASCII or too long' },
    });
  }
  return raw;
}

/** A blob store failure as the answer: the stream's own refusal (401, 413, 408…) when it was the cause. */
function putError(err: unknown, maxBytes: number): unknown {
  if (!(err instanceof BlobStoreError)) return err;
  if (err.code === 'source_failed' && err.cause instanceof ApiError) return err.cause;
  if (err.code === 'payload_too_large') {
    return new ApiError('payload_too_large', `a blob is at most ${maxBytes} bytes`, {
      details: { limit: maxBytes },
      headers: { Connection: 'close' },
    });
  }
  if (err.code === 'aborted' || err.code === 'source_failed') {
    return new ApiError('bad_request', 'the upload was cut off', { headers: { Connection: 'close' } });
  }
  return new ApiError('service_unavailable', 'blob storage is unavailable; retry later', {
    details: { reason: 'storage_error', retry_after: 5 },
    headers: { 'Retry-After': '5', Connection: 'close' },
  });
}

function storageHeaders(usage: BlobUsage, limit: number): Record<string, string> {
  return { 'X-M2M-Storage-Used': String(usage.bytes), 'X-M2M-Storage-Limit': String(limit) };
}

export function blobInfo(record: BlobRecord): BlobInfo {
  return {
    blob_id: record.blob_id,
    hash: record.hash,
    size: record.size,
    content_type: record.content_type,
    created_at: formatInstant(record.created_at),
    expires_at: formatInstant(record.expires_at),
  };
}

async function upload(req: Request, svc: Services) {
  const { quota, maxBytes, ttlMs } = svc.blobs;
  const bytes = await blobStore(svc);
  const contentType = contentTypeOf(req);
  // Early refusal against the CLAIMED key (not verified yet, so nothing is stored or counted; the
  // answer says no more than the limits). The commit below checks again, atomically.
  const declared = Number(req.header('content-length') ?? Number.NaN);
  const before = await svc.store.blobUsage(req.caller, svc.clock.now());
  if (before.count + 1 > quota.maxCount)
    throw noStorage(undefined, quota.maxCount, `at most ${quota.maxCount} blobs per agent`);
  if (Number.isFinite(declared) && before.bytes + declared > quota.maxBytes) {
    throw noStorage(undefined, quota.maxBytes, `at most ${quota.maxBytes} bytes of blobs per agent`);
  }

  const id = newBlobId();
  const owner = req.caller;
  const body = req.stream();
  let put: Awaited<ReturnType<BlobStore['put']>>;
  try {
    put = await bytes.put(owner, id, body, { maxBytes, contentType, signal: req.signal });
  } catch (err) {
    throw putError(err, maxBytes);
  }
  let stored = false;
  try {
    // Settled already: the stream ended, so the signature verified (router.ts).
    const caller = await body.verified();
    if (caller !== owner) throw new Error('the verified caller differs from the claimed one');
    const now = svc.clock.now();
    const record: BlobRecord = {
      blob_id: id,
      owner_key: owner,
      hash: put.sha256Hex,
      size: put.size,
      content_type: contentType,
      created_at: now,
      expires_at: now + ttlMs,
    };
    const result = await svc.store.insertBlob(record, quota, now);
    if (!result.inserted) {
      throw result.reason === 'count'
        ? noStorage(result.usage, quota.maxCount, `at most ${quota.maxCount} blobs per agent`, quota.maxBytes)
        : noStorage(result.usage, quota.maxBytes, `at most ${quota.maxBytes} bytes of blobs per agent`, quota.maxBytes);
    }
    stored = true;
    return {
      kind: 'json' as const,
      status: 201,
      body: blobInfo(record),
      headers: storageHeaders(result.usage, quota.maxBytes),
    };
  } finally {
    if (!stored)
      await bytes.delete(owner, id).catch((err: unknown) =>
        svc.logger.error('storage_error', {
          where: 'blob_cleanup',
          blob_id: id,
          error: (err as Error)?.message ?? String(err),
        }),
      );
  }
}

export function blobRoutes(maxBlobBytes: number): RelayRoute[] {
  return [
    {
      method: 'POST',
      path: PATHS.blobs,
      auth: true,
      summary: 'Upload a blob (raw bytes; Content-Type is stored)',
      body: { kind: 'stream', maxBytes: maxBlobBytes },
      reply: 'json',
      handler: upload,
    },
    {
      method: 'GET',
      path: `${PATHS.blobs}/:blob`,
      auth: true,
      summary: 'Download a blob (HEAD: its headers only)',
      body: NO_BODY,
      reply: 'bytes',
      handler: async (req, svc) => {
        const id = req.params['blob']!;
        if (!BLOB_ID_RE.test(id)) throw notFound(id);
        const bytes = await blobStore(svc);
        const record = await svc.store.readableBlob(id, req.caller, svc.clock.now());
        if (!record) throw notFound(id);
        const reader = await bytes.get(record.owner_key, id, { signal: req.signal });
        if (!reader) {
          svc.logger.error('storage_error', { where: 'blob_get', blob_id: id, error: 'metadata without bytes' });
          throw notFound(id);
        }
        if (reader.size !== record.size) {
          reader.cancel();
          svc.logger.error('storage_error', {
            where: 'blob_get',
            blob_id: id,
            error: `size ${reader.size} differs from the recorded ${record.size}`,
          });
          throw new ApiError('internal_error', 'the stored blob is damaged');
        }
        return {
          kind: 'bytes',
          status: 200,
          contentType: record.content_type,
          length: record.size,
          body: reader.body,
          cancel: () => reader.cancel(),
          headers: { [HEADERS.blobHash]: record.hash },
        };
      },
    },
    {
      method: 'DELETE',
      path: `${PATHS.blobs}/:blob`,
      auth: true,
      summary: 'Delete your blob (409 while an unexpired message references it)',
      body: NO_BODY,
      reply: 'json',
      handler: async (req, svc) => {
        const id = req.params['blob']!;
        if (!BLOB_ID_RE.test(id)) throw notFound(id);
        const bytes = await blobStore(svc);
        const outcome = await svc.store.deleteBlob(req.caller, id, svc.clock.now());
        if (outcome === 'not_found') throw notFound(id);
        if (outcome === 'referenced')
          throw new ApiError('blob_referenced', `blob ${id} is attached to a message that has not expired`);
        // Metadata first, bytes after: a failure here leaves an orphan file the sweeper reclaims.
        await bytes.delete(req.caller, id).catch((err: unknown) =>
          svc.logger.error('storage_error', {
            where: 'blob_delete',
            blob_id: id,
            error: (err as Error)?.message ?? String(err),
          }),
        );
        return noContent;
      },
    },
  ];
}
