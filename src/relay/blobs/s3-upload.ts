/**
 * One S3 put's buffers and multipart state, apart from the store so each file reads on its own.
 * An upload's length is unknown until its stream ends, and a single PUT needs it up front, so
 * bytes collect in a buffer of up to one part: a blob that ends within it goes as one PUT (the
 * common case); the first byte past it starts a multipart upload. At most two part buffers live:
 * one uploading while the next fills, and waiting for the first is the back-pressure. Buffers
 * grow from 64 KiB, so small puts stay small. Every body is signed with its SHA-256 (S3 refuses
 * a part corrupted on the way; see `S3Client`).
 *
 * Many uploads at once could hold many parts, so part buffers are counted against one
 * `ByteBudget` per store: an upload past 64 KiB waits for one part's worth (it holds nothing
 * big while waiting, so waiting cannot deadlock), and takes a second buffer only if the budget
 * has room, uploading sequentially otherwise. Trade-off: under load, uploads slow down (the
 * clients feel the back-pressure) instead of the relay running out of memory.
 */
import { abortedError } from './blob-store.js';
import type { S3Client } from './s3-client.js';
import { escapeXml, s3Error, xmlValue } from './s3-client.js';

const FIRST_BUFFER = 64 * 1024;

/** Bytes of part buffers a store may hold across all its uploads; waiters served in order. */
export class ByteBudget {
  private used = 0;
  private readonly waiters: { n: number; grant: () => void }[] = [];

  constructor(readonly limit: number) {}

  /** Takes `n` bytes (at most the whole budget) if there is room now; returns how many were taken. */
  tryTake(n: number): number {
    const need = Math.min(n, this.limit);
    if (this.waiters.length > 0 || this.used + need > this.limit) return 0;
    this.used += need;
    return need;
  }

