/**
 * Routes that stream (issue 10, item 4): a test-only route registered through `createRelay({
 * routes })` declares a `stream` body and a `bytes` reply. A 50 MiB upload is consumed in bounded
 * memory and hashed while it streams; a bad signature is refused only after the last byte, and
 * the handler commits nothing; limits answer 413 early or as soon as they are passed; a 50 MiB
 * download goes out with Content-Length, streamed, and HEAD does not read the source.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { describe, it } from 'node:test';
import { canonicalRequest, formatTimestamp, type Keypair } from '../../src/protocol/signing.js';
import type { Route, Services } from '../../src/relay/index.js';
import { newAgent, startRelay } from '../helpers/relay.js';
import { drained } from './_support.js';
import { MIB, memoryProbe, patternHash, patternSource } from './blob-store.support.js';

const SIZE = 50 * MIB;
/** Far below the 50 MiB a buffered body would hold. */
const BUDGET = 16 * MIB;

interface Log {
  committed: Array<{ caller: string; size: number }>;
  /** Bytes the handler saw, whatever the verdict. */
  seen: number;
  sourceChunks: number;
  cancelled: number;
}

function testRoutes(log: Log, probe: { tick(n: number): void } | undefined): Route<Services>[] {
  return [
    {
      method: 'POST',
      path: '/v1/test/sink',
      auth: true,
      summary: 'test only: consume a streamed body',
      body: { kind: 'stream', maxBytes: 64 * MIB },
      reply: 'json',
      handler: async (req) => {
        const body = req.stream();
        const hash = createHash('sha256');
        let size = 0;
        try {
          for await (const chunk of body) {
            size += chunk.length;
            hash.update(chunk);
            probe?.tick(chunk.length);
          }
        } finally {
          log.seen = size;
        }
        // The loop ended, so the signature verified; `verified()` names the caller.
        const caller = await body.verified();
        log.committed.push({ caller, size });
        return { kind: 'json', status: 200, body: { size, sha256: hash.digest('hex'), caller } };
      },
    },
    {
      method: 'GET',
      path: '/v1/test/source/:size',
      auth: true,
      summary: 'test only: stream N bytes',
      body: { kind: 'none' },
      reply: 'bytes',
      handler: (req) => {
        const size = Number(req.params['size']);
        const source = patternSource(size, 64 * 1024, () => log.sourceChunks++);
        return {
          kind: 'bytes',
          status: 200,
          contentType: 'application/octet-stream',
          length: size,
          body: source,
          cancel: () => log.cancelled++,
        };
      },
    },
  ];
}

/** Signs a body by its hash (base64url of the SHA-256), as a client streaming a file would. */
function streamHeaders(kp: Keypair, method: string, target: string, sha256Hex: string): Record<string, string> {
  const timestamp = formatTimestamp(Date.now());
  const hash = Buffer.from(sha256Hex, 'hex').toString('base64url');
  return {
    'X-M2M-Public-Key': kp.publicKey,
    'X-M2M-Timestamp': timestamp,
    'X-M2M-Signature': kp.sign(canonicalRequest(method, target, timestamp, hash)),
  };
}

type Answer = { status: number; body: any };

/** POSTs `source` with backpressure; resolves with the status and the JSON answer. */
async function upload(
  url: string,
  target: string,
  headers: Record<string, string>,
  source: AsyncIterable<Uint8Array>,
  length?: number,
): Promise<Answer> {
  const u = new URL(url);
  const req = request({
    host: u.hostname,
    port: u.port,
    method: 'POST',
    path: target,
    headers: {
      ...headers,
      'Content-Type': 'application/octet-stream',
      ...(length === undefined ? {} : { 'Content-Length': String(length) }),
    },
  });
  const answered = new Promise<Answer>((resolve, reject) => {
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(parts).toString() || 'null') }),
      );
    });
    req.on('error', reject);
  });
  try {
    for await (const chunk of source) {
      if (req.destroyed || req.writableEnded) break;
      if (!req.write(chunk)) await drained(req);
    }
    req.end();
  } catch {
    // The relay answered and closed early; the answer says why.
  }
  return answered;
}

