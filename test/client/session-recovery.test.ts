/**
 * What the client does after a close (§5.6): `recoveryFor` is the one table, checked here for
 * every code of the spec's table, and then the Session is checked to act on it against scripted
 * servers that close with those codes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type DisconnectInfo, recoveryFor, Session, tlsHandshakeFailure } from '../../src/client/session.js';
import { ManualClock } from '../../src/core/clock.js';
import { isRetryable, RelayError } from '../../src/core/errors.js';
import { CLOSE_CODES } from '../../src/protocol/constants.js';
import { Keypair } from '../../src/protocol/signing.js';
import { scriptedWs } from './_support.js';

const options = { tooManyConnectionsDelayMs: 30_000 };

describe('recoveryFor: the close-code table of §5.6', () => {
  const table: Array<[number, 'reconnect' | 'stop', 'immediate' | 'backoff' | number, boolean]> = [
    [1000, 'reconnect', 'backoff', false],
    [1001, 'reconnect', 'backoff', false],
    [4000, 'reconnect', 'backoff', false],
    [4001, 'reconnect', 'backoff', true],
    [4002, 'reconnect', 30_000, false],
    [4003, 'stop', 'backoff', false],
    [4005, 'reconnect', 'immediate', false],
  ];
  for (const [code, action, delay, authFailure] of table) {
    it(`${code} → ${action} (${delay}${authFailure ? ', counts as an auth failure' : ''})`, () => {
      const r = recoveryFor(code, undefined, options);
      assert.equal(r.action, action);
      assert.equal(r.delay, delay);
      assert.equal(r.authFailure, authFailure);
      assert.ok(r.explanation.length > 10, 'every close is explained to people');
    });
  }

  it('the table covers exactly the close codes the protocol defines', () => {
    assert.deepEqual(Object.values(CLOSE_CODES).sort(), table.map(([c]) => c).sort());
  });

  it('4002 waits as long as the session is configured to', () => {
    assert.equal(recoveryFor(4002, undefined, { tooManyConnectionsDelayMs: 45_000 }).delay, 45_000);
    assert.match(recoveryFor(4002, undefined, options).explanation, /another process/);
  });

  it('any other code (a lost connection) reconnects with backoff and names the code', () => {
    for (const code of [1006, 1011, 4999]) {
      const r = recoveryFor(code, undefined, options);
      assert.equal(r.action, 'reconnect');
      assert.equal(r.delay, 'backoff');
      assert.equal(r.authFailure, false);
      assert.match(r.explanation, new RegExp(String(code)));
    }
  });

  it('4001 explains the relay’s auth error in words a person can act on', () => {
    const why = (code: string): string => recoveryFor(4001, new RelayError(code, 'refused'), options).explanation;
    assert.match(why('timestamp_expired'), /clock/);
    assert.match(why('invalid_signature'), /key/);
    assert.match(why('replay_detected'), /replay/);
    assert.match(why('agent_suspended'), /suspended/);
    assert.match(why('something_new'), /something_new/);
    assert.match(recoveryFor(4001, undefined, options).explanation, /timed out|failed/);
  });
});

/** A session against a scripted server, on a manual clock with deterministic backoff (random 0). */
function session(
  t: import('node:test').TestContext,
  url: string,
  clock: ManualClock,
  extra: Partial<ConstructorParameters<typeof Session>[0]> = {},
): Session {
  const s = new Session({
    url,
    keypair: Keypair.generate(),
    clock,
    backoff: { random: () => 0 },
    heartbeatIdleMs: 3_600_000,
    ...extra,
  });
  t.after(() => s.close());
  return s;
}

