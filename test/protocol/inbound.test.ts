import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  elementSpans,
  identify,
  readMessagePage,
  readMessageText,
  readServerFrame,
  topLevelMemberSpan,
} from '../../src/protocol/inbound.js';

const KEY = 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ';
const deep = (n: number): string => '['.repeat(n) + ']'.repeat(n);
const msg = (id: string, body: string, extra = ''): string =>
  `{"message_id":"${id}","sender_key":"${KEY}","body":${body}${extra}}`;

describe('inbound messages', () => {
  it('splits an array into element spans, strings and nesting included', () => {
    const text = `{"messages": [ {"a":"x,]}"} , [1,[2]],"s" ,3 ]}`;
    const start = text.indexOf('[');
    const spans = elementSpans(text, start, text.lastIndexOf(']') + 1);
    assert.deepEqual(
      spans.map((s) => text.slice(s.start, s.end)),
      ['{"a":"x,]}"}', '[1,[2]]', '"s"', '3'],
    );
    assert.deepEqual(elementSpans('[]', 0, 2), []);
  });

  it('finds a top-level member, not a nested one of the same name', () => {
    const text = '{"a":{"messages":[9]},"s":"messages","messages":[1, {"messages":2}],"z":0}';
    const span = topLevelMemberSpan(text, 'messages')!;
    assert.equal(text.slice(span.start, span.end), '[1, {"messages":2}]');
    assert.equal(topLevelMemberSpan('{"x":1}', 'messages'), undefined);
  });

  it('identifies a message whose body is too deep to parse, without walking it', () => {
    const text = msg('m1', deep(100_000), ',"thread_id":"t-1","expires_at":"2030-01-01T00:00:00Z"');
    assert.deepEqual(identify(text), {
      message_id: 'm1',
      sender_key: KEY,
      thread_id: 't-1',
      expires_at: '2030-01-01T00:00:00Z',
    });
    const read = readMessageText(text);
    assert.equal(read.ok, false);
    assert.equal(!read.ok && read.rejected.identity?.message_id, 'm1');
    assert.match(!read.ok ? read.rejected.reason : '', /deeper than 128/);
  });

  it('a sender that is not a key cannot be answered; a missing or non-string id is unidentifiable', () => {
    assert.equal(identify('{"message_id":"m","sender_key":"nope"}')?.sender_key, null);
    assert.equal(identify('{"message_id":5,"sender_key":"x"}'), null);
    assert.equal(identify(`{"message_id":"${'x'.repeat(300)}"}`), null);
  });

  it('a body up to 128 deep is a message', () => {
    const read = readMessageText(msg('m', deep(128)));
    assert.equal(read.ok, true);
  });

  it('frames: too deep, malformed, unknown and fine', () => {
    const deepFrame = readServerFrame(`{"type":"message","message":${msg('m', deep(5000))}}`);
    assert.equal(deepFrame.kind, 'rejected');
    assert.equal(deepFrame.kind === 'rejected' && deepFrame.rejected.identity?.message_id, 'm');
    const noSender = readServerFrame('{"type":"message","message":{"message_id":"m2"}}');
    assert.equal(noSender.kind === 'rejected' && noSender.rejected.identity?.sender_key, null);
    assert.equal(readServerFrame('{"type":"message"}').kind, 'rejected');
    const ping = readServerFrame(`{"type":"ping","ts":${deep(6000)}}`);
    assert.equal(ping.kind === 'error' && ping.error.reason, 'too_deep');
    assert.equal(readServerFrame('nope').kind, 'error');
    const ok = readServerFrame(`{"type":"message","message":${msg('m3', '{"a":1}')}}`);
    assert.equal(ok.kind === 'frame' && ok.frame.type, 'message');
  });

  it('a page with hostile entries yields the others, with their sizes', () => {
    const good = msg('ok', '{"n":1}');
    const text = `{"messages":[${msg('deep', deep(100_000))},"junk",${good}],"has_more":true,"next_cursor":"c1","thread_id":"t"}`;
    const page = readMessagePage(text);
    assert.deepEqual(
      page.messages.map((m) => m.message_id),
      ['ok'],
    );
    assert.deepEqual(page.sizes, [good.length]);
    assert.deepEqual(
      page.rejected.map((r) => r.identity?.message_id ?? null),
      ['deep', null],
    );
    assert.equal(page.has_more, true);
    assert.equal(page.next_cursor, 'c1');
    assert.equal(page.extra['thread_id'], 't');
    const shallow = readMessagePage(`{"messages":[${good}, {"message_id":"x"}],"has_more":false,"next_cursor":null}`);
    assert.deepEqual(
      shallow.messages.map((m) => m.message_id),
      ['ok'],
    );
    assert.deepEqual(
      shallow.rejected.map((r) => [r.identity?.message_id, r.identity?.sender_key]),
      [['x', null]],
    );
    assert.throws(() => readMessagePage('{"nothing":1}'), /messages/);
  });
});
