import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeUtf8, JsonInputError, jsonDepth, memberSpans, parseJson } from '../../src/protocol/json.js';

describe('bounded JSON', () => {
  it('measures depth on the text, ignoring brackets inside strings', () => {
    assert.equal(jsonDepth('1'), 0);
    assert.equal(jsonDepth('{"a":[1,{"b":"[[[[{{"}]}'), 3);
    assert.equal(jsonDepth('"\\"[["'), 0);
    assert.equal(jsonDepth(`${'['.repeat(100_000)}${']'.repeat(100_000)}`), 100_000);
  });

  it('refuses nesting over the limit before parsing, and bad JSON, with a stable reason', () => {
    assert.throws(
      () => parseJson(`${'['.repeat(129)}${']'.repeat(129)}`),
      (e: unknown) => e instanceof JsonInputError && e.reason === 'too_deep',
    );
    assert.deepEqual(parseJson(`${'['.repeat(128)}${']'.repeat(128)}`, 128) !== undefined, true);
    assert.throws(
      () => parseJson('{"a":'),
      (e: unknown) => e instanceof JsonInputError && e.reason === 'not_json',
    );
  });

  it('finds the verbatim source text of members, last duplicate wins, at any depth', () => {
    const text =
      '{"type":"send","message":{"to":"x","body":{"n":12345678901234567890,"x":1e999,"d":1,"d":2}},"body":[1, 2 ,3] }';
    const spans = memberSpans(text, [['body'], ['message', 'body'], ['type']]);
    const get = (k: string) => {
      const s = spans.get(k);
      return s && text.slice(s.start, s.end);
    };
    assert.equal(get('message.body'), '{"n":12345678901234567890,"x":1e999,"d":1,"d":2}');
    assert.equal(get('body'), '[1, 2 ,3]');
    assert.equal(get('type'), '"send"');
    const dup = '{"body":1,"body":"two"}';
    const s = memberSpans(dup, [['body']]).get('body');
    assert.equal(s && dup.slice(s.start, s.end), '"two"');
    const deep = `{"message":{"message_id":"m1","body":${'['.repeat(50_000)}${']'.repeat(50_000)},"sender_key":"k"}}`;
    const ds = memberSpans(deep, [
      ['message', 'message_id'],
      ['message', 'sender_key'],
    ]);
    assert.equal(ds.size, 2);
    const b = memberSpans('{"body": true }', [['body']]).get('body');
    assert.deepEqual(b, { start: 9, end: 13 });
  });

  it('decodes strict UTF-8 only', () => {
    assert.equal(decodeUtf8(Buffer.from('héllo')), 'héllo');
    assert.throws(
      () => decodeUtf8(Buffer.from([0x7b, 0xff, 0x7d])),
      (e: unknown) => e instanceof JsonInputError && e.reason === 'not_utf8',
    );
  });
});
