/**
 * Property tests on the relay's input edges, seeded (test/protocol/_fuzz.ts): the HTTP body parser
 * answers every byte string with a value or a documented 400, and a live relay answers every
 * random frame (before and after auth) with documented frames or a documented close code, and
 * keeps serving.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ApiError } from '../../src/relay/errors.js';
import { parseJsonBody } from '../../src/relay/http.js';
import { newAgent, startRelay } from '../helpers/relay.js';
import { Gen, SEED } from '../protocol/_fuzz.js';
import { TextSocket } from './_raw.js';
import { Api, expectOk, freshAuthFrame } from './_support.js';

const BODY_REASONS = new Set(['empty', 'not_utf8', 'too_deep', 'not_json']);
const SERVER_TYPES = new Set(['auth_result', 'message', 'send_result', 'error', 'pong']);
/** Close codes the relay documents for bad input (README): 4000 malformed, 4001 auth, 1007 bad UTF-8, 1009 too big. */
const CLOSE_CODES = new Set([4000, 4001, 1007, 1009]);

describe('fuzz: relay input edges', () => {
  it('parseJsonBody: a value, or ApiError 400 bad_request with a documented reason', () => {
    const g = new Gen(SEED);
    for (let i = 0; i < 2000; i++) {
      const kind = g.int(4);
      const bytes =
        kind === 0
          ? g.bytes(48)
          : kind === 1
            ? Buffer.from(g.mutate(g.json(6)))
            : kind === 2
              ? Buffer.from(g.nested(g.int(400)))
              : Buffer.from(g.json(6));
      try {
        parseJsonBody(bytes);
      } catch (err) {
        assert.ok(err instanceof ApiError, `[FUZZ_SEED=${SEED} case ${i}] ${String(err)}`);
        assert.equal(err.status, 400);
        assert.equal(err.code, 'bad_request');
        assert.ok(BODY_REASONS.has(String(err.details?.['reason'])), String(err.details?.['reason']));
      }
    }
  });

  it('a live relay answers 400 random frames with documented frames or close codes, and keeps serving', async (t) => {
    const { url, wsUrl, logs } = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const g = new Gen(SEED + 1);
    const to = newAgent().publicKey;
    let socket: TextSocket | undefined;
    let closes = 0;
    for (let i = 0; i < 400; i++) {
      if (!socket) {
        socket = await TextSocket.open(t, wsUrl);
        if (g.chance(0.7)) {
          socket.send(JSON.stringify(freshAuthFrame(newAgent())));
          assert.match(await socket.next(), /"auth_result","status":"ok"/);
        }
      }
      const frames = [
        () => `{"type":"send","request_id":"r${i}","recipient_key":"${to}","body":${g.json(5)}}`,
        () => `{"type":"send","request_id":"n${i}","message":{"recipient_key":"${to}","body":${g.nested(g.int(300))}}}`,
        () => `{"type":"ping","ts":${g.json(3)}}`,
        () => `{"type":"ack","message_id":${g.json(2)}}`,
        () => `{"type":"${g.pick(['auth', 'pong', 'hello', ''])}",${g.json(2).replace(/^[[{]/, '"x":[')}}`,
        () => g.mutate(g.json(6)),
        () => g.bytes(40).toString('latin1'),
      ];
      const text = g.pick(frames)();
      socket.send(text);
      // A ping after it: every answer to `text` comes before the pong, or the connection closes.
      const marker = 1_000_000 + i;
      socket.send(`{"type":"ping","ts":${marker}}`);
      const current = socket;
      const closed = current.closed.then((c) => ({ closed: c.code }));
      for (;;) {
        const next = await Promise.race([current.next(10_000).then((f) => ({ frame: f })), closed]);
        if ('closed' in next) {
          assert.ok(
            CLOSE_CODES.has(next.closed),
            `[FUZZ_SEED=${SEED} frame ${i}] close ${next.closed} after ${text.slice(0, 120)}`,
          );
          closes++;
          socket = undefined;
          break;
        }
        const frame = JSON.parse(next.frame) as {
          type: string;
          ts?: number;
          status?: string;
          error?: { code: string };
        };
        assert.ok(SERVER_TYPES.has(frame.type), next.frame);
        if (frame.type === 'pong' && frame.ts === marker) break;
        if (frame.type === 'error' || frame.status === 'error') assert.equal(typeof frame.error?.code, 'string');
      }
    }
    assert.ok(closes > 0 && closes < 400);
    assert.ok(
      !logs.some((e) => e.msg === 'internal_error'),
      JSON.stringify(logs.find((e) => e.msg === 'internal_error')),
    );
    expectOk(await new Api(url).get(newAgent(), '/v1/agents/me'));
  });
});
