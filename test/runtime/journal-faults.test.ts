/**
 * Faults never wedge silently (issue 9, item 10, journal half): a journal write that fails
 * (disk full) keeps what it could not write and everyone waiting for it, retries with backoff,
 * reports `unwritable`, and carries on once the disk has room — nothing lost, no torn lines.
 * The runtime takes no messages meanwhile and reports not-ready; the failure is injected through
 * the journal's file system interface, never by patching globals.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { normalizeMessage } from '../../src/protocol/frames.js';
import { Journal } from '../../src/runtime/journal.js';
import type { RuntimeEvents } from '../../src/runtime/runtime.js';
import { connected, handledN, Peer, startAgent } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { FlakyDisk } from '../helpers/flaky-disk.js';
import { startRelay } from '../helpers/relay.js';

const message = (id: string) =>
  normalizeMessage({
    message_id: id,
    sender_key: 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ',
    body: { id, pad: 'p'.repeat(100) },
    expires_at: new Date(Date.now() + 86_400_000).toISOString(),
  });

describe('journal write failures', () => {
  it('keeps the unwritten bytes and the waiters, retries with backoff, and resumes without a torn line', async (t) => {
    const dir = await tempDir(t);
    const clock = new ManualClock(Date.now());
    const disk = new FlakyDisk();
    const j = Journal.open(dir, { clock, fs: disk.fs, retryBackoff: { random: () => 0 } });
    const events: string[] = [];
    const messages: string[] = [];
    j.on('unwritable', ({ error, retryInMs }) => {
      events.push(`unwritable ${error.code} ${retryInMs}`);
      messages.push(error.message);
    });
    j.on('writable', () => events.push('writable'));
    await j.received(message('m1'));

    disk.full = true;
    disk.partial = 40; // the first failing write tears a line in the middle
    let settled = false;
    const written = j.received(message('m2')).then(() => (settled = true));
    j.started('m2');
    const handled = j.handled('m2', {
      request: { recipient_key: 'k', content_type: 'application/json', body_json: '{"ok":true}' },
      outcome: 'ok',
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(settled, false, 'not on disk, so not settled');
    assert.equal(j.writable, false);
    assert.deepEqual(events, ['unwritable journal_unwritable 250']);
    assert.match(messages[0]!, /^cannot write the journal \S+ \(ENOSPC: no space left on device, write\); retrying$/);
    clock.advance(250); // retry: still full
    assert.deepEqual(events, ['unwritable journal_unwritable 250', 'unwritable journal_unwritable 1000']);
    assert.equal(settled, false);

    disk.full = false;
    clock.advance(1000);
    await written;
    await handled;
    assert.equal(j.writable, true);
    assert.deepEqual(events.at(-1), 'writable');
    j.close();

    const lines = (await readFile(join(dir, 'journal.jsonl'), 'utf8')).trim().split('\n');
    for (const line of lines) JSON.parse(line); // every line whole
    const again = Journal.open(dir, { clock });
    t.after(() => again.close());
    const recovered = again.takeRecovered();
    assert.deepEqual(
      recovered.map((e) => [e.id, e.state, e.starts ?? 0]),
      [
        ['m1', 'received', 0],
        ['m2', 'handled', 1],
      ],
    );
  });

  it('closing while writes fail rejects the waiters and throws journal_unwritable', async (t) => {
    const dir = await tempDir(t);
    const clock = new ManualClock(Date.now());
    const disk = new FlakyDisk();
    const j = Journal.open(dir, { clock, fs: disk.fs });
    disk.full = true;
    const pending = j.received(message('m1'));
    await new Promise((r) => setImmediate(r));
    assert.throws(
      () => j.close(),
      (err: Error & { code?: string }) => err.code === 'journal_unwritable',
    );
    await assert.rejects(pending, /journal closed/);
    assert.equal(clock.pending, 0, 'no retry left scheduled: it would keep the process alive past its grace');
    // The lock was released: the journal opens again.
    Journal.open(dir, { clock }).close();
  });

  it('the runtime reports not-ready, takes nothing while the disk is full, then answers everything', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const dir = await tempDir(t);
    const disk = new FlakyDisk();
    let calls = 0;
    const agent = await startAgent(
      t,
      relay,
      () => {
        calls++;
        return 'ok';
      },
      { journalDir: dir, journal: { fs: disk.fs, retryBackoff: { firstMinMs: 20, firstMaxMs: 20, maxMs: 40 } } },
    );
    const readiness: RuntimeEvents['readiness'][] = [];
    agent.runtime.on('readiness', (...e) => readiness.push(e));
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    disk.full = true;
    const notReady = agent.runtime.next('readiness');
    await peer.send(agent.keypair.publicKey, { n: 0 });
    const [first] = await notReady;
    assert.equal(first.ready, false);
    assert.equal(first.error?.code, 'journal_unwritable');
    assert.equal(agent.runtime.capacity(), 0, 'takes nothing while it cannot journal');
    for (let i = 1; i < 5; i++) await peer.send(agent.keypair.publicKey, { n: i });
    assert.equal(calls, 0, 'no handler runs before its message is journaled');
    await disk.failed(2); // the failed write is retried, and fails again while the disk is full
    assert.ok(disk.failures >= 2, `retried (${disk.failures} failed writes)`);
    const all = handledN(agent.runtime, 5);
    disk.full = false;
    await all;
    await peer.waitForReplies(5);
    assert.equal(calls, 5);
    assert.deepEqual(readiness.at(-1), [{ ready: true }]);
    assert.equal(new Set(peer.replies.map((r) => r.in_reply_to)).size, 5, 'one reply each');
  });
  it('stopping while writes fail ends within the grace, reports journal_unwritable and leaves no timer behind', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const clock = new ManualClock(Date.now());
    const disk = new FlakyDisk();
    let calls = 0;
    const agent = await startAgent(
      t,
      relay,
      () => {
        calls++;
        return 'ok';
      },
      { clock, journal: { fs: disk.fs, retryBackoff: { random: () => 0 } }, options: { graceMs: 5000 } },
    );
    agent.runtime.start();
    await connected(agent.runtime);
    const peer = await Peer.connect(t, relay);
    disk.full = true;
    const notReady = agent.runtime.next('readiness');
    await peer.send(agent.keypair.publicKey, { n: 0 });
    await notReady;
    // Several retries fail: the backoff has grown well past the grace (250 ms, 1 s, 2 s, 4 s, 8 s…).
    await clock.advanceAsync(250 + 1000 + 2000 + 4000);
    assert.ok(disk.failures >= 4, `retried (${disk.failures} failed writes)`);
    assert.ok(clock.nextDelay()! > 5000, `the next retry is after the grace (${clock.nextDelay()} ms)`);

    const stopped = agent.runtime.next('stopped');
    const begun = clock.now();
    let done = false;
    const stopping = agent.runtime.stop().then(() => (done = true));
    await clock.advanceAsync(4999);
    assert.equal(done, false, 'the message waiting for the journal gets the grace');
    await clock.advanceAsync(1);
    await stopping; // no more clock time needed: the grace bounds the whole stop
    assert.equal(clock.now() - begun, 5000);
    const [event] = await stopped;
    assert.equal(event.error?.code, 'journal_unwritable');
    assert.equal(calls, 0, 'nothing ran without being journaled');
    assert.equal(clock.pending, 0, 'no journal retry (nor anything else) left to keep the process alive');
  });
});