describe('Session acts on the table', () => {
  it('4003: stops for good — fatal, closed, no second connection', async (t) => {
    const server = await scriptedWs(t, (ws) => ws.close(4003, 'agent suspended'));
    const clock = new ManualClock(Date.now());
    const s = session(t, server.url, clock);
    const disconnect = s.next('disconnect');
    const fatal = s.next('fatal');
    s.start();
    const [info] = await disconnect;
    assert.equal(info.code, 4003);
    assert.equal(info.willReconnect, false);
    const [err] = await fatal;
    assert.match(err.message, /suspended or deleted/);
    assert.equal(err.kind, 'auth', 'a refusal of this identity, not a network error (exit 4, not 3)');
    assert.equal(isRetryable(err), false);
    assert.equal(s.status, 'closed');
    clock.advance(600_000);
    assert.equal(server.connections, 1);
  });

  it('4005: reconnects at once the first time, with backoff the next time', async (t) => {
    const server = await scriptedWs(t, (ws) => ws.close(4005, 'heartbeat timeout'));
    const clock = new ManualClock(Date.now());
    const s = session(t, server.url, clock);
    const infos: DisconnectInfo[] = [];
    s.on('disconnect', (i) => infos.push(i));
    const first = s.next('disconnect');
    s.start();
    await first;
    assert.equal(infos[0]!.delayMs, 0, 'immediately');
    const second = s.next('disconnect');
    clock.advance(0);
    await second;
    assert.equal(server.connections, 2);
    assert.ok(infos[1]!.delayMs > 0, `then backs off (${infos[1]!.delayMs} ms)`);
    assert.ok(infos.every((i) => i.willReconnect && /heartbeat/.test(i.explanation)));
  });

  it('1001 (relay restarting): reconnects after the backoff delay, not before', async (t) => {
    const server = await scriptedWs(t, (ws, n) => {
      if (n === 0) ws.close(1001, 'relay shutting down');
    });
    const clock = new ManualClock(Date.now());
    const s = session(t, server.url, clock);
    const disconnect = s.next('disconnect');
    s.start();
    const [info] = await disconnect;
    assert.equal(info.code, 1001);
    assert.equal(info.willReconnect, true);
    assert.equal(info.delayMs, 250, 'the first backoff delay (random 0 → 250 ms)');
    assert.equal(s.status, 'reconnecting');
    clock.advance(249);
    assert.equal(server.connections, 1);
    const ready = s.next('ready');
    clock.advance(1);
    const [{ reconnected }] = await ready;
    assert.equal(reconnected, true);
    assert.equal(server.connections, 2);
  });

  it('4002: waits at least tooManyConnectionsDelayMs before trying again', async (t) => {
    const server = await scriptedWs(
      t,
      (ws) => ws.close(4002, 'too many connections'),
      () => ({ type: 'auth_result', status: 'error', error: { code: 'too_many_connections', message: 'at most 2' } }),
    );
    const clock = new ManualClock(Date.now());
    const s = session(t, server.url, clock, { tooManyConnectionsDelayMs: 30_000 });
    const disconnect = s.next('disconnect');
    s.start();
    const [info] = await disconnect;
    assert.equal(info.code, 4002);
    assert.equal(info.delayMs, 30_000);
    assert.equal(info.authError?.code, 'too_many_connections');
    clock.advance(29_999);
    assert.equal(server.connections, 1);
  });

  it('4001 repeated: gives up after maxAuthFailures consecutive failures, with the relay’s code', async (t) => {
    const server = await scriptedWs(
      t,
      (ws) => ws.close(4001, 'invalid_signature'),
      () => ({
        type: 'auth_result',
        status: 'error',
        error: { code: 'invalid_signature', message: 'the signature does not verify' },
      }),
    );
    const clock = new ManualClock(Date.now());
    const s = session(t, server.url, clock, { maxAuthFailures: 3 });
    const infos: DisconnectInfo[] = [];
    s.on('disconnect', (i) => {
      infos.push(i);
      if (i.willReconnect) setImmediate(() => clock.advance(i.delayMs));
    });
    const fatal = s.next('fatal');
    s.start();
    const [err] = await fatal;
    assert.deepEqual(
      infos.map((i) => i.willReconnect),
      [true, true, false],
    );
    assert.ok(infos.every((i) => /key file/.test(i.explanation)));
    assert.equal(err.kind, 'auth');
    assert.equal(err.code, 'invalid_signature');
    assert.equal(server.connections, 3);
    assert.equal(s.status, 'closed');
  });
});

describe('Session says a failed TLS handshake', () => {
  it('wss:// to a relay without TLS: "TLS handshake failed" with the reason, not a bare EPROTO; still reconnects', async (t) => {
    const server = await scriptedWs(t, () => {});
    const clock = new ManualClock(Date.now());
    const url = server.url.replace(/^ws:/, 'wss:');
    const s = session(t, url, clock);
    const disconnect = s.next('disconnect');
    s.start();
    const [info] = await disconnect;
    assert.equal(info.code, 1006);
    assert.match(
      info.explanation,
      /^cannot reach the relay at wss:\/\/127\.0\.0\.1:\d+\/?\S* \(TLS handshake failed: \S+/,
    );
    assert.equal(info.willReconnect, true);
  });

  it('only TLS failures are named so: a refused connection keeps its code', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' });
    assert.equal(tlsHandshakeFailure('wss://127.0.0.1:1/v1/ws', refused), undefined);
    const eproto = Object.assign(
      new Error('write EPROTO 80:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:x.c:350:'),
      { code: 'EPROTO' },
    );
    assert.equal(tlsHandshakeFailure('ws://127.0.0.1:1/v1/ws', eproto), undefined, 'ws:// has no handshake to fail');
    assert.equal(
      tlsHandshakeFailure('wss://127.0.0.1:1/v1/ws', eproto),
      'TLS handshake failed: EPROTO, wrong version number',
    );
    const cert = Object.assign(new Error('self-signed certificate'), { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
    assert.equal(
      tlsHandshakeFailure('wss://relay.example/v1/ws', cert),
      'TLS handshake failed: DEPTH_ZERO_SELF_SIGNED_CERT, self-signed certificate',
    );
  });
});