describe('stream routes (body: stream, reply: bytes)', () => {
  it('a 50 MiB upload is consumed in bounded memory, hashed while it streams, and verified at its end', async (t) => {
    const log: Log = { committed: [], seen: 0, sourceChunks: 0, cancelled: 0 };
    const probe = memoryProbe();
    const { url } = await startRelay(t, { routes: testRoutes(log, probe), requestRatePerMinute: 0 });
    const kp = newAgent();
    const sha = await patternHash(SIZE);
    const res = await upload(
      url,
      '/v1/test/sink',
      streamHeaders(kp, 'POST', '/v1/test/sink', sha),
      patternSource(SIZE),
      SIZE,
    );
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(res.body, { size: SIZE, sha256: sha, caller: kp.publicKey });
    assert.deepEqual(log.committed, [{ caller: kp.publicKey, size: SIZE }]);
    const peak = probe.peak();
    assert.ok(peak.arrayBuffers < BUDGET, `arrayBuffers grew by ${(peak.arrayBuffers / MIB).toFixed(1)} MiB`);
  });

  it('a bad signature is refused after the whole body streamed, and the handler commits nothing', async (t) => {
    const log: Log = { committed: [], seen: 0, sourceChunks: 0, cancelled: 0 };
    const { url } = await startRelay(t, { routes: testRoutes(log, undefined) });
    const kp = newAgent();
    // Signed over other bytes: headers, key and timestamp are fine, so the body is read.
    const wrong = createHash('sha256').update('something else').digest('hex');
    const res = await upload(
      url,
      '/v1/test/sink',
      streamHeaders(kp, 'POST', '/v1/test/sink', wrong),
      patternSource(SIZE),
      SIZE,
    );
    assert.equal(res.status, 401);
    assert.equal(res.body.error.code, 'invalid_signature');
    assert.equal(log.seen, SIZE, 'the verdict came after the last byte');
    assert.deepEqual(log.committed, []);
    // A chunked upload of the same kind, too.
    const chunked = await upload(
      url,
      '/v1/test/sink',
      streamHeaders(kp, 'POST', '/v1/test/sink', wrong),
      patternSource(2 * MIB),
    );
    assert.equal(chunked.status, 401);
    assert.deepEqual(log.committed, []);
  });

  it('over the limit: 413 before reading when Content-Length says so, as soon as it is passed otherwise; bad headers 401 before reading', async (t) => {
    const log: Log = { committed: [], seen: 0, sourceChunks: 0, cancelled: 0 };
    const { url } = await startRelay(t, { routes: testRoutes(log, undefined) });
    const kp = newAgent();
    const big = 65 * MIB;
    const sha = await patternHash(big);
    const declared = await upload(
      url,
      '/v1/test/sink',
      streamHeaders(kp, 'POST', '/v1/test/sink', sha),
      patternSource(big),
      big,
    );
    assert.equal(declared.status, 413);
    assert.equal(log.seen, 0, 'not a byte was handed to the handler');
    const chunked = await upload(
      url,
      '/v1/test/sink',
      streamHeaders(kp, 'POST', '/v1/test/sink', sha),
      patternSource(big),
    );
    assert.equal(chunked.status, 413);
    assert.ok(log.seen <= 64 * MIB, `the handler saw ${log.seen} bytes`);
    const unsigned = await upload(url, '/v1/test/sink', {}, patternSource(MIB), MIB);
    assert.equal(unsigned.status, 401);
    assert.deepEqual(log.committed, []);
  });

  it('a 50 MiB download streams with Content-Length in bounded memory; HEAD answers the headers and never reads the source', async (t) => {
    const log: Log = { committed: [], seen: 0, sourceChunks: 0, cancelled: 0 };
    const { url } = await startRelay(t, { routes: testRoutes(log, undefined), requestRatePerMinute: 0 });
    const kp = newAgent();
    const target = `/v1/test/source/${SIZE}`;
    const emptySha = createHash('sha256').digest('hex');
    const probe = memoryProbe();
    const res = await fetch(url + target, { headers: streamHeaders(kp, 'GET', target, emptySha) });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), String(SIZE));
    assert.equal(res.headers.get('content-type'), 'application/octet-stream');
    const hash = createHash('sha256');
    let size = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      size += chunk.length;
      hash.update(chunk);
      probe.tick(chunk.length);
    }
    assert.equal(size, SIZE);
    assert.equal(hash.digest('hex'), await patternHash(SIZE));
    const peak = probe.peak();
    assert.ok(peak.arrayBuffers < BUDGET, `arrayBuffers grew by ${(peak.arrayBuffers / MIB).toFixed(1)} MiB`);
    const chunksBefore = log.sourceChunks;
    const head = await fetch(url + target, { method: 'HEAD', headers: streamHeaders(kp, 'HEAD', target, emptySha) });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), String(SIZE));
    assert.equal((await head.arrayBuffer()).byteLength, 0);
    assert.equal(log.sourceChunks, chunksBefore, 'HEAD read nothing from the source');
    assert.equal(log.cancelled, 1);
  });
});
