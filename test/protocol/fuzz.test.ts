/**
 * Property tests over the parsers that meet outside input first: random JSON, random nesting,
 * sizes and bytes, seeded (see test/protocol/_fuzz.ts). Nothing may escape but the documented typed
 * error with a stable reason, and what is accepted must be what was sent.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LIMITS } from '../../src/protocol/constants.js';
import { FrameParseError, parseClientFrame } from '../../src/protocol/frames.js';
import {
  decodeUtf8,
  JsonInputError,
  jsonDepth,
  memberSpans,
  parseJson,
  scanRootMember,
} from '../../src/protocol/json.js';
import {
  ValidationError,
  validateAclPut,
  validateProfilePatch,
  validateSendRequest,
} from '../../src/protocol/validate.js';
import { Gen, SEED } from './_fuzz.js';

const KEY = '5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA';
const FRAME_REASONS = new Set(['not_json', 'not_object', 'unknown_type', 'invalid', 'too_deep']);
const FRAME_TYPES = new Set(['auth', 'ack', 'ping', 'pong', 'send']);

/** Runs `n` cases; a failure names the seed and the case. */
function cases(name: string, n: number, body: (g: Gen, i: number) => void): void {
  const g = new Gen(SEED ^ [...name].reduce((h, c) => Math.imul(h, 31) + c.charCodeAt(0), 7));
  for (let i = 0; i < n; i++) {
    try {
      body(g, i);
    } catch (err) {
      (err as Error).message = `[FUZZ_SEED=${SEED} ${name} case ${i}] ${(err as Error).message}`;
      throw err;
    }
  }
}

/** A frame-ish text: a valid frame, a random JSON value, a broken one, or very deep. */
function frameText(g: Gen): string {
  const type = g.pick(['auth', 'ack', 'ping', 'pong', 'send', 'subscribe', '']);
  const body = g.chance(0.1) ? g.nested(100 + g.int(400)) : g.json(6);
  const choices = [
    () =>
      `{"type":"${type}","request_id":${g.pick(['"r1"', '7', 'null', '{}'])},"recipient_key":"${KEY}","body":${body}}`,
    () =>
      `{"type":"send","message":{"recipient_key":"${g.pick([KEY, 'short', 'A'.repeat(43)])}","body":${body}},"request_id":"n"}`,
    () => `{"type":"ping","ts":${g.json(4)}}`,
    () => `{"type":"auth","public_key":${g.json(1)},"timestamp":${g.json(1)},"signature":${g.json(1)}}`,
    () => g.json(8),
    () => g.nested(g.int(3000)),
  ];
  const text = g.pick(choices)();
  return g.chance(0.3) ? g.mutate(text) : text;
}

