/**
 * The relay's per-message shortcuts keep their contracts: frames of one turn leave corked in one
 * write (and a close still follows what was written), cached time formatting is exactly
 * `formatInstant`, and the directory's LRU evicts like a CLOCK (second chance for what was read: a mark, not a move).
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { Lru } from '../../src/relay/lru.js';
import { CORK_MAX_BYTES, Connection } from '../../src/relay/ws-connection.js';

/** A real server-side `Connection` (raw socket attached, as the hub does) and the client talking to it. */
async function pair(
  t: TestContext,
): Promise<{ conn: Connection; socket: Duplex; client: WebSocket; frames: string[] }> {
  const wss = new WebSocketServer({ noServer: true });
  const http = createServer();
  const accepted = new Promise<{ conn: Connection; socket: Duplex }>((resolve) => {
    http.on('upgrade', (req, socket, head) => {
      wss.handleUpgrade(req, socket, head, (ws) => {
        const conn = new Connection(ws, '127.0.0.1', Date.now());
        conn.socket = socket;
        resolve({ conn, socket });
      });
    });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const client = new WebSocket(`ws://127.0.0.1:${(http.address() as AddressInfo).port}`);
  const frames: string[] = [];
  client.on('message', (data) => frames.push(String(data)));
  t.after(async () => {
    client.terminate();
    wss.close();
    await new Promise((resolve) => http.close(resolve));
  });
  const { conn, socket } = await accepted;
  await new Promise((resolve) => client.once('open', resolve));
  return { conn, socket, client, frames };
}

const until = async (cond: () => boolean): Promise<void> => {
  while (!cond()) await new Promise((resolve) => setImmediate(resolve));
};

describe('relay hot path', () => {
  it('frames sent in one turn wait corked and leave together at the end of the turn', async (t) => {
    const { conn, socket, frames } = await pair(t);
    const written: string[] = [];
    for (let i = 0; i < 3; i++) conn.send(`{"n":${i}}`, () => written.push(`cb${i}`));
    assert.equal(socket.writableCorked, 1, 'corked for the rest of the turn');
    assert.ok(conn.buffered > 0, 'corked frames count as unsent');
    assert.ok(conn.unsent > 0);
    await new Promise((resolve) => process.nextTick(resolve));
    assert.equal(socket.writableCorked, 0, 'uncorked at the end of the turn');
    await until(() => frames.length === 3 && written.length === 3);
    assert.deepEqual(frames, ['{"n":0}', '{"n":1}', '{"n":2}']);
    assert.equal(conn.unsent, 0, 'every write callback ran');
  });

  it('more than CORK_MAX_BYTES in one turn is handed to the kernel at once', async (t) => {
    const { conn, socket, frames } = await pair(t);
    conn.send('"small"');
    assert.equal(socket.writableCorked, 1);
    conn.send(JSON.stringify('x'.repeat(CORK_MAX_BYTES)));
    assert.equal(socket.writableCorked, 0, 'uncorked within the turn');
    await until(() => frames.length === 2);
  });

  it('uncork before a close: what was sent in the turn arrives before the close frame', async (t) => {
    const { conn, client, frames } = await pair(t);
    const closed = new Promise<number>((resolve) => client.once('close', (code) => resolve(code)));
    conn.send('"last words"');
    conn.uncork();
    conn.ws.close(4000, 'bye');
    conn.ws.terminate();
    assert.equal(await closed, 4000);
    assert.deepEqual(frames, ['"last words"']);
  });

  it('LRU (second chance): a recently read entry survives eviction, bounds hold', () => {
    const lru = new Lru<string, number>(3, 1000, () => 1);
    lru.set('a', 1);
    lru.set('b', 2);
    lru.set('c', 3);
    lru.get('a');
    lru.set('d', 4);
    assert.deepEqual(
      ['a', 'b', 'c', 'd'].map((k) => lru.has(k)),
      [true, false, true, true],
    );
    // Every entry read: eviction still ends and still keeps the count.
    for (const k of ['a', 'c', 'd']) lru.get(k);
    lru.set('e', 5);
    assert.equal(lru.size, 3);
    assert.equal(lru.get('e'), 5, 'the entry just set is never the one evicted');
    for (let i = 0; i < 50; i++) {
      lru.get('e');
      lru.set(`k${i}`, i);
      assert.equal(lru.size, 3);
      assert.ok(lru.has(`k${i}`) && lru.has('e'), 'an entry read before every eviction stays');
    }
    const bytes = new Lru<string, string>(10, 100, (v) => v.length);
    for (let i = 0; i < 20; i++) {
      bytes.set(`k${i}`, 'x'.repeat(30));
      bytes.get(`k${i}`);
      assert.ok(bytes.bytes <= 100);
    }
  });
});