  /** Waits for `n` bytes (at most the whole budget) and returns how many were taken; rejects `aborted` if the signal fires first. */
  async take(n: number, signal: AbortSignal | undefined): Promise<number> {
    const now = this.tryTake(n);
    if (now > 0) return now;
    if (signal?.aborted) throw abortedError(signal);
    const need = Math.min(n, this.limit);
    await new Promise<void>((resolve, reject) => {
      const waiter = {
        n: need,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = (): void => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        this.wake();
        reject(abortedError(signal as AbortSignal));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
    return need;
  }

  /** Returns bytes obtained from `take` / `tryTake`. */
  give(n: number): void {
    this.used -= n;
    this.wake();
  }

  private wake(): void {
    for (let w = this.waiters[0]; w !== undefined && this.used + w.n <= this.limit; w = this.waiters[0]) {
      this.waiters.shift();
      this.used += w.n;
      w.grant();
    }
  }
}

/** One put's buffers and multipart state. */
export class Upload {
  private fill: Buffer = Buffer.alloc(0);
  private fillLen = 0;
  /** Budget bytes this upload holds (0, one part or two). */
  private held = 0;
  private spare: Buffer | undefined;
  private inFlight: Promise<void> | undefined;
  private uploadId: string | undefined;
  private readonly etags: string[] = [];
  /** The final request was sent: the object may exist even if we saw no answer. */
  private maybeVisible = false;

  constructor(
    private readonly client: S3Client,
    private readonly key: string,
    private readonly contentType: string,
    private readonly partSize: number,
    private readonly signal: AbortSignal | undefined,
    private readonly budget: ByteBudget,
  ) {}

  /** Returns the budget this upload holds; call once, when the put has settled. */
  release(): void {
    this.budget.give(this.held);
    this.held = 0;
    this.fill = Buffer.alloc(0);
    this.spare = undefined;
  }

  async write(chunk: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < chunk.byteLength) {
      if (this.fillLen === this.fill.length) {
        if (this.fill.length < this.partSize) {
          const size = Math.min(this.partSize, Math.max(FIRST_BUFFER, this.fill.length * 2));
          if (size > FIRST_BUFFER && this.held === 0) {
            this.held = await this.budget.take(this.partSize, this.signal);
          }
          const bigger = Buffer.allocUnsafe(size);
          this.fill.copy(bigger, 0, 0, this.fillLen);
          this.fill = bigger;
        } else {
          await this.flushPart();
        }
      }
      const n = Math.min(chunk.byteLength - offset, this.fill.length - this.fillLen);
      this.fill.set(chunk.subarray(offset, offset + n), this.fillLen);
      this.fillLen += n;
      offset += n;
    }
  }

  /** Sends a full buffer as the next part; waits for the previous part first (two buffers in all). */
  private async flushPart(): Promise<void> {
    if (this.uploadId === undefined) {
      const headers = { 'content-type': this.contentType };
      const res = await this.client.call({
        op: 'CreateMultipartUpload',
        method: 'POST',
        key: this.key,
        query: { uploads: '' },
        headers,
        signal: this.signal,
        idempotent: false,
      });
      this.uploadId = xmlValue(res.text, 'UploadId');
      if (!this.uploadId) throw s3Error('CreateMultipartUpload', res.status, 'NoUploadId');
    }
    await this.inFlight;
    const full = this.fill;
    this.inFlight = this.uploadPart(this.etags.length + 1, full.subarray(0, this.fillLen));
    this.inFlight.catch(() => {});
    this.fillLen = 0;
    if (this.spare !== undefined) {
      this.fill = this.spare;
      this.spare = full;
      return;
    }
    const extra = this.budget.tryTake(this.partSize);
    if (extra > 0) {
      this.held += extra;
      this.fill = Buffer.allocUnsafe(this.partSize);
      this.spare = full;
    } else {
      // No room for a second buffer: this part is sent before its buffer is refilled.
      await this.inFlight;
    }
  }

  private async uploadPart(partNumber: number, body: Buffer): Promise<void> {
    const uploadId = this.uploadId as string;
    this.etags.push('');
    const query = { partNumber: String(partNumber), uploadId };
    const res = await this.client.call({
      op: 'UploadPart',
      method: 'PUT',
      key: this.key,
      query,
      body,
      signal: this.signal,
      timeoutMs: 120_000,
    });
    const etag = res.headers.get('etag');
    if (!etag) throw s3Error('UploadPart', res.status, 'NoETag');
    this.etags[partNumber - 1] = etag;
  }

  async finish(sha256Hex: string): Promise<void> {
    if (this.uploadId === undefined) {
      const headers = { 'content-type': this.contentType, 'x-amz-content-sha256': sha256Hex };
      this.maybeVisible = true;
      await this.client.call({
        op: 'PutObject',
        method: 'PUT',
        key: this.key,
        headers,
        body: this.fill.subarray(0, this.fillLen),
        signal: this.signal,
        timeoutMs: 120_000,
      });
      return;
    }
    await this.inFlight;
    if (this.fillLen > 0) await this.uploadPart(this.etags.length + 1, this.fill.subarray(0, this.fillLen));
    const parts = this.etags.map(
      (etag, i) => `<Part><PartNumber>${i + 1}</PartNumber><ETag>${escapeXml(etag)}</ETag></Part>`,
    );
    const body = Buffer.from(`<CompleteMultipartUpload>${parts.join('')}</CompleteMultipartUpload>`);
    this.maybeVisible = true;
    const query = { uploadId: this.uploadId };
    const res = await this.client.call({
      op: 'CompleteMultipartUpload',
      method: 'POST',
      key: this.key,
      query,
      body,
      signal: this.signal,
      idempotent: false,
      timeoutMs: 120_000,
    });
    // S3 may answer 200 and still fail: the error is then in the body.
    if (res.text.includes('<Error>'))
      throw s3Error('CompleteMultipartUpload', res.status, xmlValue(res.text, 'Code') ?? 'InternalError');
  }

  /** Best effort, without the caller's (possibly aborted) signal: leave nothing behind. */
  async discard(): Promise<void> {
    await this.inFlight?.catch(() => {});
    if (this.uploadId !== undefined) {
      const query = { uploadId: this.uploadId };
      await this.client
        .call({ op: 'AbortMultipartUpload', method: 'DELETE', key: this.key, query, accept: [404] })
        .catch(() => {});
    }
    if (this.maybeVisible)
      await this.client.call({ op: 'DeleteObject', method: 'DELETE', key: this.key, accept: [404] }).catch(() => {});
  }
}
