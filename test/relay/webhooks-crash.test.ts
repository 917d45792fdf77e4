/**
 * Webhook deliveries survive `kill -9` of `mrp relay` (needs a build: `npx tsc -p tsconfig.json`):
 * the delivery is written in the message's own commit, so every message answered 201 has one; the
 * ones not yet attempted go out right after a restart, the ones cut mid-attempt stay pending under
 * their lease (checked in the database rather than by waiting for the lease to end).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { SqliteStore } from '../../src/relay/store/sqlite-store.js';
import { newAgent } from '../helpers/relay.js';
import { Api, expectOk, spawnRelay, tempDir } from './_support.js';

describe('webhooks and kill -9', () => {
  it('no delivery is lost: unattempted ones go out after a restart, cut ones stay pending', async (t) => {
    let answer: 'hold' | 200 = 'hold';
    const held: ServerResponse[] = [];
    const seen = new Map<string, number>();
    const server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (d: string) => (body += d));
      req.on('end', () => {
        const id = JSON.parse(body).message.message_id as string;
        seen.set(id, (seen.get(id) ?? 0) + 1);
        if (answer === 'hold') held.push(res);
        else res.writeHead(200).end();
        server.emit('hit', id);
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => {
      server.closeAllConnections();
      server.close();
    });
    const hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/in`;

    const dataDir = join(await tempDir(t), 'data');
    const args = [
      '--port',
      '0',
      '--data-dir',
      dataDir,
      '--json',
      '--log-format',
      'json',
      '--allow-private-webhooks',
      '--send-rate',
      '0',
      '--receive-rate',
      '0',
    ];
    const first = await spawnRelay(t, args, { MRP_HOME: await tempDir(t) });
    const api = new Api(first.url);
    const [a, b] = [newAgent(), newAgent()];
    expectOk(await api.put(b, `/v1/agents/${b.publicKey}/webhook`, { url: hookUrl, secret: 'secret-secret-secret-1' }));
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push((await api.send(a, b.publicKey, { i })).message_id);
    // Two attempts are in flight (2 per agent), held by the receiver; the rest wait their turn.
    while (held.length < 2) await once(server, 'hit');
    first.child.kill('SIGKILL');
    assert.equal((await first.exited).signal, 'SIGKILL');
    const cut = [...seen.keys()];
    assert.equal(cut.length, 2);
    for (const res of held) res.destroy();

    answer = 200;
    const second = await spawnRelay(t, args, { MRP_HOME: await tempDir(t) });
    const rest = ids.filter((id) => !cut.includes(id));
    while (!rest.every((id) => seen.has(id))) await once(server, 'hit');
    second.child.kill('SIGTERM');
    await second.exited;

    // The two cut mid-attempt are still pending (due when their lease ends), nothing else is.
    const store = new SqliteStore(dataDir);
    t.after(() => store.close());
    const later = await store.claimDeliveries(Date.now() + 10 * 60_000, {
      limit: 100,
      leaseMs: 1000,
      perAgent: 100,
      inFlight: new Map(),
    });
    assert.deepEqual(later.map((c) => c.message.message_id).sort(), [...cut].sort());
    for (const id of rest) assert.equal((await store.getMessage(id))!.status, 'delivered');
  });
});
