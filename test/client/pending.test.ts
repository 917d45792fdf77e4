/**
 * The pending table (habit 9): request id → answer, deadlines on one timer of an injected clock, and
 * "outcome unknown" for everything pending when the connection drops — alone, and inside a Session.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PendingTable } from '../../src/client/pending.js';
import { Session } from '../../src/client/session.js';
import { ManualClock } from '../../src/core/clock.js';
import { OutcomeUnknownError, RelayError } from '../../src/core/errors.js';
import { Keypair } from '../../src/protocol/signing.js';
import { scriptedWs } from './_support.js';

/** Settles to `{ok}` or `{err}` so a test can look at a promise without awaiting a rejection. */
function outcome<T>(p: Promise<T>): { ok?: T; err?: unknown; settled: boolean } {
  const o: { ok?: T; err?: unknown; settled: boolean } = { settled: false };
  p.then(
    (v) => Object.assign(o, { ok: v, settled: true }),
    (e: unknown) => Object.assign(o, { err: e, settled: true }),
  );
  return o;
}

/** Lets promise callbacks run. */
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('PendingTable', () => {
  it('settles the entry with the matching id, and only once', async () => {
    const table = new PendingTable<string>(new ManualClock());
    const a = table.add('a', 1000, 'send a');
    const b = outcome(table.add('b', 1000, 'send b'));
    assert.equal(table.size, 2);
    assert.equal(table.resolve('a', 'answer a'), true);
    assert.equal(await a, 'answer a');
    assert.equal(table.resolve('a', 'again'), false, 'an id settles once');
    assert.equal(table.resolve('nope', 'x'), false, 'unknown ids are reported, not thrown');
    await flush();
    assert.equal(b.settled, false, 'the other entry is untouched');
    assert.equal(table.size, 1);
  });

  it('rejects one entry with the error it is given', async () => {
    const table = new PendingTable<string>(new ManualClock());
    const p = table.add('x', 1000, 'send');
    const err = new RelayError('acl_denied', 'no');
    assert.equal(table.reject('x', err), true);
    await assert.rejects(p, (e) => e === err);
    assert.equal(table.size, 0);
  });

  it('times out each entry on its own timer as outcome unknown', async () => {
    const clock = new ManualClock();
    const table = new PendingTable<string>(clock);
    const short = outcome(table.add('short', 1000, 'inline send'));
    const long = outcome(table.add('long', 5000, 'inline send'));
    clock.advance(999);
    await flush();
    assert.equal(short.settled, false, 'not before its deadline');
    clock.advance(1);
    await flush();
    assert.ok(short.err instanceof OutcomeUnknownError);
    assert.equal((short.err as OutcomeUnknownError).code, 'outcome_unknown');
    assert.match((short.err as Error).message, /inline send: no answer within 1000 ms/);
    assert.equal(long.settled, false, 'the longer deadline still runs');
    assert.equal(table.size, 1);
    assert.equal(table.resolve('short', 'late'), false, 'a late answer finds nothing');
    clock.advance(4000);
    await flush();
    assert.ok(long.err instanceof OutcomeUnknownError);
    assert.equal(table.size, 0);
  });

  it('cancels the timer of a settled entry', async () => {
    const clock = new ManualClock();
    const table = new PendingTable<number>(clock);
    const p = table.add('a', 1000, 'send');
    table.resolve('a', 7);
    assert.equal(await p, 7);
    assert.equal(clock.pending, 0, 'no timer left behind');
    clock.advance(10_000); // would reject an already-resolved promise if the timer were alive
  });

  it('a drop rejects everything pending, each with its own error, and leaves no timer', async () => {
    const clock = new ManualClock();
    const table = new PendingTable<string>(clock);
    const ps = ['a', 'b', 'c'].map((id) => table.add(id, 30_000, 'send'));
    let made = 0;
    table.rejectAll(() => {
      made++;
      return new OutcomeUnknownError('the connection closed; the outcome is unknown');
    });
    const errors = await Promise.all(
      ps.map((p) =>
        p.then(
          () => undefined,
          (e: unknown) => e,
        ),
      ),
    );
    assert.equal(made, 3, 'one error per entry');
    assert.equal(new Set(errors).size, 3);
    for (const e of errors) {
      assert.ok(e instanceof OutcomeUnknownError);
      assert.match(e.message, /outcome is unknown/);
    }
    assert.equal(table.size, 0);
    assert.equal(clock.pending, 0);
    assert.equal(table.resolve('a', 'late'), false);
  });
});

describe('pending inline sends in a Session', () => {
  it('are matched to their send_result by request_id, and fail as outcome unknown when the connection drops', async (t) => {
    const frames: Array<{ type: string; request_id: string; body: unknown }> = [];
    const server = await scriptedWs(t, (ws) => {
      ws.on('message', (data) => {
        const frame = JSON.parse(data.toString());
        if (frame.type !== 'send') return;
        frames.push(frame);
        // Answer the first send; drop the connection on the third, leaving the second unanswered.
        if (frames.length === 1) {
          ws.send(
            JSON.stringify({
              type: 'send_result',
              request_id: frame.request_id,
              status: 'ok',
              message_id: 'msg_1_000000000001',
              created_at: 'c',
              expires_at: 'e',
            }),
          );
        }
        if (frames.length === 3) ws.terminate();
      });
    });
    const clock = new ManualClock(Date.now());
    const session = new Session({ url: server.url, keypair: Keypair.generate(), clock, backoff: { random: () => 0 } });
    t.after(() => session.close());
    session.start();
    await session.ready();
    const to = Keypair.generate().publicKey;
    const first = await session.send({ recipient_key: to, body: { n: 1 } });
    assert.equal(first.message_id, 'msg_1_000000000001');
    assert.equal(session.inFlight, 0);
    const disconnected = session.next('disconnect');
    const second = session.send({ recipient_key: to, body: { n: 2 } });
    const third = session.send({ recipient_key: to, body: { n: 3 } });
    assert.equal(session.inFlight, 2);
    await disconnected;
    for (const p of [second, third]) {
      await assert.rejects(p, (e: unknown) => e instanceof OutcomeUnknownError && e.code === 'outcome_unknown');
    }
    assert.equal(session.inFlight, 0);
    assert.equal(new Set(frames.map((f) => f.request_id)).size, 3, 'every send has its own request_id');
    assert.deepEqual(
      frames.map((f) => f.body),
      [{ n: 1 }, { n: 2 }, { n: 3 }],
    );
  });

  it('a send that gets no answer fails as outcome unknown after its timeout', async (t) => {
    const server = await scriptedWs(t, () => {});
    const clock = new ManualClock(Date.now());
    const session = new Session({
      url: server.url,
      keypair: Keypair.generate(),
      clock,
      sendTimeoutMs: 5000,
      heartbeatIdleMs: 3_600_000,
    });
    t.after(() => session.close());
    session.start();
    await session.ready();
    const p = outcome(session.send({ recipient_key: Keypair.generate().publicKey, body: 1 }));
    clock.advance(4999);
    await flush();
    assert.equal(p.settled, false);
    clock.advance(1);
    await flush();
    assert.ok(p.err instanceof OutcomeUnknownError);
    assert.equal(session.status, 'ready', 'a slow answer does not end the session');
  });
});
