/**
 * The client's blob API (src/client/blobs.ts) against a real relay in process: upload from memory
 * and from a file (streamed, signed by its hash), progress, HEAD, streamed and whole downloads,
 * delete, typed errors for 404/409/413/507; and against a lying server, the download's check of
 * `X-M2M-Blob-Hash` at the end of the stream.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { closeSync, constants as fsConstants, openSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { fileBlobInput } from '../../src/client/blob-file.js';
import { RelayClient } from '../../src/client/http.js';
import { NetworkError, ProtocolError, RelayError, UsageError } from '../../src/core/errors.js';
import { Keypair } from '../../src/protocol/signing.js';
import { startRelay } from '../helpers/relay.js';
import { memoryProbe, patternHash, patternSource } from '../relay/blob-store.support.js';

const MIB = 1024 * 1024;
const hex = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');
const client = (url: string): RelayClient => new RelayClient({ relayUrl: url, keypair: Keypair.generate() });

async function collect(body: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of body) parts.push(c);
  return Buffer.concat(parts);
}

async function rejectsWith(p: Promise<unknown>, cls: new (...a: never[]) => Error, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
    assert.equal((err as { code?: string }).code, code);
    return true;
  });
}

/** A client of `server` (a stand-in relay), listening on port 0 until the test ends; `timeoutMs`: its idle limit. */
async function clientOf(t: TestContext, server: Server, timeoutMs: number): Promise<RelayClient> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return new RelayClient({
    relayUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    keypair: Keypair.generate(),
    timeoutMs,
  });
}