describe('fuzz: protocol parsers', () => {
  it('parseClientFrame: a known frame, or FrameParseError with a documented reason; send bodies are the exact text', () => {
    cases('frames', 1500, (g) => {
      const text = frameText(g);
      let frame: ReturnType<typeof parseClientFrame>;
      try {
        frame = parseClientFrame(text, { maxBodyBytes: 4096 });
      } catch (err) {
        assert.ok(err instanceof FrameParseError, `not a FrameParseError: ${String(err)} for ${text.slice(0, 200)}`);
        assert.ok(FRAME_REASONS.has(err.reason), err.reason);
        assert.equal(err.code, 'invalid_frame');
        if (err.validation) assert.ok([400, 413, 422].includes(err.validation.status));
        return;
      }
      assert.ok(FRAME_TYPES.has(frame.type), frame.type);
      assert.ok(jsonDepth(text) <= LIMITS.maxJsonDepth);
      if (frame.type === 'send' && frame.message.body_text !== undefined) {
        assert.ok(text.includes(frame.message.body_text));
        assert.ok(Buffer.byteLength(frame.message.body_text) <= 4096);
        assert.deepEqual(JSON.parse(frame.message.body_text), frame.message.body);
      }
      if (frame.type === 'ping' && frame.ts_text !== undefined) assert.deepEqual(JSON.parse(frame.ts_text), frame.ts);
    });
  });

  it('parseJson: a value at most 128 deep, or JsonInputError not_json / too_deep', () => {
    cases('json', 1500, (g) => {
      const text = g.chance(0.5)
        ? g.mutate(g.json(10))
        : g.chance(0.5)
          ? g.nested(g.int(400))
          : g.bytes(64).toString('latin1');
      try {
        parseJson(text);
        assert.ok(jsonDepth(text) <= LIMITS.maxJsonDepth);
      } catch (err) {
        assert.ok(err instanceof JsonInputError, String(err));
        assert.ok(err.reason === 'not_json' || err.reason === 'too_deep');
      }
    });
  });

  it('decodeUtf8: exact round trip, or JsonInputError not_utf8', () => {
    cases('utf8', 3000, (g) => {
      const bytes = g.chance(0.5) ? g.bytes(32) : Buffer.from(g.json(3));
      try {
        assert.deepEqual(Buffer.from(decodeUtf8(bytes)), bytes);
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        assert.ok(err instanceof JsonInputError && err.reason === 'not_utf8', String(err));
      }
    });
  });

  it('scanRootMember: the depth jsonDepth finds on any text, and on valid JSON the span memberSpans finds; never throws', () => {
    cases('root-member', 3000, (g) => {
      const text = g.chance(0.1) ? g.nested(100 + g.int(200)) : g.chance(0.3) ? g.mutate(g.json(7)) : g.json(7);
      for (const name of ['body', 'type', 'message']) {
        const stop = g.chance(0.5) ? 3 + g.int(6) : Number.POSITIVE_INFINITY;
        const scan = scanRootMember(text, name, stop);
        assert.equal(scan.depth, jsonDepth(text, stop), text);
        if (scan.span)
          assert.ok(scan.span.start >= 0 && scan.span.start <= scan.span.end && scan.span.end <= text.length);
        if (scan.depth > stop || !valid(text)) continue;
        assert.deepEqual(scan.span, memberSpans(text, [[name]]).get(name), `${name} in ${text}`);
      }
    });
    // Escaped, duplicated and nested look-alike keys: the last root member whose decoded name matches.
    const text = '{"body":1,"x":{"body":2},"bo\\u0064y":[3,{"body":4}],"b\\"ody":5, "body" : "6" ,"tail":{}}';
    assert.equal(text.slice(...spanOf(scanRootMember(text, 'body').span)), '"6"');
    const escaped = '{"bo\\u0064y":[3,{"body":4}],"body2":0}';
    assert.equal(text.length > 0 && escaped.slice(...spanOf(scanRootMember(escaped, 'body').span)), '[3,{"body":4}]');
    assert.equal(scanRootMember('[{"body":1}]', 'body').span, undefined, 'only the root object counts');
    assert.deepEqual(scanRootMember('[[[[1]]]]', 'body', 2), { depth: 3, span: undefined });
  });

  it('memberSpans: never throws on any text; on valid JSON the span is the member JSON.parse sees', () => {
    cases('spans', 1500, (g) => {
      const text = g.chance(0.3) ? g.mutate(g.json(7)) : g.json(7);
      const spans = memberSpans(text, [['body'], ['message', 'body'], ['type']]);
      for (const { start, end } of spans.values()) assert.ok(start >= 0 && end <= text.length && start <= end);
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        return;
      }
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return;
      const v = value as Record<string, unknown>;
      for (const [key, get] of [
        ['body', () => v['body']],
        ['type', () => v['type']],
        [
          'message.body',
          () =>
            typeof v['message'] === 'object' && v['message'] !== null && !Array.isArray(v['message'])
              ? (v['message'] as Record<string, unknown>)['body']
              : undefined,
        ],
      ] as const) {
        const expected = get();
        const span = spans.get(key);
        if (expected === undefined) continue;
        assert.ok(span, `${key} not found in ${text}`);
        assert.deepEqual(JSON.parse(text.slice(span.start, span.end)), expected, `${key} in ${text}`);
      }
    });
  });

  it('body validators: a normalised value, or ValidationError (400/413/422) naming a field', () => {
    cases('validate', 1500, (g) => {
      let input: unknown;
      try {
        input = parseJson(g.json(5));
      } catch {
        return;
      }
      if (g.chance(0.5) && typeof input === 'object' && input !== null && !Array.isArray(input)) {
        (input as Record<string, unknown>)['recipient_key'] = g.pick([KEY, 'x']);
      }
      for (const validate of [
        () => validateSendRequest(input, 1024),
        () => validateProfilePatch(input),
        () => validateAclPut(input),
      ]) {
        try {
          validate();
        } catch (err) {
          assert.ok(err instanceof ValidationError, String(err));
          assert.ok([400, 413, 422].includes(err.status));
          assert.equal(typeof err.field, 'string');
        }
      }
    });
  });
});

function spanOf(span: { start: number; end: number } | undefined): [number, number] {
  assert.ok(span, 'a span');
  return [span.start, span.end];
}

function valid(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}
