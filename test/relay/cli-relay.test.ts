/**
 * `mrp relay` started exactly as a user would (bin/mrp.js; needs a build), then used over the wire
 * with hand-signed requests (§2) — and the self-hosting variables of §10.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { newAgent, signed } from '../helpers/relay.js';
import { Api, expectError, expectOk, MSG_ID_RE, spawnRelay, tempDir } from './_support.js';

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

describe('mrp relay (as a user starts it)', () => {
  it('`mrp relay --port P --data-dir D`: signed send → poll round trip', async (t) => {
    const dir = await tempDir(t);
    const home = await tempDir(t);
    const dataDir = join(dir, 'relay-data');
    const port = await freePort();
    const relay = await spawnRelay(t, ['--port', String(port), '--data-dir', dataDir], { MRP_HOME: home });
    assert.equal(relay.url, `http://127.0.0.1:${port}`);
    assert.ok(existsSync(join(dataDir, 'mrp.db')), 'mrp.db lives in the data dir');

    const health = expectOk(await signed(relay.url, undefined, 'GET', '/v1/health'));
    assert.equal(health.status, 'ok');

    const a = newAgent();
    const b = newAgent();
    const sent = await signed(relay.url, a, 'POST', '/v1/messages', {
      recipient_key: b.publicKey,
      body: { text: 'hello from a' },
    });
    const s = expectOk(sent, 201);
    assert.match(s.message_id, MSG_ID_RE);
    assert.equal(s.status, 'sent');
    const poll = expectOk(await signed(relay.url, b, 'GET', '/v1/messages'));
    assert.equal(poll.messages.length, 1);
    assert.equal(poll.messages[0].message_id, s.message_id);
    assert.equal(poll.messages[0].sender_key, a.publicKey);
    assert.deepEqual(poll.messages[0].body, { text: 'hello from a' });
    const status = expectOk(await signed(relay.url, a, 'GET', `/v1/messages/${s.message_id}/status`));
    assert.equal(status.status, 'delivered');

    relay.child.kill('SIGTERM');
    assert.equal((await relay.exited).code, 0);
  });

  it('honours PORT, DATA_DIR and TIMESTAMP_TOLERANCE (§10)', async (t) => {
    const dir = await tempDir(t);
    const home = await tempDir(t);
    const dataDir = join(dir, 'env-data');
    const port = await freePort();
    const relay = await spawnRelay(t, [], {
      MRP_HOME: home,
      PORT: String(port),
      DATA_DIR: dataDir,
      TIMESTAMP_TOLERANCE: '10s',
    });
    assert.equal(relay.url, `http://127.0.0.1:${port}`);
    assert.ok(existsSync(join(dataDir, 'mrp.db')));
    const kp = newAgent();
    expectError(
      await signed(relay.url, kp, 'GET', '/v1/messages', undefined, { at: Date.now() - 30_000 }),
      401,
      'timestamp_expired',
    );
    expectOk(await signed(relay.url, kp, 'GET', '/v1/messages', undefined, { at: Date.now() - 2_000 }));
    relay.child.kill('SIGTERM');
    assert.equal((await relay.exited).code, 0);
  });

  it('defaults to ./data/mrp.db in the working directory', async (t) => {
    const cwd = await tempDir(t);
    const home = await tempDir(t);
    const relay = await spawnRelay(t, ['--port', '0'], { MRP_HOME: home }, cwd);
    assert.ok(existsSync(join(cwd, 'data', 'mrp.db')));
    const api = new Api(relay.url);
    expectOk(await api.get(newAgent(), '/v1/messages'));
    relay.child.kill('SIGTERM');
    assert.equal((await relay.exited).code, 0);
  });
});
