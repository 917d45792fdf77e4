/**
 * Blob bytes in an S3-compatible bucket (AWS, MinIO, R2, …), for relays that run as several
 * processes (docs/protocol.md §10 external mode). Keys are `<prefix><owner>/<blobId>`; the content type is
 * the object's `Content-Type`. Uploads go through `Upload` (one PUT, or multipart past one part);
 * the object appears only when its last request succeeds, which makes a put atomic, and any
 * failure aborts the multipart upload (and deletes the key if the last request's outcome is
 * unknown). Downloads stream the response body with an idle timer on the object store.
 * Trade-offs: `delete` costs a HEAD more (to say whether the blob existed); an upload killed with
 * the process leaves an incomplete multipart upload behind, so give the bucket a lifecycle rule
 * "AbortIncompleteMultipartUpload after 1 day".
 */
import { createHash } from 'node:crypto';
import { PUBLIC_KEY_RE } from '../../protocol/constants.js';
import {
  abortedError,
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
import { escapeXml, S3Client, type S3ClientOptions, s3Error, xmlValue, xmlValues } from './s3-client.js';
import { ByteBudget, Upload } from './s3-upload.js';

export { s3OptionsFromEnv } from './s3-client.js';

export interface S3BlobStoreOptions extends S3ClientOptions {
  /** Multipart part size in bytes (default 8 MiB; S3's minimum is 5 MiB). */
  partSize?: number;
  /** A download whose next chunk takes longer than this is cut (default 60 s). */
  bodyIdleTimeoutMs?: number;
  /** Part buffers held at once across all uploads (default 128 MiB); past it, uploads wait. */
  maxBufferBytes?: number;
}

const MIB = 1024 * 1024;

export class S3BlobStore implements BlobStore {
  readonly kind = 's3' as const;
  readonly client: S3Client;
  private readonly partSize: number;
  private readonly idleMs: number;
  private readonly budget: ByteBudget;
  private closed = false;

  constructor(options: S3BlobStoreOptions) {
    this.client = new S3Client(options);
    this.partSize = options.partSize ?? 8 * MIB;
    if (!Number.isSafeInteger(this.partSize) || this.partSize < 5 * MIB)
      throw new BlobStoreError('invalid_blob_ref', 'S3 part size must be at least 5 MiB');
    this.idleMs = options.bodyIdleTimeoutMs ?? 60_000;
    const maxBuffer = options.maxBufferBytes ?? 128 * MIB;
    if (!Number.isSafeInteger(maxBuffer) || maxBuffer < this.partSize)
      throw new BlobStoreError('invalid_blob_ref', 'S3 buffer budget must hold at least one part');
    this.budget = new ByteBudget(maxBuffer);
  }

  key(owner: string, blobId?: string): string {
    return `${this.client.prefix}${owner}/${blobId ?? ''}`;
  }

  async put(owner: string, blobId: string, source: AsyncIterable<Uint8Array>, opts: PutOptions): Promise<PutResult> {
    assertBlobRef(owner, blobId);
    assertPutOptions(opts);
    this.assertOpen();
    // S3 allows 10,000 parts: bigger limits get bigger parts.
    const partSize = Math.max(this.partSize, Math.ceil(opts.maxBytes / 10_000));
    const upload = new Upload(
      this.client,
      this.key(owner, blobId),
      opts.contentType,
      partSize,
      opts.signal,
      this.budget,
    );
    try {
      const result = await drainBounded(source, opts, (chunk) => upload.write(chunk));
      await upload.finish(result.sha256Hex);
      return result;
    } catch (err) {
      await upload.discard();
      throw err;
    } finally {
      upload.release();
    }
  }

  async get(owner: string, blobId: string, opts: { signal?: AbortSignal } = {}): Promise<BlobReader | undefined> {
    assertBlobRef(owner, blobId);
    this.assertOpen();
    const { signal } = opts;
    const controller = new AbortController();
    const res = await this.client.open(
      // identity: fetch would otherwise undo a proxy's compression and the length would not match.
      {
        op: 'GetObject',
        method: 'GET',
        key: this.key(owner, blobId),
        headers: { 'accept-encoding': 'identity' },
        accept: [404],
        signal,
      },
      controller,
    );
    if (res.status === 404 || res.body === null) {
      controller.abort();
      return undefined;
    }
    const size = Number(res.headers.get('content-length'));
    if (!Number.isSafeInteger(size) || size < 0) {
      controller.abort();
      throw s3Error('GetObject', res.status, 'BadContentLength');
    }
    if (signal?.aborted) {
      controller.abort();
      throw abortedError(signal);
    }
    const onAbort = (): void => controller.abort(signal?.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    const cancel = (): void => {
      signal?.removeEventListener('abort', onAbort);
      controller.abort();
    };
    return { size, body: streamBody(res.body, size, this.idleMs, controller, signal, cancel), cancel };
  }

  async head(owner: string, blobId: string): Promise<BlobHead | undefined> {
    assertBlobRef(owner, blobId);
    this.assertOpen();
    const res = await this.client.call({
      op: 'HeadObject',
      method: 'HEAD',
      key: this.key(owner, blobId),
      accept: [404],
    });
    if (res.status === 404) return undefined;
    const size = Number(res.headers.get('content-length'));
    if (!Number.isSafeInteger(size) || size < 0) throw s3Error('HeadObject', res.status, 'BadContentLength');
    return { size };
  }

  async delete(owner: string, blobId: string): Promise<boolean> {
    if ((await this.head(owner, blobId)) === undefined) return false;
    await this.client.call({ op: 'DeleteObject', method: 'DELETE', key: this.key(owner, blobId), accept: [404] });
    return true;
  }

  async deleteOwner(owner: string): Promise<number> {
    assertBlobRef(owner);
    this.assertOpen();
    let removed = 0;
    let token: string | undefined;
    do {
      const query: Record<string, string> = { 'list-type': '2', prefix: this.key(owner), 'max-keys': '1000' };
      if (token !== undefined) query['continuation-token'] = token;
      const list = await this.client.call({ op: 'ListObjectsV2', method: 'GET', query });
      const keys = xmlValues(list.text, 'Key').filter((k) => k.startsWith(this.key(owner)));
      token = xmlValue(list.text, 'IsTruncated') === 'true' ? xmlValue(list.text, 'NextContinuationToken') : undefined;
      if (keys.length === 0) continue;
      const body = Buffer.from(
        `<Delete><Quiet>true</Quiet>${keys.map((k) => `<Object><Key>${escapeXml(k)}</Key></Object>`).join('')}</Delete>`,
      );
      const headers = {
        'content-md5': createHash('md5').update(body).digest('base64'),
        'content-type': 'application/xml',
      };
      const res = await this.client.call({ op: 'DeleteObjects', method: 'POST', query: { delete: '' }, headers, body });
      if (res.text.includes('<Error>'))
        throw s3Error('DeleteObjects', res.status, xmlValue(res.text, 'Code') ?? 'PartialFailure');
      removed += keys.length;
    } while (token !== undefined);
    return removed;
  }

  async *list(): AsyncIterable<{ owner: string; blobId: string; modifiedAt: number }> {
    this.assertOpen();
    let token: string | undefined;
    do {
      const query: Record<string, string> = { 'list-type': '2', prefix: this.client.prefix, 'max-keys': '1000' };
      if (token !== undefined) query['continuation-token'] = token;
      const list = await this.client.call({ op: 'ListObjectsV2', method: 'GET', query });
      token = xmlValue(list.text, 'IsTruncated') === 'true' ? xmlValue(list.text, 'NextContinuationToken') : undefined;
      for (const [, entry = ''] of list.text.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)) {
        const key = xmlValue(entry, 'Key') ?? '';
        const [owner, blobId, ...rest] = key.slice(this.client.prefix.length).split('/');
        if (rest.length > 0 || owner === undefined || blobId === undefined) continue;
        if (!PUBLIC_KEY_RE.test(owner) || !BLOB_ID_RE.test(blobId)) continue;
        const modifiedAt = Date.parse(xmlValue(entry, 'LastModified') ?? '');
        yield { owner, blobId, modifiedAt: Number.isFinite(modifiedAt) ? modifiedAt : 0 };
      }
    } while (token !== undefined);
  }

  async check(): Promise<'ok' | string> {
    if (this.closed) return 'blob store closed';
    try {
      await this.client.call({ op: 'HeadBucket', method: 'HEAD', timeoutMs: 5_000, idempotent: false });
      return 'ok';
    } catch (err) {
      return err instanceof BlobStoreError ? err.message : 'object store check failed';
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new BlobStoreError('closed', 'blob store closed');
  }
}

/** The download as chunks, with an idle timer on the object store (not on the consumer) and a length check. */
async function* streamBody(
  body: ReadableStream<Uint8Array>,
  size: number,
  idleMs: number,
  controller: AbortController,
  signal: AbortSignal | undefined,
  release: () => void,
): AsyncGenerator<Uint8Array> {
  const reader = body.getReader();
  let received = 0;
  try {
    for (;;) {
      const timer = setTimeout(() => controller.abort(s3Error('GetObject', 0, 'Timeout')), idleMs);
      let step: Awaited<ReturnType<typeof reader.read>>;
      try {
        step = await reader.read();
      } catch (err) {
        if (signal?.aborted) throw abortedError(signal);
        if (err instanceof BlobStoreError) throw err;
        throw new BlobStoreError('storage_error', 'object store download failed', {
          cause: err,
          details: { op: 'GetObject', status: 0, s3_code: 'NetworkError' },
        });
      } finally {
        clearTimeout(timer);
      }
      if (step.done) break;
      received += step.value.byteLength;
      if (received > size) throw s3Error('GetObject', 200, 'LengthMismatch');
      yield step.value;
    }
    if (received !== size) throw s3Error('GetObject', 200, 'LengthMismatch');
  } finally {
    reader.releaseLock();
    release();
  }
}
