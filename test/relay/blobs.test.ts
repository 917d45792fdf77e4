/**
 * The relay's blob routes beyond the conformance basics (blobs-webhooks.test.ts): the 100 MiB
 * limit while streaming (413, nothing left behind, the relay healthy after), a forged upload
 * leaving nothing, quotas (pre-check by Content-Length, the atomic check at commit, concurrent
 * uploads), access through messages, attachment checks over HTTP and WebSocket, the sweeper
 * (expired blobs, orphan files) and agent deletion.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, readdir, utimes, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { canonicalRequest, formatTimestamp, type Keypair } from '../../src/protocol/signing.js';
import { connect, newAgent, startRelay } from '../helpers/relay.js';
import { Api, drained, expectError, expectOk } from './_support.js';
import { MIB, memoryProbe, patternHash, patternSource } from './blob-store.support.js';

type Answer = { status: number; body: any; headers: Record<string, string | string[] | undefined> };

/** POST /v1/blobs streaming `source`, signed over `sha256Hex` (the real hash unless forging). */
async function postBlob(
  url: string,
  kp: Keypair,
  source: AsyncIterable<Uint8Array>,
  sha256Hex: string,
  options: { length?: number; contentType?: string; at?: number } = {},
): Promise<Answer> {
  const u = new URL(url);
  const timestamp = formatTimestamp(options.at ?? Date.now());
  const hash = Buffer.from(sha256Hex, 'hex').toString('base64url');
  const req = request({
    host: u.hostname,
    port: u.port,
    method: 'POST',
    path: '/v1/blobs',
    headers: {
      'X-M2M-Public-Key': kp.publicKey,
      'X-M2M-Timestamp': timestamp,
      'X-M2M-Signature': kp.sign(canonicalRequest('POST', '/v1/blobs', timestamp, hash)),
      ...(options.contentType === undefined ? {} : { 'Content-Type': options.contentType }),
      ...(options.length === undefined ? {} : { 'Content-Length': String(options.length) }),
    },
  });
  const answered = new Promise<Answer>((resolve, reject) => {
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          body: JSON.parse(Buffer.concat(parts).toString() || 'null'),
        }),
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

const bytesOf = (text: string): AsyncIterable<Uint8Array> => ({
  async *[Symbol.asyncIterator]() {
    yield Buffer.from(text);
  },
});
const sha = (text: string): string => createHash('sha256').update(text).digest('hex');

/** Every file under the relay's blob directory (temp files included). */
async function blobFiles(dataDir: string): Promise<string[]> {
  const root = join(dataDir, 'blobs', 'blobs');
  const out: string[] = [];
  for (const owner of await readdir(root).catch(() => [] as string[])) {
    for (const name of await readdir(join(root, owner)).catch(() => [] as string[])) out.push(`${owner}/${name}`);
  }
  return out;
}

describe('blob uploads', () => {
  it('100 MiB + 1 byte → 413 while streaming (and at once with Content-Length); nothing left behind; the relay stays healthy', async (t) => {
    const { url, dataDir } = await startRelay(t, { requestRatePerMinute: 0 });
    const a = newAgent();
    const size = 100 * MIB + 1;
    const hash = await patternHash(size);
    const early = await postBlob(url, a, patternSource(size), hash, { length: size });
    assert.equal(early.status, 413);
    assert.equal(early.body.error.code, 'payload_too_large');
    const streamed = await postBlob(url, a, patternSource(size), hash);
    assert.equal(streamed.status, 413);
    assert.equal(streamed.body.error.code, 'payload_too_large');
    assert.deepEqual(await blobFiles(dataDir), []);
    // Exactly 100 MiB is fine, and the relay answers as before.
    const exact = await postBlob(url, a, patternSource(100 * MIB), await patternHash(100 * MIB));
    assert.equal(exact.status, 201, JSON.stringify(exact.body));
    assert.equal(exact.body.size, 100 * MIB);
    assert.equal((await fetch(`${url}/v1/health`)).status, 200);
  });

  it('an upload is stored without holding it: 50 MiB through POST /v1/blobs keeps arrayBuffers under 16 MiB', async (t) => {
    const { url } = await startRelay(t, { requestRatePerMinute: 0 });
    const a = newAgent();
    const size = 50 * MIB;
    const hash = await patternHash(size);
    // Sampled after full GCs: what is held, not garbage waiting to be collected.
    const probe = memoryProbe();
    const res = await postBlob(
      url,
      a,
      patternSource(size, 64 * 1024, (_pulled, n) => probe.tick(n)),
      hash,
      { length: size },
    );
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const peak = probe.peak();
    assert.ok(peak.arrayBuffers < 16 * MIB, `arrayBuffers grew by ${(peak.arrayBuffers / MIB).toFixed(1)} MiB`);
  });

  it('a bad signature is refused after the stream and leaves no bytes and no metadata; missing Content-Type → application/octet-stream', async (t) => {
    const { url, dataDir } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const forged = await postBlob(url, a, patternSource(3 * MIB), sha('other bytes'));
    assert.equal(forged.status, 401);
    assert.equal(forged.body.error.code, 'invalid_signature');
    assert.deepEqual(await blobFiles(dataDir), []);
    const plain = await postBlob(url, a, bytesOf('raw'), sha('raw'));
    assert.equal(plain.status, 201);
    assert.equal(plain.body.content_type, 'application/octet-stream');
    assert.equal(plain.headers['x-m2m-storage-used'], '3');
    assert.equal(plain.headers['x-m2m-storage-limit'], String(1024 * MIB));
    const head = await api.req(a, 'HEAD', `/v1/blobs/${plain.body.blob_id}`);
    assert.equal(head.headers.get('content-type'), 'application/octet-stream');
    assert.equal(head.headers.get('content-length'), '3');
    assert.equal(head.headers.get('x-m2m-blob-hash'), sha('raw'));
    assert.equal((await blobFiles(dataDir)).length, 2, 'the blob and its .meta');
  });

  it('quotas: count → 507; bytes → 507 before reading (Content-Length) or at commit (chunked, bytes removed); concurrent uploads never exceed', async (t) => {
    const { url, dataDir } = await startRelay(t, {
      maxBlobsPerAgent: 3,
      maxBlobStorageBytes: 100,
      requestRatePerMinute: 0,
    });
    const a = newAgent();
    const b = newAgent();
    // Concurrent uploads of one agent: exactly three win.
    const many = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        postBlob(url, a, bytesOf(`blob ${i}`), sha(`blob ${i}`), { at: Date.now() - i * 1000 }),
      ),
    );
    assert.deepEqual(many.map((r) => r.status).sort(), [201, 201, 201, 507, 507, 507]);
    for (const r of many.filter((x) => x.status === 507)) assert.equal(r.body.error.code, 'insufficient_storage');
    assert.equal(
      (await blobFiles(dataDir)).length,
      6,
      'three blobs and their .meta files; the refused ones left nothing',
    );
    const big = 'x'.repeat(101);
    const declared = await postBlob(url, b, bytesOf(big), sha(big), { length: 101 });
    assert.equal(declared.status, 507);
    const filled = await postBlob(url, b, bytesOf('y'.repeat(60)), sha('y'.repeat(60)));
    assert.equal(filled.status, 201);
    const chunked = await postBlob(url, b, bytesOf('z'.repeat(50)), sha('z'.repeat(50)));
    assert.equal(chunked.status, 507);
    assert.equal(chunked.body.error.code, 'insufficient_storage');
    assert.equal(chunked.headers['x-m2m-storage-used'], '60');
    assert.equal(chunked.headers['x-m2m-storage-limit'], '100');
    assert.equal((await blobFiles(dataDir)).filter((f) => f.startsWith(b.publicKey)).length, 2);
  });
});

