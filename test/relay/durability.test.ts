/**
 * Durability and process behaviour of `mrp relay` (needs a build: `npx tsc -p tsconfig.json`).
 * A message answered with 201 survives `kill -9`; SIGTERM closes WebSockets with 1001 and exits 0.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { newAgent, RawSocket } from '../helpers/relay.js';
import { Api, expectOk, freshAuthFrame, spawnRelay, tempDir } from './_support.js';

describe('durability (§4.1 at-least-once: accepted messages are stored)', () => {
  it('every message answered 201 is still there after kill -9 and a restart on the same data dir', async (t) => {
    const dir = await tempDir(t);
    const home = await tempDir(t);
    const dataDir = join(dir, 'data');
    const env = { MRP_HOME: home };
    const first = await spawnRelay(t, ['--port', '0', '--data-dir', dataDir, '--log-format', 'json', '--json'], env);
    const api = new Api(first.url);
    const a = newAgent();
    const b = newAgent();
    await api.profile(b, { display_name: 'Durable', inbox_policy: 'open' });
    const ids: string[] = [];
    // Some sequential, some concurrent (grouped commits).
    for (let i = 0; i < 5; i++) ids.push((await api.send(a, b.publicKey, { i })).message_id);
    const many = await Promise.all(Array.from({ length: 20 }, (_, i) => api.send(a, b.publicKey, { i: 5 + i })));
    ids.push(...many.map((m) => m.message_id as string));
    // Crash right after the last 201.
    first.child.kill('SIGKILL');
    const gone = await first.exited;
    assert.equal(gone.signal, 'SIGKILL');

    const second = await spawnRelay(t, ['--port', '0', '--data-dir', dataDir, '--log-format', 'json', '--json'], env);
    const api2 = new Api(second.url);
    const poll = expectOk(await api2.get(b, '/v1/messages?limit=100'));
    const got = poll.messages.map((m: { message_id: string }) => m.message_id);
    assert.equal(got.length, ids.length, `expected ${ids.length} messages after the crash, got ${got.length}`);
    assert.deepEqual(new Set(got), new Set(ids));
    // The profile survived too.
    const p = expectOk(await api2.get(a, `/v1/agents/${b.publicKey}`));
    assert.equal(p.display_name, 'Durable');
    second.child.kill('SIGTERM');
    assert.equal((await second.exited).code, 0);
  });

  it('a crash in the middle of a stream of sends loses none of the messages that got a 201', async (t) => {
    const dir = await tempDir(t);
    const home = await tempDir(t);
    const dataDir = join(dir, 'data');
    const env = { MRP_HOME: home };
    const args = [
      '--port',
      '0',
      '--data-dir',
      dataDir,
      '--log-format',
      'json',
      '--json',
      '--send-rate',
      '0',
      '--receive-rate',
      '0',
    ];
    const first = await spawnRelay(t, args, env);
    const api = new Api(first.url);
    const a = newAgent();
    const b = newAgent();
    const acknowledged: string[] = [];
    let killed = false;
    const attempts = Array.from({ length: 60 }, (_, i) =>
      api.post(a, '/v1/messages', { recipient_key: b.publicKey, body: { i } }).then(
        (res) => {
          if (res.status === 201) {
            acknowledged.push(res.body.message_id);
            if (acknowledged.length === 15 && !killed) {
              killed = true;
              first.child.kill('SIGKILL');
            }
          }
        },
        () => undefined, // connection reset by the crash
      ),
    );
    await Promise.all(attempts);
    if (!killed) first.child.kill('SIGKILL');
    await first.exited;
    assert.ok(acknowledged.length >= 15);
    const second = await spawnRelay(t, args, env);
    const api2 = new Api(second.url);
    const poll = expectOk(await api2.get(b, '/v1/messages?limit=100'));
    const got = new Set(poll.messages.map((m: { message_id: string }) => m.message_id));
    for (const id of acknowledged) assert.ok(got.has(id), `message ${id} was answered 201 but lost in the crash`);
  });
});

describe('mrp relay process', () => {
  it('SIGTERM: WebSocket clients see close 1001 and the process exits 0', async (t) => {
    const dir = await tempDir(t);
    const home = await tempDir(t);
    const relay = await spawnRelay(
      t,
      ['--port', '0', '--data-dir', join(dir, 'data'), '--log-format', 'json', '--json'],
      { MRP_HOME: home },
    );
    const kp = newAgent();
    const s = await RawSocket.open(relay.wsUrl);
    t.after(() => s.ws.terminate());
    s.send(freshAuthFrame(kp));
    assert.equal((await s.next()).status, 'ok');
    // A second, unauthenticated connection is closed the same way.
    const raw = await RawSocket.open(relay.wsUrl);
    t.after(() => raw.ws.terminate());
    relay.child.kill('SIGTERM');
    const [closed, closedRaw, exit] = await Promise.all([s.closed, raw.closed, relay.exited]);
    assert.equal(closed.code, 1001);
    assert.equal(closedRaw.code, 1001);
    assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}; stderr: ${relay.stderr().slice(-500)}`);
  });
});