describe('RelayClient blobs', () => {
  it("a relay given a blob store built from mrp/relay's exports keeps blobs in it", async (t) => {
    const shared = await mkdtemp(join(tmpdir(), 'mrp-shared-blobs-'));
    t.after(() => rm(shared, { recursive: true, force: true }));
    const { FsBlobStore, S3BlobStore, s3OptionsFromEnv } = await import('../../src/relay/index.js');
    assert.equal(typeof S3BlobStore, 'function');
    assert.equal(typeof s3OptionsFromEnv, 'function');
    const { url } = await startRelay(t, { blobStore: await FsBlobStore.open({ dataDir: shared }) });
    const a = client(url);
    const info = await a.uploadBlob(Buffer.from('kept in the shared store'), { contentType: 'text/plain' });
    const store = await FsBlobStore.open({ dataDir: shared });
    const head = await store.head(a.keypair.publicKey, info.blob_id);
    assert.equal(head?.size, 24);
  });

  it('uploads bytes (progress to the total), heads, downloads streamed and whole, deletes', async (t) => {
    const { url } = await startRelay(t);
    const a = client(url);
    const bytes = Buffer.alloc(MIB + 123, 7);
    const progress: number[] = [];
    const info = await a.uploadBlob(bytes, {
      contentType: 'image/png',
      onProgress: (sent, total) => progress.push(sent / total),
    });
    assert.match(info.blob_id, /^blob_[0-9a-f]{12}$/);
    assert.equal(info.size, bytes.length);
    assert.equal(info.hash, hex(bytes));
    assert.equal(info.content_type, 'image/png');
    assert.equal(progress.at(-1), 1);
    assert.deepEqual(await a.headBlob(info.blob_id), {
      blob_id: info.blob_id,
      size: bytes.length,
      hash: hex(bytes),
      content_type: 'image/png',
    });
    const seen: number[] = [];
    const { info: head, body } = await a.downloadBlob(info.blob_id, { onProgress: (n) => seen.push(n) });
    assert.equal(head.size, bytes.length);
    assert.ok((await collect(body)).equals(bytes));
    assert.equal(seen.at(-1), bytes.length);
    assert.ok((await a.downloadBlobBytes(info.blob_id, { maxBytes: 2 * MIB })).equals(bytes));
    await rejectsWith(a.downloadBlobBytes(info.blob_id, { maxBytes: 100 }), UsageError, 'payload_too_large');
    await a.deleteBlob(info.blob_id);
    await rejectsWith(a.headBlob(info.blob_id), RelayError, 'blob_not_found');
    await rejectsWith(a.downloadBlob(info.blob_id), RelayError, 'blob_not_found');
  });

  it('blob ids are opaque (spec §0): any other shape goes to the relay, path-encoded, and its 404 answers; only what cannot be a path segment is refused locally', async (t) => {
    const { url } = await startRelay(t);
    const a = client(url);
    for (const id of ['blob_ABCDEF123456', 'blob_0123', '../etc/passwd', 'x y?z#w']) {
      await rejectsWith(a.headBlob(id), RelayError, 'blob_not_found');
      await rejectsWith(a.downloadBlob(id), RelayError, 'blob_not_found');
      await rejectsWith(a.deleteBlob(id), RelayError, 'blob_not_found');
    }
    for (const id of ['', '.', '..', 'b'.repeat(257), 'blob_\n12', 'blob_\u0085']) {
      await rejectsWith(a.headBlob(id), UsageError, 'invalid_argument');
      await rejectsWith(a.downloadBlob(id), UsageError, 'invalid_argument');
      await rejectsWith(a.deleteBlob(id), UsageError, 'invalid_argument');
    }

    // A relay whose ids have another shape: the id is one encoded path segment, and works.
    const paths: string[] = [];
    const server = createServer((req, res) => {
      paths.push(`${req.method} ${req.url}`);
      const bytes = Buffer.from('other relay');
      if (req.method === 'DELETE') return void res.writeHead(204).end();
      res.writeHead(200, { 'Content-Length': bytes.length, 'X-M2M-Blob-Hash': hex(bytes) });
      res.end(req.method === 'HEAD' ? undefined : bytes);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const b = client(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const id = 'File-42/v2 (x)';
    assert.equal((await b.headBlob(id)).blob_id, id);
    assert.equal((await collect((await b.downloadBlob(id)).body)).toString(), 'other relay');
    await b.deleteBlob(id);
    const encoded = '/v1/blobs/File-42%2Fv2%20(x)';
    assert.deepEqual(paths, [`HEAD ${encoded}`, `GET ${encoded}`, `DELETE ${encoded}`]);
  });

  it('uploads a file streamed from disk (fileBlobInput), the content type defaulting to application/octet-stream', async (t) => {
    const { url } = await startRelay(t);
    const dir = await mkdtemp(join(tmpdir(), 'mrp-blob-file-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'data.bin');
    const bytes = Buffer.from(Array.from({ length: 3 * MIB }, (_, i) => (i * 31) % 251));
    await writeFile(file, bytes);
    const input = await fileBlobInput(file);
    assert.equal(input.size, bytes.length);
    assert.equal(Buffer.from(input.sha256).toString('hex'), hex(bytes));
    const a = client(url);
    const info = await a.uploadBlob(input);
    assert.equal(info.content_type, 'application/octet-stream');
    assert.equal(info.hash, hex(bytes));
    assert.ok((await a.downloadBlobBytes(info.blob_id, { maxBytes: 4 * MIB })).equals(bytes));
    await rejectsWith(fileBlobInput(join(dir, 'missing')), UsageError, 'invalid_argument');
    await rejectsWith(fileBlobInput(dir), UsageError, 'invalid_argument');
    // An input that yields other than it declared fails locally.
    await rejectsWith(a.uploadBlob({ ...input, size: input.size + 1 }), UsageError, 'invalid_argument');
  });

  it("a file changed between its hashing pass and its upload fails locally, saying so (not as the relay's invalid_signature)", async (t) => {
    const { url } = await startRelay(t);
    const dir = await mkdtemp(join(tmpdir(), 'mrp-blob-changed-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'growing.log');
    await writeFile(file, Buffer.alloc(MIB, 1));
    const input = await fileBlobInput(file);
    await writeFile(file, Buffer.alloc(MIB, 2)); // same size, other bytes
    const a = client(url);
    await assert.rejects(a.uploadBlob(input), (err: unknown) => {
      assert.ok(err instanceof UsageError, `expected a UsageError, got ${String(err)}`);
      assert.equal(err.code, 'invalid_argument');
      assert.match(err.message, /changed after they were hashed/);
      return true;
    });
    // The same file hashed again uploads fine; an in-memory input is not hashed twice.
    const info = await a.uploadBlob(await fileBlobInput(file));
    assert.equal(info.hash, hex(Buffer.alloc(MIB, 2)));
  });

  it('a FIFO is refused as not a regular file at once (opening it would wait for a writer forever)', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'mrp-blob-fifo-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    // Should the open block anyway, a non-blocking writer releases it so the test fails, not hangs.
    const release = setTimeout(() => {
      try {
        closeSync(openSync(fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK));
      } catch {}
    }, 2000);
    t.after(() => clearTimeout(release));
    const started = Date.now();
    await assert.rejects(fileBlobInput(fifo), (err: unknown) => {
      assert.ok(err instanceof UsageError, String(err));
      assert.equal(err.code, 'invalid_argument');
      assert.match(err.message, /not a regular file/);
      return true;
    });
    assert.ok(Date.now() - started < 1500, `refused after ${Date.now() - started} ms: the open waited for a writer`);
  });

  it('uploads and downloads stream: 40 MiB each way holds under 16 MiB of buffers (client and relay, after GCs)', async (t) => {
    const { url } = await startRelay(t, { requestRatePerMinute: 0 });
    const a = client(url);
    const size = 40 * MIB;
    const sha256 = Buffer.from(await patternHash(size), 'hex');
    const probe = memoryProbe();
    let last = 0;
    const tick = (n: number): void => {
      probe.tick(n - last);
      last = n;
    };
    const info = await a.uploadBlob({ size, sha256, open: () => patternSource(size) }, { onProgress: tick });
    last = 0;
    const { body } = await a.downloadBlob(info.blob_id, { onProgress: tick });
    for await (const _chunk of body) {
      // Dropped: only the verdict at the end matters.
    }
    const peak = probe.peak();
    assert.ok(peak.arrayBuffers < 16 * MIB, `arrayBuffers grew by ${(peak.arrayBuffers / MIB).toFixed(1)} MiB`);
  });

  it('typed errors: 413 payload_too_large, 507 insufficient_storage, 409 blob_referenced', async (t) => {
    const { url } = await startRelay(t, { maxBlobBytes: 1000, maxBlobsPerAgent: 1 });
    const a = client(url);
    const b = client(url);
    await rejectsWith(a.uploadBlob(Buffer.alloc(1001)), RelayError, 'payload_too_large');
    const info = await a.uploadBlob(Buffer.from('one'));
    await rejectsWith(a.uploadBlob(Buffer.from('two')), RelayError, 'insufficient_storage');
    await a.send({
      recipient_key: b.publicKey,
      body: {},
      attachments: [{ blob_id: info.blob_id, filename: 'one.txt' }],
    });
    await rejectsWith(a.deleteBlob(info.blob_id), RelayError, 'blob_referenced');
    assert.equal((await b.downloadBlobBytes(info.blob_id, { maxBytes: 10 })).toString(), 'one');
  });

  it('a download whose bytes do not match X-M2M-Blob-Hash throws blob_hash_mismatch at the end of the stream; one cut off, network_error', async (t) => {
    const server = createServer((req, res) => {
      if (req.url?.endsWith('c0ffee000000')) {
        // Declares 100 bytes, sends 10, hangs up.
        res.writeHead(200, { 'Content-Length': 100, 'X-M2M-Blob-Hash': hex('x') });
        res.write(Buffer.alloc(10));
        setTimeout(() => res.destroy(), 20);
        return;
      }
      const bytes = Buffer.from('tampered');
      res.writeHead(200, {
        'Content-Type': 'text/plain',
        'Content-Length': bytes.length,
        'X-M2M-Blob-Hash': hex('original'),
      });
      res.end(req.method === 'HEAD' ? undefined : bytes);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const a = client(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    const { body } = await a.downloadBlob('blob_0123456789ab');
    const received: Uint8Array[] = [];
    await assert.rejects(
      (async () => {
        for await (const c of body) received.push(c);
      })(),
      (err: unknown) => err instanceof ProtocolError && err.code === 'blob_hash_mismatch',
    );
    assert.equal(
      Buffer.concat(received).toString(),
      'tampered',
      'bytes stream before the verdict; the verdict ends the loop',
    );
    await rejectsWith(a.downloadBlobBytes('blob_0123456789ab', { maxBytes: 100 }), ProtocolError, 'blob_hash_mismatch');
    // A body cut off mid-way is a NetworkError naming the blob, not fetch's bare "terminated".
    await rejectsWith(a.downloadBlobBytes('blob_c0ffee000000', { maxBytes: 1000 }), NetworkError, 'network_error');
  });

  it("a delete's answer is not read: a relay answering 200 with an endless body is not taken into memory", {
    timeout: 30_000,
  }, async (t) => {
    let written = 0;
    const chunk = Buffer.alloc(MIB, 0x61);
    const server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      const pump = (): void => {
        while (!res.destroyed && written < 256 * 2 ** 20 && res.write(chunk)) written += chunk.length;
      };
      res.on('drain', pump);
      req.on('close', () => res.destroy());
      pump();
    });
    const c = await clientOf(t, server, 20_000);
    await c.deleteBlob('blob_0123456789ab');
    assert.ok(written < 64 * MIB, `the relay wrote ${written} bytes before the delete returned`);
  });

  it('a download that stalls mid-body fails once no byte moved for the idle limit, naming the blob', {
    timeout: 15_000,
  }, async (t) => {
    const server = createServer((_req, res) => {
      res.writeHead(200, {
        'content-type': 'application/octet-stream',
        'content-length': '1000',
        'x-m2m-blob-hash': 'a'.repeat(64),
      });
      res.write(Buffer.alloc(100)); // then nothing more
    });
    const c = await clientOf(t, server, 500);
    const { body } = await c.downloadBlob('blob_0123456789ab');
    await assert.rejects(
      async () => {
        for await (const _ of body) {
          // read until it breaks off
        }
      },
      (err: Error) => {
        assert.ok(err instanceof NetworkError, `${err.name}: ${err.message}`);
        assert.match(
          err.message,
          /blob_0123456789ab: the download broke off after 100 of 1000 bytes \(no byte moved for 500 ms\)/,
        );
        return true;
      },
    );
  });
});
