/**
 * An encrypted upload (`sealUpload`, docs/protocol.md §8.4) retried after its file changed: the
 * DEK and nonce are fixed for the upload, so a second attempt that encrypted the changed file
 * would put two different plaintexts under one ChaCha20 keystream on the relay. A real relay in
 * process behind a TCP proxy that records every request's bytes and cuts the first upload
 * midway; the file is rewritten once that attempt failed, before the client's retry.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createReadStream, writeFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { type AddressInfo, connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { sealUpload } from '../../src/client/blob-e2e.js';
import { RelayClient } from '../../src/client/http.js';
import { UsageError } from '../../src/core/errors.js';
import { BLOB_NONCE_BYTES } from '../../src/protocol/blob-crypto.js';
import { Keypair } from '../../src/protocol/signing.js';
import { tempDir } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

const KIB = 1024;

/** The body bytes of each `POST /v1/blobs` that went through the proxy, in order. */
interface Recorder {
  url: string;
  uploads: Buffer[];
}

/**
 * A TCP proxy to `target` that keeps, per connection, what the client sent. The first upload is
 * cut (both sides destroyed) once `cutAfter` body bytes of it have been forwarded.
 */
async function recordingProxy(t: TestContext, target: string, cutAfter: number): Promise<Recorder> {
  const { hostname, port } = new URL(target);
  const rec: Recorder = { url: '', uploads: [] };
  let cut = false;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    sockets.add(client).add(upstream);
    let head = Buffer.alloc(0);
    let upload: number | undefined;
    client.on('data', (data: Buffer) => {
      if (upload === undefined) {
        head = Buffer.concat([head, data]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        const headers = head.subarray(0, end).toString('latin1');
        assert.doesNotMatch(headers, /transfer-encoding: chunked/i, 'an upload goes with a Content-Length');
        if (/^POST \/v1\/blobs /.test(headers)) {
          upload = rec.uploads.push(head.subarray(end + 4)) - 1;
        }
        upstream.write(head);
        head = Buffer.alloc(0);
      } else {
        rec.uploads[upload] = Buffer.concat([rec.uploads[upload]!, data]);
        upstream.write(data);
      }
      if (upload === 0 && !cut && rec.uploads[0]!.length >= cutAfter) {
        cut = true;
        client.destroy();
        upstream.destroy();
      }
    });
    upstream.on('data', (d) => client.write(d));
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  rec.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return rec;
}

async function setup(t: TestContext, change: boolean) {
  const relay = await startRelay(t);
  const dir = await tempDir(t);
  const path = join(dir, 'report.bin');
  const original = randomBytes(1024 * KIB);
  await writeFile(path, original);
  const changed = Buffer.from(original.map((b) => b ^ 0xff));
  // The first attempt is cut once 600 KiB of it went out.
  const rec = await recordingProxy(t, relay.url, 600 * KIB);
  const sender = Keypair.generate();
  const attempts: number[] = [];
  const client = new RelayClient({
    relayUrl: rec.url,
    keypair: sender,
    trace: (e) => {
      if (e.method !== 'POST') return;
      attempts.push(e.attempt);
      // The first attempt failed: the file is rewritten before the client tries again.
      if (e.attempt === 1 && e.error !== undefined && change) writeFileSync(path, changed);
    },
  });
  // Read in 64 KiB pieces: not the sealer's block size, so its blocks are cut from several reads.
  const source = () => createReadStream(path, { highWaterMark: 64 * KIB });
  const prepared = await sealUpload(sender, Keypair.generate().publicKey, source, { filename: 'report.bin' });
  return { rec, client, prepared, attempts };
}

describe('sealUpload retried after its file changed', () => {
  it('refuses with upload_source_changed, and nothing but the first plaintext ever went out under its key and nonce', async (t) => {
    const { rec, client, prepared, attempts } = await setup(t, true);
    const err = await client.uploadBlob(prepared.input, { contentType: prepared.uploadType }).then(
      () => undefined,
      (e: unknown) => e,
    );
    // The client did try again (the refusal may come before the retry's request is even sent).
    assert.deepEqual(attempts, [1, 2]);
    const [first, ...retries] = rec.uploads as [Buffer, ...Buffer[]];
    assert.ok(first.length >= 600 * KIB);
    for (const [i, body] of retries.entries()) {
      // One DEK for the whole upload: the same nonce is the same keystream, so a ciphertext byte
      // that differs at the same offset is a different plaintext byte under that keystream.
      const n = Math.min(first.length, body.length);
      const sameNonce = body.subarray(0, BLOB_NONCE_BYTES).equals(first.subarray(0, BLOB_NONCE_BYTES));
      if (!sameNonce) continue;
      const differs = body.subarray(0, n).findIndex((b, at) => b !== first[at]);
      assert.equal(
        differs,
        -1,
        `attempt ${i + 2} sent ${body.length} bytes; at offset ${differs} it encrypted other plaintext under the first attempt's key and nonce`,
      );
    }
    assert.ok(err instanceof UsageError, `refused with a UsageError, got ${String(err)}`);
    assert.equal(err.code, 'upload_source_changed');
    assert.match(err.message, /changed/);
  });

  it('a retry of an unchanged file sends the same ciphertext and the upload completes', async (t) => {
    const { rec, client, prepared } = await setup(t, false);
    const info = await client.uploadBlob(prepared.input, { contentType: prepared.uploadType });
    assert.equal(
      info.hash,
      Buffer.from(prepared.input instanceof Uint8Array ? [] : prepared.input.sha256).toString('hex'),
    );
    assert.equal(rec.uploads.length, 2);
    const [first, second] = rec.uploads as [Buffer, Buffer];
    assert.ok(second.subarray(0, first.length).equals(first));
    const stored = await client.downloadBlobBytes(info.blob_id, { maxBytes: 2 * 1024 * KIB });
    assert.ok(stored.equals(second));
  });
});
