/**
 * Issue 9, relay item 1, at process level: `mrp relay` as a user runs it survives every hostile
 * input of the issue (before and after auth, WebSocket and HTTP) and keeps serving honest clients.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newAgent } from '../helpers/relay.js';
import { deep, signedBytes, TextSocket, tcpWs, textFrame, write } from './_raw.js';
import { Api, expectOk, freshAuthFrame, roundTrip, spawnRelay, tempDir, wsConnect } from './_support.js';

describe('the relay process survives hostile input', () => {
  it('crash frames before and after auth, deep bodies, huge queries, bad bytes: the process lives and serves', async (t) => {
    const relay = await spawnRelay(t, ['--port', '0', '--data-dir', await tempDir(t), '--log-format', 'json']);
    let exited = false;
    void relay.exited.then(() => (exited = true));
    const to = newAgent().publicKey;

    // Before auth: the 12 KB ping, a deep send, garbage, binary, an unfinished 15 MiB frame.
    for (const frame of [
      `{"type":"ping","ts":${deep(6000)}}`,
      `{"type":"send","recipient_key":"${to}","body":${deep(6000)}}`,
      '{"type":',
      '[[[[',
    ]) {
      const s = await TextSocket.open(t, relay.wsUrl);
      s.send(frame);
      await s.closed;
    }
    const bin = await TextSocket.open(t, relay.wsUrl);
    bin.send(Buffer.from([0, 1, 2]), true);
    await bin.closed;
    const unfinished = await tcpWs(t, relay.wsUrl);
    await write(
      unfinished.socket,
      Buffer.concat([
        Buffer.from([0x81, 0xff]),
        Buffer.from([0, 0, 0, 0, 0, 0xf0, 0, 0]),
        Buffer.alloc(4),
        Buffer.alloc(32 * 1024),
      ]),
    );
    await unfinished.gone;

    // After auth: deep sends (flat, nested), deep ping, deep ack, invalid UTF-8.
    const kp = newAgent();
    const s = await wsConnect(t, relay.wsUrl, kp);
    s.send(`{"type":"send","request_id":"a","recipient_key":"${to}","body":${deep(6000)}}`);
    assert.equal((await s.next()).error.code, 'bad_request');
    s.send(`{"type":"send","request_id":"b","message":{"recipient_key":"${to}","body":${deep(6000)}}}`);
    assert.equal((await s.next()).error.code, 'bad_request');
    s.send(`{"type":"ack","message_id":${deep(6000)}}`);
    await s.closed;
    const u = await tcpWs(t, relay.wsUrl);
    await write(
      u.socket,
      Buffer.concat([
        textFrame(JSON.stringify(freshAuthFrame(newAgent()))),
        textFrame(Buffer.from([0x22, 0xff, 0x22])),
      ]),
    );
    await u.gone;

    // HTTP: deep bodies on every JSON route, 1,100 tags, invalid UTF-8.
    const bodies: Array<[string, string, string]> = [
      ['POST', '/v1/messages', `{"recipient_key":"${to}","body":${deep(4100)}}`],
      ['POST', '/v1/messages', `{"recipient_key":"${to}","body":${deep(60_000)}}`],
      ['PATCH', `/v1/agents/${kp.publicKey}`, `{"metadata":${deep(6000)}}`],
      ['PATCH', `/v1/agents/${kp.publicKey}`, `{"capabilities":[{"name":"n","input_schema":{"a":${deep(6000)}}}]}`],
      ['PUT', `/v1/agents/${kp.publicKey}/acl`, deep(6000)],
      ['POST', '/v1/messages', '\u0000\u0001'],
    ];
    for (const [method, target, body] of bodies)
      assert.equal((await signedBytes(relay.url, kp, method, target, body)).status, 400, `${method} ${target}`);
    const tags = Array.from({ length: 1100 }, (_, i) => `tag=t${i}x`).join('&');
    assert.equal((await new Api(relay.url).get(kp, `/v1/discover?${tags}`)).status, 400);
    assert.equal(
      (await signedBytes(relay.url, kp, 'POST', '/v1/messages', Buffer.from([0x7b, 0xff, 0x7d]))).status,
      400,
    );

    // Still the same process, still serving.
    assert.equal(exited, false, `the relay exited: ${relay.stderr().slice(-2000)}`);
    assert.equal(relay.child.exitCode, null);
    expectOk(await new Api(relay.url).get(newAgent(), '/v1/agents/me'));
    const b = newAgent();
    await new Api(relay.url).send(newAgent(), b.publicKey, { still: 'here' });
    const inbox = await wsConnect(t, relay.wsUrl, b);
    assert.deepEqual((await inbox.next()).message.body, { still: 'here' });
    await roundTrip(inbox);
    assert.ok(!/internal_error/.test(relay.stderr()), relay.stderr().slice(-2000));
  });
});