describe('blob access and attachments', () => {
  it('the recipient of a message reads the blob; strangers and malformed ids get 404; attaching a blob that is not yours → 422 (HTTP and WebSocket)', async (t) => {
    const { url, wsUrl } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const c = newAgent();
    const blob = (await postBlob(url, a, bytesOf('shared'), sha('shared'), { contentType: 'text/plain' })).body;
    expectError(await api.get(b, `/v1/blobs/${blob.blob_id}`), 404, 'blob_not_found');
    expectError(await api.get(a, '/v1/blobs/..%2F..%2Fetc'), 404, 'blob_not_found');
    const sent = await api.send(
      a,
      b.publicKey,
      { see: 'attached' },
      { attachments: [{ blob_id: blob.blob_id, content_type: 'text/markdown', encrypted: false }] },
    );
    const m = expectOk(await api.get(b, `/v1/messages/${sent.message_id}`));
    assert.deepEqual(m.attachments, [
      { blob_id: blob.blob_id, content_type: 'text/markdown', size: 6, hash: sha('shared'), encrypted: false },
    ]);
    assert.equal((await api.get(b, `/v1/blobs/${blob.blob_id}`)).text, 'shared');
    expectError(await api.get(c, `/v1/blobs/${blob.blob_id}`), 404, 'blob_not_found');
    // b cannot forward a's blob as its own attachment, nor delete it.
    const err = expectError(
      await api.post(b, '/v1/messages', { recipient_key: c.publicKey, attachments: [{ blob_id: blob.blob_id }] }),
      422,
      'unprocessable_entity',
    );
    assert.equal(err.details.blob_id, blob.blob_id);
    expectError(await api.delete(b, `/v1/blobs/${blob.blob_id}`), 404, 'blob_not_found');
    const s = await connect(t, wsUrl, b);
    s.send({
      type: 'send',
      request_id: 'r1',
      recipient_key: c.publicKey,
      body: {},
      attachments: [{ blob_id: blob.blob_id }],
    });
    let result = await s.next();
    while (result.type === 'message') result = await s.next();
    assert.equal(result.type, 'send_result');
    assert.equal(result.error?.code, 'unprocessable_entity');
    assert.equal(result.error?.details?.blob_id, blob.blob_id);
  });
});

