import assert from 'node:assert/strict';
import { appendFile, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { ConfigError } from '../../src/core/errors.js';
import { normalizeMessage } from '../../src/protocol/frames.js';
import type { Message } from '../../src/protocol/types.js';
import { hash64, hashHex } from '../../src/runtime/idset.js';
import { Journal, relayKey } from '../../src/runtime/journal.js';
import { tempDir } from '../helpers/cli.js';

const DAY = 86_400_000;
/** A sealed reply as the runtime journals it: the body as its exact text. */
const REPLY = {
  recipient_key: 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ',
  content_type: 'application/json',
  body_json: '{"ok":1}',
  in_reply_to: 'm2',
  thread_id: 'm2',
};

function message(id: string, expiresAt: number): Message {
  return normalizeMessage({
    message_id: id,
    sender_key: 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ',
    body: { id },
    created_at: new Date(expiresAt - 7 * DAY).toISOString(),
    expires_at: new Date(expiresAt).toISOString(),
  });
}

/** Appends `lines` to the journal in `dir` as they are, then opens it again (closed after the test). */
async function reopenWith(t: TestContext, dir: string, lines: string[]): Promise<Journal> {
  await appendFile(join(dir, 'journal.jsonl'), `${lines.join('\n')}\n`);
  const journal = Journal.open(dir, {});
  t.after(() => journal.close());
  return journal;
}

describe('journal', () => {
  it('replays: done ids are remembered, unfinished entries resume at their step', async (t) => {
    const dir = await tempDir(t);
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const exp = clock.now() + 7 * DAY;
    const j = Journal.open(dir, { clock });
    await j.received(message('m1', exp));
    await j.received(message('m2', exp));
    await j.received(message('m3', exp));
    await j.received(message('m4', exp));
    j.started('m2');
    await j.handled('m2', { request: REPLY, outcome: 'ok' });
    await j.handled('m3', null);
    j.replied('m3', 'msg_reply');
    await j.handled('m4', null);
    j.done('m4');
    j.close();

    const again = Journal.open(dir, { clock });
    t.after(() => again.close());
    assert.equal(again.isDone('m4'), true);
    assert.equal(again.isDone('m1'), false);
    const recovered = again.takeRecovered();
    assert.deepEqual(
      recovered.map((e) => [e.id, e.state, e.reply, e.replyId]),
      [
        ['m1', 'received', undefined, undefined],
        ['m2', 'handled', { request: REPLY, outcome: 'ok' }, undefined],
        ['m3', 'replied', null, 'msg_reply'],
      ],
    );
    assert.deepEqual(recovered[0]!.message.body, { id: 'm1' });
    assert.deepEqual(
      recovered.map((e) => e.started === true),
      [false, true, false],
      'whether a handler had begun',
    );
    assert.deepEqual(again.takeRecovered(), [], 'recovered entries are handed out once');
  });

  it('a reply journaled by an older version (a body value) resumes as the plain JSON it would have sent', async (t) => {
    const dir = await tempDir(t);
    const exp = Date.now() + DAY;
    const m = (id: string) =>
      JSON.stringify({ k: 'recv', id, exp, m: { ...message(id, exp), thread_id: id === 'old2' ? 'th' : null } });
    const lines = [
      m('old1'),
      m('old2'),
      '{"k":"handled","id":"old1","reply":{"body":{"answer":42},"content_type":"application/json","outcome":"ok"}}',
      '{"k":"handled","id":"old2","reply":{"body":{"status":"error","error":{"code":"boom","message":"no"}},"content_type":"application/json","outcome":"error"}}',
    ];
    await writeFile(join(dir, 'journal.jsonl'), `${lines.join('\n')}\n`);
    const j = Journal.open(dir, {});
    t.after(() => j.close());
    const [e1, e2] = j.takeRecovered();
    const to = 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ';
    assert.deepEqual(e1!.reply, {
      request: {
        recipient_key: to,
        content_type: 'application/json',
        body_json: '{"answer":42}',
        in_reply_to: 'old1',
        thread_id: 'old1',
      },
      outcome: 'ok',
    });
    assert.deepEqual(e2!.reply, {
      request: {
        recipient_key: to,
        content_type: 'application/json',
        body_json: '{"status":"error","error":{"code":"boom","message":"no"}}',
        in_reply_to: 'old2',
        thread_id: 'th',
      },
      outcome: 'error',
      error: { code: 'boom', message: 'no' },
    });
  });

  it('skips damaged lines (not a record, or a record without a usable id) and replays the rest', async (t) => {
    const dir = await tempDir(t);
    const j = Journal.open(dir, {});
    await j.received(message('a', Date.now() + DAY));
    await j.received(message('b', Date.now() + DAY));
    j.done('b');
    j.flush();
    j.close();
    const damaged = [
      'null',
      '42',
      '"text"',
      '[]',
      '{"k":"recv"}',
      '{"k":"recv","id":5,"m":{}}',
      '{"k":"recv","id":"x"}',
    ];
    damaged.push('{"k":"done","id":{}}', '{"k":"started","id":[1]}', '{"k":"dones","b":7}', '{"k":"dones","b":"!!!"}');
    const again = await reopenWith(t, dir, damaged);
    assert.deepEqual(
      again.takeRecovered().map((e) => e.id),
      ['a'],
    );
    assert.equal(again.isDone('b'), true);
  });

  it('skips records whose fields are damaged: the entry stays as the good records left it', async (t) => {
    const dir = await tempDir(t);
    const j = Journal.open(dir, {});
    await j.received(message('a', Date.now() + DAY));
    await j.received(message('b', Date.now() + DAY));
    j.started('a');
    j.flush();
    j.close();
    const damaged = [
      '{"k":"handled","id":"a"}',
      '{"k":"handled","id":"a","reply":7}',
      '{"k":"handled","id":"a","reply":{"request":"x","outcome":"ok"}}',
      '{"k":"handled","id":"a","reply":{"outcome":"ok"}}',
      '{"k":"replied","id":"a","to":{}}',
      '{"k":"upload","id":"a","key":3,"a":{}}',
      '{"k":"upload","id":"a","key":"k","a":null}',
      '{"k":"started","id":"a","n":"many"}',
      '{"k":"aborted","id":"a","n":-4}',
      '{"k":"done","id":"b","until":"later"}',
      '{"k":"done","h":5,"until":99999999999999}',
      '{"k":"recv","id":"c","exp":"soon","m":{"message_id":"c"}}',
    ];
    const again = await reopenWith(t, dir, damaged);
    const recovered = again.takeRecovered();
    assert.deepEqual(
      recovered.map((e) => e.id),
      ['a', 'c'],
    );
    const a = recovered[0]!;
    assert.equal(a.state, 'received');
    assert.equal(a.reply, undefined);
    assert.equal(a.replyId, undefined);
    assert.equal(a.uploads, undefined);
    assert.equal(a.starts, 2);
    assert.equal(a.aborts, 1);
    assert.equal(again.isDone('b'), true, 'a done record with a damaged until still says the message is finished');
    assert.ok(Number.isFinite(recovered[1]!.expiresAt));
  });

  it('ignores a torn last line (crash mid-write)', async (t) => {
    const dir = await tempDir(t);
    const j = Journal.open(dir, {});
    await j.received(message('a', Date.now() + DAY));
    await j.received(message('b', Date.now() + DAY));
    j.close();
    const path = join(dir, 'journal.jsonl');
    const size = (await stat(path)).size;
    await truncate(path, size - 10);
    await appendFile(path, '');
    const again = Journal.open(dir, {});
    t.after(() => again.close());
    assert.deepEqual(
      again.takeRecovered().map((e) => e.id),
      ['a'],
    );
    await again.received(message('c', Date.now() + DAY));
    again.flush();
    const lines = (await readFile(path, 'utf8')).trim().split('\n');
    assert.ok(
      lines.every((l) => JSON.parse(l)),
      'the file is whole lines again after the compaction on open',
    );
  });

  it('forgets done ids once their message can no longer come back, and compacts', async (t) => {
    const dir = await tempDir(t);
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const j = Journal.open(dir, { clock });
    await j.received(message('short', clock.now() + 60_000));
    j.done('short');
    await j.received(message('long', clock.now() + 20 * DAY));
    j.done('long');
    j.close();
    clock.advance(8 * DAY);
    let again = Journal.open(dir, { clock });
    assert.equal(again.isDone('short'), false, 'kept 7 days (minimum), then forgotten');
    assert.equal(again.isDone('long'), true, 'kept until its message expires');
    again.close();
    clock.advance(13 * DAY);
    again = Journal.open(dir, { clock });
    t.after(() => again.close());
    assert.equal(again.isDone('long'), false);
    assert.equal((await readFile(join(dir, 'journal.jsonl'), 'utf8')).trim(), '');
  });

  it('keeps done ids packed (~16 bytes each) and still reads the one-line-per-id form of older files', async (t) => {
    const dir = await tempDir(t);
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const until = clock.now() + 7 * DAY;
    // An older compaction wrote one line per done id (its hash in hex).
    const old = Array.from(
      { length: 50_000 },
      (_, i) => `{"k":"done","h":"${hashHex(hash64(`old${i}`))}","until":${until}}`,
    ).join('\n');
    await writeFile(join(dir, 'journal.jsonl'), `${old}\n`);
    const j = Journal.open(dir, { clock });
    assert.equal(j.doneCount, 50_000);
    assert.equal(j.isDone('old0'), true);
    assert.equal(j.isDone('old49999'), true);
    assert.equal(j.isDone('new0'), false);
    j.close();
    // Opening compacted it into packed lines.
    const text = await readFile(join(dir, 'journal.jsonl'), 'utf8');
    const lines = text.trim().split('\n');
    assert.ok(lines.every((l) => JSON.parse(l).k === 'dones'));
    assert.ok(text.length < 50_000 * 17, `${text.length} bytes for 50,000 done ids`);
    const again = Journal.open(dir, { clock });
    t.after(() => again.close());
    assert.equal(again.doneCount, 50_000);
    assert.equal(again.isDone('old12345'), true);
    clock.advance(7 * DAY);
    assert.equal(again.isDone('old12345'), false, 'expired');
  });

  it('stays bounded: the file is rewritten as it grows', async (t) => {
    const dir = await tempDir(t);
    const j = Journal.open(dir, {});
    t.after(() => j.close());
    for (let i = 0; i < 30_000; i++) {
      const m = message(`m${i}`, Date.now() + DAY);
      void j.received(m);
      void j.handled(m.message_id, null);
      j.done(m.message_id);
      if (i % 1000 === 0) j.flush();
    }
    j.flush();
    assert.equal(j.doneCount, 30_000);
    assert.equal(j.unfinishedCount, 0);
    const lines = (await readFile(join(dir, 'journal.jsonl'), 'utf8')).trim().split('\n').length;
    assert.ok(lines < 30_000 * 3, `compacted (${lines} lines for 90 000 records)`);
  });

  it('is compacted by size: large messages do not let it grow past about twice what memory holds', async (t) => {
    const dir = await tempDir(t);
    const j = Journal.open(dir, {});
    t.after(() => j.close());
    const big = 'x'.repeat(100_000);
    let peak = 0;
    for (let i = 0; i < 300; i++) {
      const m = normalizeMessage({ ...message(`big${i}`, Date.now() + DAY), body: { big } });
      await j.received(m);
      j.done(m.message_id);
      j.flush();
      peak = Math.max(peak, (await stat(join(dir, 'journal.jsonl'))).size);
    }
    // 30 MB went through; nothing is live, so the file is rewritten every 8 MiB or so.
    assert.ok(peak < 12 * 1024 * 1024, `peak ${peak} bytes`);
    assert.equal(j.doneCount, 300);
  });

  it('one runner per identity: a live lock is refused, a stale one taken over', async (t) => {
    const dir = await tempDir(t);
    await writeFile(join(dir, 'lock'), `${process.ppid}\n`);
    assert.throws(
      () => Journal.open(dir, {}),
      (e: unknown) => e instanceof ConfigError && e.code === 'journal_locked' && /pid/.test(e.message),
    );
    await writeFile(join(dir, 'lock'), '99999999\n');
    const j = Journal.open(dir, {});
    j.close();
    await assert.rejects(stat(join(dir, 'lock')), 'lock released on close');
  });
  it('belongs to one relay: unfinished messages are refused to another relay and kept for theirs', async (t) => {
    const dir = await tempDir(t);
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const exp = clock.now() + 7 * DAY;
    const a = 'https://relay-a.example';
    const b = 'http://127.0.0.1:8080';
    const first = Journal.open(dir, { clock, relay: a });
    await first.received(message('m1', exp));
    await first.received(message('m2', exp));
    await first.handled('m2', { request: REPLY, outcome: 'ok' });
    first.close();
    const before = await readFile(join(dir, 'journal.jsonl'), 'utf8');

    assert.throws(
      () => Journal.open(dir, { clock, relay: b }),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.code === 'journal_other_relay' &&
        e.message.includes('2 unfinished messages') &&
        e.message.includes(a) &&
        e.message.includes(b) &&
        e.file === join(dir, 'journal.jsonl') &&
        String(e.hint).includes(`--relay ${a}`),
    );
    assert.equal(await readFile(join(dir, 'journal.jsonl'), 'utf8'), before, 'the file is left as it was');
    await assert.rejects(stat(join(dir, 'lock')), 'the lock is released');

    // The same relay, spelled with another case and a trailing slash: its messages resume.
    const again = Journal.open(dir, { clock, relay: 'HTTPS://Relay-A.example/' });
    assert.deepEqual(
      again.takeRecovered().map((e) => [e.id, e.state]),
      [
        ['m1', 'received'],
        ['m2', 'handled'],
      ],
    );
    again.done('m1');
    again.done('m2');
    again.close();

    // Nothing unfinished: the journal moves over to the other relay, and is then that relay's.
    const moved = Journal.open(dir, { clock, relay: b });
    await moved.received(message('m3', exp));
    moved.close();
    assert.throws(
      () => Journal.open(dir, { clock, relay: a }),
      (e: unknown) =>
        e instanceof ConfigError && e.code === 'journal_other_relay' && e.message.includes('1 unfinished message from'),
    );
    const unchecked = Journal.open(dir, { clock });
    t.after(() => unchecked.close());
    assert.deepEqual(
      unchecked.takeRecovered().map((e) => e.id),
      ['m3'],
      'opened without a relay: not checked',
    );
  });

  it('a journal from before relay records is taken by the first relay that opens it', async (t) => {
    const dir = await tempDir(t);
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const old = Journal.open(dir, { clock });
    await old.received(message('m1', clock.now() + DAY));
    old.close();
    const j = Journal.open(dir, { clock, relay: 'https://relay-a.example' });
    assert.deepEqual(
      j.takeRecovered().map((e) => e.id),
      ['m1'],
    );
    j.close();
    assert.throws(() => Journal.open(dir, { clock, relay: 'https://relay-b.example' }), /relay-a\.example/);
  });

  it('relayKey: scheme and host lowercased, trailing slashes dropped, a non-URL kept as it is', () => {
    assert.equal(relayKey('HTTPS://Relay.MrpHub.io/'), 'https://relay.mrphub.io');
    assert.equal(relayKey('http://127.0.0.1:80/base//'), 'http://127.0.0.1/base');
    assert.equal(relayKey('mrp dev relay (/tmp/x)'), 'mrp dev relay (/tmp/x)');
  });
});
