import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { PLAIN_STYLE } from '../../src/cli/output.js';
import { traceCategories } from '../../src/cli/trace.js';
import { type HttpTrace, RelayClient } from '../../src/client/http.js';
import { ManualClock } from '../../src/core/clock.js';
import { Keypair } from '../../src/protocol/signing.js';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

async function agent(t: import('node:test').TestContext, env: Record<string, string> = {}) {
  const relay = await startRelay(t);
  const home = await tempDir(t);
  const deps = (extra: Record<string, string> = {}) =>
    testDeps({ home, env: { MRP_RELAY_URL: relay.url, ...env, ...extra } });
  const gen = await runCli(['keygen', '--json'], deps());
  const me = JSON.parse(gen.stdout).public_key as string;
  const seed = await readFile(join(home, 'agent.key'));
  return { relay, home, deps, me, seed };
}

/** Nothing secret: no seed in any encoding, no signature header or value. */
function assertNoSecrets(text: string, seed: Buffer): void {
  for (const form of [seed.toString('hex'), seed.toString('base64url'), seed.toString('base64')])
    assert.ok(!text.includes(form), 'seed leaked');
  assert.doesNotMatch(text, /x-signature|signature"?\s*[:=]/i);
}

describe('--debug / MRP_DEBUG tracing', () => {
  it('chooses categories: --debug is all, MRP_DEBUG names them', () => {
    assert.deepEqual([...traceCategories(true, {})], ['http', 'ws']);
    assert.deepEqual([...traceCategories(false, {})], []);
    assert.deepEqual([...traceCategories(false, { MRP_DEBUG: 'ws' })], ['ws']);
    assert.deepEqual([...traceCategories(false, { MRP_DEBUG: 'http, ws' })], ['http', 'ws']);
    assert.deepEqual([...traceCategories(false, { MRP_DEBUG: '1' })], ['http', 'ws']);
    assert.deepEqual([...traceCategories(false, { MRP_DEBUG: '0' })], []);
  });

  it('prints each HTTP request (method, path, status, ms, request id) on stderr; stdout stays clean', async (t) => {
    const { deps, me, seed } = await agent(t);
    const res = await runCli(['send', me, 'secret body text', '--debug'], deps());
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout.trim(), /^[\w-]+$/, 'stdout: only the message id');
    const line = res.stderr.split('\n').find((l) => l.startsWith('debug http POST /v1/messages'));
    assert.ok(line, res.stderr);
    assert.match(line, /^debug http POST \/v1\/messages → 201 \d+(\.\d)? ms {2}req_\S+$/);
    assert.ok(!res.stderr.includes('secret body text'), 'no bodies without --log-payloads');
    assertNoSecrets(res.stderr, seed);

    const payloads = await runCli(['send', me, 'visible body', '--debug', '--log-payloads'], deps());
    assert.match(payloads.stderr, /^ {2}> \{"recipient_key":.*"visible body"/m);
    assert.match(payloads.stderr, /^ {2}< \{"message_id":/m);
    assertNoSecrets(payloads.stderr, seed);
  });

  it('MRP_DEBUG=ws shows WebSocket frame types by direction, never the auth frame text', async (t) => {
    const { deps, me, relay, seed } = await agent(t);
    const peer = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    await peer.send({ recipient_key: me, body: { text: 'pushed body' } });
    const res = await runCli(['recv', '--no-ack', '--log-payloads'], deps({ MRP_DEBUG: 'ws' }));
    assert.equal(res.code, 0, res.stderr);
    const lines = res.stderr.split('\n').filter((l) => l.startsWith('debug '));
    assert.ok(
      lines.every((l) => l.startsWith('debug ws ')),
      'only ws with MRP_DEBUG=ws',
    );
    assert.match(lines[0]!, /^debug ws → auth {2}\d+ B$/);
    assert.ok(
      lines.some((l) => /^debug ws ← auth_result {2}\d+ B$/.test(l)),
      res.stderr,
    );
    assert.ok(
      lines.some((l) => /^debug ws ← message {2}\d+ B$/.test(l)),
      res.stderr,
    );
    assert.match(res.stderr, /"pushed body"/, 'frame bodies with --log-payloads');
    assert.ok(!res.stderr.includes('"type":"auth"'), 'the auth frame text is never shown');
    assertNoSecrets(res.stderr, seed);
  });

  it('under --json, trace lines are JSON objects on stderr', async (t) => {
    const { deps, me } = await agent(t);
    const res = await runCli(['send', me, 'hi', '--json', '--debug'], deps());
    assert.equal(res.code, 0, res.stderr);
    const traces = res.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const post = traces.find((e) => e.debug === 'http' && e.method === 'POST');
    assert.equal(post.target, '/v1/messages');
    assert.equal(post.status, 201);
    assert.equal(post.attempt, 1);
    assert.match(post.request_id, /^req_/);
    assert.equal(typeof post.ms, 'number');
    assert.equal(post.request_body, undefined);
  });

  it('the client reports every attempt of a retried request, with its number', async () => {
    const clock = new ManualClock();
    const events: HttpTrace[] = [];
    let calls = 0;
    const fetchStub = (async () => {
      calls++;
      return calls === 1
        ? new Response(JSON.stringify({ error: { code: 'internal_error', message: 'boom', request_id: 'req_1' } }), {
            status: 503,
            headers: { 'x-request-id': 'req_1' },
          })
        : new Response(JSON.stringify({ public_key: 'k' }), { status: 200, headers: { 'x-request-id': 'req_2' } });
    }) as typeof fetch;
    const client = new RelayClient({
      relayUrl: 'http://relay.test',
      keypair: Keypair.generate(),
      clock,
      fetch: fetchStub,
      trace: (e) => events.push(e),
    });
    const got = client.getAgent('k');
    await clock.advanceAsync(5000);
    await got;
    assert.deepEqual(
      events.map((e) => [e.method, e.target, e.status, e.attempt, e.requestId, e.error]),
      [
        ['GET', '/v1/agents/k', 503, 1, 'req_1', 'internal_error'],
        ['GET', '/v1/agents/k', 200, 2, 'req_2', undefined],
      ],
    );
    const line = (await import('../../src/cli/trace.js')).createTracers;
    const out: string[] = [];
    line({
      categories: new Set(['http']),
      stderr: { write: (s: string) => out.push(s) },
      json: false,
      payloads: false,
      style: PLAIN_STYLE,
      now: () => 0,
    }).http!(events[1]!);
    assert.match(out[0]!, /^debug http GET \/v1\/agents\/k → 200 \d+(\.\d)? ms {2}retry 1 {2}req_2\n$/);
  });
});

describe('trace lines on a terminal', () => {
  it('escape what a relay chose: frame types, codes and payloads, request ids, error texts', async () => {
    const { createTracers } = await import('../../src/cli/trace.js');
    const EVIL = '\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202e';
    let text = '';
    const tracers = createTracers({
      categories: new Set(['http', 'ws']),
      stderr: {
        write: (s: string) => {
          text += s;
          return true;
        },
        isTTY: true,
      },
      json: false,
      payloads: true,
      style: PLAIN_STYLE,
      now: () => 0,
    });
    tracers.ws!({ direction: 'in', type: `t${EVIL}`, bytes: 9, code: `c${EVIL}`, text: `{"x":"${EVIL}"}` });
    tracers.http!({
      method: 'GET',
      target: '/v1/x',
      status: 400,
      ms: 1,
      attempt: 1,
      requestId: `r${EVIL}`,
      error: `e${EVIL}`,
      response: `not json ${EVIL}`,
    } as HttpTrace);
    tracers.http!({ method: 'GET', target: '/v1/x', ms: 1, attempt: 1, error: `refused${EVIL}` } as HttpTrace);
    assert.doesNotMatch(text, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202e]/, text);
    for (const part of ['t\\x1b]0;pwned', 'c\\x1b]0;pwned', 'r\\x1b]0;pwned', 'e\\x1b]0;pwned', 'refused\\x1b]0;pwned'])
      assert.ok(text.includes(part), part);
  });
});
