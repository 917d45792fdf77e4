/**
 * An answer given before the request body was read (auth refused on the headers, an unknown
 * route) leaves unread bytes on the connection, which the relay then ends: the answer must say
 * `Connection: close`, never promise a keep-alive the next pooled request would find reset.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { describe, it } from 'node:test';
import { startRelay } from '../helpers/relay.js';

/** Sends raw request bytes and resolves with the response head once it has arrived. */
function rawHead(url: string, request: string): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => socket.write(request));
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      const end = text.indexOf('\r\n\r\n');
      if (end >= 0) {
        socket.destroy();
        resolve(text.slice(0, end));
      }
    });
    socket.on('error', reject);
  });
}

describe('keep-alive only when the request was read whole', () => {
  it('a POST refused on its headers before its body arrived is answered with Connection: close', async (t) => {
    const relay = await startRelay(t);
    const head = await rawHead(
      relay.url,
      'POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: keep-alive\r\n\r\n{"rec',
    );
    assert.match(head, /^HTTP\/1\.1 401/);
    assert.match(head, /\r\nconnection: close/i);
  });

  it('a complete request keeps its keep-alive', async (t) => {
    const relay = await startRelay(t);
    const head = await rawHead(relay.url, 'GET /v1/health HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    assert.match(head, /^HTTP\/1\.1 200/);
    assert.match(head, /\r\nconnection: keep-alive/i);
  });
});
