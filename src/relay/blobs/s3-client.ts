/**
 * The little S3 REST client the S3 blob store needs, on `aws4fetch` (SigV4 signing over the
 * built-in fetch, 96 KB) rather than the AWS SDK (22 MB). It owns what every request needs:
 * addressing (path-style for custom endpoints, virtual-hosted for AWS), a fresh signature per
 * attempt, a bounded time per attempt, a few retries with backoff for idempotent requests,
 * bounded reads of XML answers, and errors typed as `storage_error` with the S3 code, status and
 * request id in `details`. Messages never carry credentials or signed URLs. Trade-off: XML is
 * read with a few regular expressions; that is enough for the handful of flat answers used here
 * (keys are our own, restricted to URL- and XML-safe characters).
 */
import { createHash } from 'node:crypto';
import { AwsClient } from 'aws4fetch';
import { UsageError } from '../../core/errors.js';
import { abortedError, BlobStoreError } from './blob-store.js';

export interface S3ClientOptions {
  /** `s3://bucket` or `s3://bucket/prefix`. */
  url: string;
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  /** Default `us-east-1`. */
  region?: string;
  /** S3-compatible endpoint (MinIO, R2, …), e.g. `http://127.0.0.1:9000`; default AWS. */
  endpoint?: string;
  /** Default: true with a custom endpoint, false for AWS (virtual-hosted buckets). */
  forcePathStyle?: boolean;
  /** Per attempt, until the whole answer of a small request or the headers of a download (default 30 s). */
  requestTimeoutMs?: number;
  /** Retries of idempotent requests after network errors, timeouts, 5xx and 429 (default 2). */
  retries?: number;
}

/** Reads the usual AWS variables; `url` still comes from the command line. */
export function s3OptionsFromEnv(env: Record<string, string | undefined>): Omit<S3ClientOptions, 'url'> {
  const pick = (...names: string[]): string | undefined =>
    names.map((n) => env[n]?.trim()).find((v) => v !== undefined && v !== '');
  const accessKeyId = pick('AWS_ACCESS_KEY_ID');
  const secretAccessKey = pick('AWS_SECRET_ACCESS_KEY');
  if (accessKeyId === undefined || secretAccessKey === undefined) {
    throw new UsageError('S3 blob storage needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY', {
      code: 'missing_credentials',
    });
  }
  const out: Omit<S3ClientOptions, 'url'> = { accessKeyId, secretAccessKey };
  const sessionToken = pick('AWS_SESSION_TOKEN');
  const region = pick('AWS_REGION', 'AWS_DEFAULT_REGION');
  const endpoint = pick('AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL');
  if (sessionToken !== undefined) out.sessionToken = sessionToken;
  if (region !== undefined) out.region = region;
  if (endpoint !== undefined) out.endpoint = endpoint;
  return out;
}

export interface S3Call {
  op: string;
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'DELETE';
  /** Object key, or undefined for the bucket itself. */
  key?: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: Uint8Array;
  signal?: AbortSignal | undefined;
  /** Statuses returned to the caller instead of thrown (e.g. 404 on GET). */
  accept?: number[];
  /** False for requests that must not be sent twice (default true). */
  idempotent?: boolean;
  timeoutMs?: number;
}