describe('blob lifetime', () => {
  it('the sweeper deletes expired blobs (metadata and bytes) and orphan files; deleting an agent deletes its blobs', async (t) => {
    const clock = new ManualClock(Date.now());
    // One sweep, exactly when a's blob has expired: the interval is the blob lifetime plus a minute.
    const { url, dataDir } = await startRelay(t, { clock, sweepIntervalMs: 7 * 86_400_000 + 60_000 });
    const api = new Api(url, clock);
    const a = newAgent();
    const b = newAgent();
    const x = (await postBlob(url, a, bytesOf('expires'), sha('expires'), { at: clock.now() })).body;
    const y = (await postBlob(url, b, bytesOf('stays'), sha('stays'), { at: clock.now() })).body;
    assert.ok(x.blob_id && y.blob_id);
    // An orphan: bytes without metadata (a crash between the two deletes).
    const orphanDir = join(dataDir, 'blobs', 'blobs', newAgent().publicKey);
    await mkdir(orphanDir, { recursive: true });
    await writeFile(join(orphanDir, 'blob_0123456789ab'), 'orphan');
    const old = new Date(clock.now() - 3_600_000);
    await utimes(join(orphanDir, 'blob_0123456789ab'), old, old);
    // b's blob is attached to a message that lives 30 days, so it outlives the 7 days.
    await api.send(b, a.publicKey, {}, { attachments: [{ blob_id: y.blob_id }], expires_in: 30 * 86_400 });
    await clock.advanceAsync(7 * 86_400_000 + 60_000);
    await waitFor(
      async () => !(await blobFiles(dataDir)).some((f) => f.includes(x.blob_id) || f.includes('blob_0123456789ab')),
    );
    expectError(await api.get(a, `/v1/blobs/${x.blob_id}`), 404, 'blob_not_found');
    assert.equal((await api.get(a, `/v1/blobs/${y.blob_id}`)).text, 'stays');
    assert.equal((await api.delete(b, `/v1/agents/${b.publicKey}`)).status, 204);
    await waitFor(async () => (await blobFiles(dataDir)).length === 0);
  });
});

/** Polls a condition on real I/O (file deletion after a sweep), up to 5 s. */
async function waitFor(check: () => Promise<boolean>): Promise<void> {
  for (let i = 0; i < 250; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail('condition not met within 5 s');
}
