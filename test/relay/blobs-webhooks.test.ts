/**
 * Conformance: blobs (§3.7) and webhooks (§3.8), both implemented; the rest of their tests are in
 * blobs.test.ts and webhooks.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it } from 'node:test';
import { type Keypair, signRequest } from '../../src/protocol/signing.js';
import { newAgent, signed, startRelay } from '../helpers/relay.js';
import { Api, expectError, expectOk, RFC3339_UTC_RE } from './_support.js';

function upload(url: string, kp: Keypair, bytes: string, contentType = 'application/pdf') {
  return signed(url, kp, 'POST', '/v1/blobs', bytes, { headers: { 'Content-Type': contentType } });
}

describe('§3.7 blobs', () => {
  it('POST /v1/blobs → 201 {blob_id, hash, size, content_type, created_at, expires_at} and storage headers', async (t) => {
    const { url } = await startRelay(t);
    const a = newAgent();
    const bytes = 'hello blob';
    const res = await upload(url, a, bytes);
    const blob = expectOk(res, 201);
    assert.match(blob.blob_id, /^blob_[0-9a-f]{12}$/);
    assert.equal(blob.hash, createHash('sha256').update(bytes).digest('hex'));
    assert.equal(blob.size, Buffer.byteLength(bytes));
    assert.equal(blob.content_type, 'application/pdf');
    assert.match(blob.created_at, RFC3339_UTC_RE);
    assert.equal(Date.parse(blob.expires_at) - Date.parse(blob.created_at), 7 * 86_400_000);
    assert.match(res.headers.get('x-m2m-storage-used') ?? '', /^\d+$/);
    assert.match(res.headers.get('x-m2m-storage-limit') ?? '', /^\d+$/);
  });

  it('GET/HEAD return bytes and headers to the owner; others get 404 blob_not_found; DELETE → 204', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const bytes = 'some bytes';
    const blob = expectOk(await upload(url, a, bytes, 'text/plain'), 201);
    // Signed a minute back: the `api.get(a, …)` below signs this same request at the current second.
    const res = await fetch(`${url}/v1/blobs/${blob.blob_id}`, {
      headers: { ...signRequest(a, 'GET', `/v1/blobs/${blob.blob_id}`, '', Date.now() - 60_000) },
    });
    assert.equal(res.status, 200);
    assert.equal(await res.text(), bytes);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
    assert.equal(res.headers.get('content-length'), String(bytes.length));
    assert.equal(res.headers.get('x-m2m-blob-hash'), createHash('sha256').update(bytes).digest('hex'));
    const head = await api.req(a, 'HEAD', `/v1/blobs/${blob.blob_id}`);
    assert.equal(head.status, 200);
    assert.equal(head.text, '');
    expectError(await api.get(newAgent(), `/v1/blobs/${blob.blob_id}`), 404, 'blob_not_found');
    expectError(await api.delete(newAgent(), `/v1/blobs/${blob.blob_id}`), 404, 'blob_not_found');
    assert.equal((await api.delete(a, `/v1/blobs/${blob.blob_id}`)).status, 204);
    expectError(await api.get(a, `/v1/blobs/${blob.blob_id}`), 404, 'blob_not_found');
  });

  it('attachments are filled from the blob; the recipient may download; a referenced blob cannot be deleted', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    const bytes = 'attachment bytes';
    const blob = expectOk(await upload(url, a, bytes), 201);
    const sent = await api.send(
      a,
      b.publicKey,
      { see: 'attached' },
      { attachments: [{ blob_id: blob.blob_id, filename: 'x.pdf' }] },
    );
    const m = expectOk(await api.get(b, `/v1/messages/${sent.message_id}`));
    assert.deepEqual(m.attachments, [
      {
        blob_id: blob.blob_id,
        filename: 'x.pdf',
        content_type: 'application/pdf',
        size: bytes.length,
        hash: blob.hash,
      },
    ]);
    const download = await api.get(b, `/v1/blobs/${blob.blob_id}`);
    assert.equal(download.status, 200);
    assert.equal(download.text, bytes);
    expectError(await api.delete(a, `/v1/blobs/${blob.blob_id}`), 409, 'blob_referenced');
  });
});

describe('§3.8 webhooks', () => {
  it('PUT → 200 config; GET never returns the secret; DELETE → 204; GET with none → 404 not_found', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const target = `/v1/agents/${a.publicKey}/webhook`;
    const put = expectOk(
      await api.put(a, target, {
        url: 'https://example.com/incoming',
        secret: 'QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8',
      }),
    );
    assert.deepEqual(Object.keys(put).sort(), ['consecutive_failures', 'created_at', 'enabled', 'url']);
    assert.equal(put.enabled, true);
    assert.equal(put.consecutive_failures, 0);
    const got = expectOk(await api.get(a, target));
    assert.equal(got.url, 'https://example.com/incoming');
    assert.equal(got.secret, undefined);
    expectError(await api.get(newAgent(), target), 403, 'forbidden');
    assert.equal((await api.delete(a, target)).status, 204);
    expectError(await api.get(a, target), 404, 'not_found');
  });

  it('delivers messages with an HMAC-signed POST; a 200 marks the message delivered', async (t) => {
    const secret = 'QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl8';
    const hits: Array<{ req: IncomingMessage; body: string }> = [];
    const server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (d: string) => (body += d));
      req.on('end', () => {
        hits.push({ req, body });
        res.writeHead(200).end();
        server.emit('hit');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/incoming`;
    // The receiver is on loopback, which a relay refuses unless told otherwise.
    const { url } = await startRelay(t, { allowPrivateWebhooks: true });
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    expectOk(await api.put(b, `/v1/agents/${b.publicKey}/webhook`, { url: hookUrl, secret }));
    const sent = await api.send(a, b.publicKey, { text: 'Hello!' });
    await once(server, 'hit');
    const { req, body } = hits[0]!;
    assert.equal(req.method, 'POST');
    assert.equal(req.headers['x-m2m-webhook-signature'], createHmac('sha256', secret).update(body).digest('hex'));
    assert.match(String(req.headers['x-m2m-delivery-id']), /^dlv_[0-9a-f]{12}$/);
    assert.match(String(req.headers['x-m2m-webhook-timestamp']), RFC3339_UTC_RE);
    const payload = JSON.parse(body);
    assert.equal(payload.delivery_id, req.headers['x-m2m-delivery-id']);
    assert.equal(payload.message.message_id, sent.message_id);
    assert.deepEqual(payload.message.body, { text: 'Hello!' });
    // The 200 marks it delivered (eventually; poll the status endpoint).
    let status = '';
    for (let i = 0; i < 50 && status !== 'delivered'; i++) {
      status = expectOk(await api.get(a, `/v1/messages/${sent.message_id}/status`)).status;
    }
    assert.equal(status, 'delivered');
  });
});