export interface S3Answer {
  status: number;
  headers: Headers;
  text: string;
}

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const PREFIX_RE = /^[A-Za-z0-9!_.*'()/-]{0,512}$/;
const MAX_XML = 4 * 1024 * 1024;

export class S3Client {
  readonly bucket: string;
  /** Empty or ending in `/`. */
  readonly prefix: string;
  private readonly aws: AwsClient;
  private readonly base: URL;
  private readonly pathStyle: boolean;
  private readonly timeoutMs: number;
  private readonly retries: number;

  constructor(o: S3ClientOptions) {
    const m = /^s3:\/\/([^/]+)(?:\/(.*))?$/.exec(o.url);
    if (!m || !BUCKET_RE.test(m[1] ?? '')) throw new UsageError('blob store URL must look like s3://bucket/prefix');
    this.bucket = m[1] as string;
    const prefix = (m[2] ?? '').replace(/^\/+|\/+$/g, '');
    if (
      !PREFIX_RE.test(prefix) ||
      prefix.split('/').some((s) => (s === '' && prefix !== '') || s === '.' || s === '..')
    ) {
      throw new UsageError("blob store prefix may use letters, digits and !_.*'()/- only");
    }
    this.prefix = prefix === '' ? '' : `${prefix}/`;
    if (!o.accessKeyId || !o.secretAccessKey)
      throw new UsageError('S3 blob storage needs an access key id and a secret key');
    const region = o.region ?? 'us-east-1';
    if (!/^[a-z0-9-]{1,40}$/.test(region)) throw new UsageError('S3 region must look like eu-west-1');
    let base: URL;
    try {
      base = new URL(o.endpoint ?? `https://s3.${region}.amazonaws.com`);
    } catch {
      throw new UsageError('S3 endpoint is not a URL');
    }
    if ((base.protocol !== 'http:' && base.protocol !== 'https:') || base.username || base.password || base.search) {
      throw new UsageError('S3 endpoint must be an http(s) URL without credentials or query');
    }
    this.base = base;
    this.pathStyle = o.forcePathStyle ?? o.endpoint !== undefined;
    this.timeoutMs = o.requestTimeoutMs ?? 30_000;
    this.retries = o.retries ?? 2;
    const creds = { accessKeyId: o.accessKeyId, secretAccessKey: o.secretAccessKey, service: 's3', region, retries: 0 };
    this.aws = new AwsClient(o.sessionToken === undefined ? creds : { ...creds, sessionToken: o.sessionToken });
  }

  url(key: string | undefined, query: Record<string, string> = {}): URL {
    const path = key === undefined ? '' : key.split('/').map(encodeURIComponent).join('/');
    const root = this.base.pathname.replace(/\/+$/, '');
    const url = new URL(this.base.href);
    if (this.pathStyle) url.pathname = `${root}/${this.bucket}${key === undefined ? '' : `/${path}`}`;
    else {
      url.hostname = `${this.bucket}.${url.hostname}`;
      url.pathname = `${root}/${path}`;
    }
    for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
    return url;
  }

  /** A request whose whole answer (≤ 4 MiB of XML) is read within the time limit. */
  async call(c: S3Call): Promise<S3Answer> {
    return this.withRetries(c, async (signal) => {
      const res = await this.send(c, signal);
      const text = await readBounded(res, MAX_XML);
      return { status: res.status, headers: res.headers, text };
    });
  }

  /** A request whose body the caller streams: the time limit covers the headers only. */
  async open(c: S3Call, controller: AbortController): Promise<Response> {
    return this.withRetries(c, (signal) => this.send(c, signal), controller);
  }

  private async send(c: S3Call, signal: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { ...c.headers };
    const init: RequestInit & { duplex?: 'half' } = { method: c.method, headers, signal };
    if (c.body !== undefined) {
      // Signed payload: S3 refuses a body altered on the way.
      headers['x-amz-content-sha256'] ??= createHash('sha256').update(c.body).digest('hex');
      // fetch copies a Uint8Array body; a one-chunk stream with an explicit length is sent as is
      // (memory: the part buffer, not twice that) and still goes out with Content-Length.
      headers['content-length'] = String(c.body.byteLength);
      const bytes = c.body;
      init.body = new ReadableStream<Uint8Array>({
        start(controller) {
          if (bytes.byteLength > 0) controller.enqueue(bytes);
          controller.close();
        },
      });
      init.duplex = 'half';
    }
    const req = await this.aws.sign(this.url(c.key, c.query).href, init);
    const res = await fetch(req);
    if (res.ok || c.accept?.includes(res.status)) return res;
    const text = await readBounded(res, 64 * 1024).catch(() => '');
    throw s3Error(
      c.op,
      res.status,
      xmlValue(text, 'Code') ?? statusCode(res.status),
      res.headers.get('x-amz-request-id'),
    );
  }

  /** Runs one attempt per try, each under its own timer; the caller's signal ends everything. */
  private async withRetries<T>(
    c: S3Call,
    attempt: (signal: AbortSignal) => Promise<T>,
    outer?: AbortController,
  ): Promise<T> {
    const tries = c.idempotent === false ? 1 : this.retries + 1;
    for (let i = 0; ; i++) {
      if (c.signal?.aborted) throw abortedError(c.signal);
      const controller = outer ?? new AbortController();
      const timer = setTimeout(() => controller.abort(timeoutError(c.op)), c.timeoutMs ?? this.timeoutMs);
      const onAbort = (): void => controller.abort(c.signal?.reason);
      c.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        return await attempt(controller.signal);
      } catch (err) {
        if (c.signal?.aborted) throw abortedError(c.signal);
        const typed = toStorageError(c.op, controller.signal.aborted ? controller.signal.reason : err);
        const status = Number(typed.details?.status ?? 0);
        const transient = status === 0 || status === 429 || status >= 500;
        if (!transient || i + 1 >= tries || outer?.signal.aborted) throw typed;
        await sleep(100 * 2 ** i * (1 + Math.random()), c.signal);
      } finally {
        clearTimeout(timer);
        c.signal?.removeEventListener('abort', onAbort);
      }
    }
  }
}

export function s3Error(op: string, status: number, code: string, requestId?: string | null): BlobStoreError {
  const details: Record<string, string | number> = { op, status, s3_code: code };
  if (requestId) details.request_id = requestId;
  return new BlobStoreError('storage_error', `object store ${op} failed: ${status} ${code}`, { details });
}

function toStorageError(op: string, err: unknown): BlobStoreError {
  if (err instanceof BlobStoreError) return err;
  const cause = (err as { cause?: { code?: unknown } } | undefined)?.cause;
  const code = typeof cause?.code === 'string' ? cause.code : 'NetworkError';
  return new BlobStoreError('storage_error', `object store ${op} failed: ${code}`, {
    cause: err,
    details: { op, status: 0, s3_code: code },
  });
}

function timeoutError(op: string): BlobStoreError {
  return new BlobStoreError('storage_error', `object store ${op} timed out`, {
    details: { op, status: 0, s3_code: 'Timeout' },
  });
}

function statusCode(status: number): string {
  return status === 404 ? 'NotFound' : status === 403 ? 'AccessDenied' : `Http${status}`;
}

async function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  await new Promise<void>((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Reads a response body as text, refusing more than `max` bytes. */
async function readBounded(res: Response, max: number): Promise<string> {
  if (res.body === null) return '';
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    total += chunk.byteLength;
    if (total > max) {
      // leaving the loop cancels the body
      throw new BlobStoreError('storage_error', 'object store answer too large', {
        details: { status: res.status, s3_code: 'AnswerTooLarge' },
      });
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts).toString('utf8');
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };
const unescapeXml = (s: string): string => s.replace(/&(amp|lt|gt|quot|apos);/g, (_, e: string) => ENTITIES[e] ?? '');
export const escapeXml = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function xmlValue(xml: string, tag: string): string | undefined {
  const m = new RegExp(`<${tag}>([^<]*)</${tag}>`).exec(xml);
  return m?.[1] === undefined ? undefined : unescapeXml(m[1]);
}

export function xmlValues(xml: string, tag: string): string[] {
  return [...xml.matchAll(new RegExp(`<${tag}>([^<]*)</${tag}>`, 'g'))].map((m) => unescapeXml(m[1] ?? ''));
}
