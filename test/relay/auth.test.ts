/**
 * Conformance: request authentication (§2.1–§2.3), common response rules (§3.2), health and
 * unauthenticated endpoints (§3.3), routing (§3.1).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { bodyHash, canonicalRequest, signRequest } from '../../src/protocol/signing.js';
import { newAgent, signed, startRelay } from '../helpers/relay.js';
import { Api, expectError, expectOk, KEY_RE, REQ_ID_RE, RFC3339_UTC_RE } from './_support.js';

const MIN = 60_000;

describe('§2.3 request authentication', () => {
  it('missing headers → 401 unauthorized (each of the three, and all)', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    const target = `/v1/agents/${kp.publicKey}`;
    expectError(await signed(url, undefined, 'GET', target), 401, 'unauthorized');
    const full = signRequest(kp, 'GET', target, '', Date.now());
    for (const drop of ['X-M2M-Public-Key', 'X-M2M-Timestamp', 'X-M2M-Signature'] as const) {
      const headers: Record<string, string> = { ...full };
      delete headers[drop];
      expectError(await signed(url, undefined, 'GET', target, undefined, { headers }), 401, 'unauthorized');
    }
    // No agent was created by the failed attempts.
    const other = newAgent();
    expectError(await new Api(url).get(other, target), 404, 'agent_not_found');
  });

  it('malformed headers → 401 unauthorized', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    const target = '/v1/messages';
    const good = signRequest(kp, 'GET', target, '', Date.now());
    const cases: Array<[string, Record<string, string>]> = [
      ['42-char key', { ...good, 'X-M2M-Public-Key': kp.publicKey.slice(1) }],
      ['key with bad alphabet', { ...good, 'X-M2M-Public-Key': `${kp.publicKey.slice(0, 42)}=` }],
      ['timestamp not RFC 3339', { ...good, 'X-M2M-Timestamp': 'yesterday' }],
      ['timestamp as unix seconds', { ...good, 'X-M2M-Timestamp': String(Math.floor(Date.now() / 1000)) }],
      ['signature too short', { ...good, 'X-M2M-Signature': 'abc' }],
      [
        'signature standard base64 with padding',
        { ...good, 'X-M2M-Signature': `${Buffer.alloc(64, 1).toString('base64')}` },
      ],
    ];
    for (const [name, headers] of cases) {
      const res = await signed(url, undefined, 'GET', target, undefined, { headers });
      assert.equal(res.status, 401, name);
      expectError(res, 401, 'unauthorized');
    }
  });

  it('timestamp outside ±5 minutes → 401 timestamp_expired; inside is accepted', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock });
    const kp = newAgent();
    const now = clock.now();
    expectError(
      await signed(url, kp, 'GET', '/v1/messages?limit=1', undefined, { at: now - 5 * MIN - 1000 }),
      401,
      'timestamp_expired',
    );
    expectError(
      await signed(url, kp, 'GET', '/v1/messages?limit=2', undefined, { at: now + 5 * MIN + 1000 }),
      401,
      'timestamp_expired',
    );
    expectOk(await signed(url, kp, 'GET', '/v1/messages?limit=3', undefined, { at: now - 5 * MIN + 1000 }));
    expectOk(await signed(url, kp, 'GET', '/v1/messages?limit=4', undefined, { at: now + 5 * MIN - 1000 }));
  });

  it('a custom timestampToleranceMs narrows the window', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock, timestampToleranceMs: 10_000 });
    const kp = newAgent();
    const now = clock.now();
    expectError(
      await signed(url, kp, 'GET', '/v1/messages?limit=1', undefined, { at: now - 30_000 }),
      401,
      'timestamp_expired',
    );
    expectError(
      await signed(url, kp, 'GET', '/v1/messages?limit=2', undefined, { at: now + 11_000 }),
      401,
      'timestamp_expired',
    );
    expectOk(await signed(url, kp, 'GET', '/v1/messages?limit=3', undefined, { at: now - 9_000 }));
    expectOk(await signed(url, kp, 'GET', '/v1/messages?limit=4', undefined, { at: now + 9_000 }));
  });

  it('the timestamp check comes before the signature check (step 2 before step 4)', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    const stale = signRequest(kp, 'GET', '/v1/messages', '', Date.now() - 10 * MIN);
    const headers = {
      ...stale,
      'X-M2M-Signature': signRequest(kp, 'GET', '/v1/other', '', Date.now())['X-M2M-Signature'],
    };
    expectError(await signed(url, undefined, 'GET', '/v1/messages', undefined, { headers }), 401, 'timestamp_expired');
  });

  it('accepts any RFC 3339 form of the timestamp (fractional seconds, numeric offset)', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    const d = new Date(Date.now() - 2000);
    const shifted = new Date(d.getTime() + 2 * 3600_000);
    const pad = (n: number, w = 2) => String(n).padStart(w, '0');
    const offsetForm =
      `${shifted.getUTCFullYear()}-${pad(shifted.getUTCMonth() + 1)}-${pad(shifted.getUTCDate())}T` +
      `${pad(shifted.getUTCHours())}:${pad(shifted.getUTCMinutes())}:${pad(shifted.getUTCSeconds())}.${pad(shifted.getUTCMilliseconds(), 3)}+02:00`;
    const fractional = d.toISOString(); // 2026-…T…:…:….123Z
    for (const [i, ts] of [offsetForm, fractional].entries()) {
      const target = `/v1/messages?limit=${10 + i}`;
      const headers = {
        'X-M2M-Public-Key': kp.publicKey,
        'X-M2M-Timestamp': ts,
        'X-M2M-Signature': kp.sign(canonicalRequest('GET', target, ts, bodyHash(''))),
      };
      expectOk(await signed(url, undefined, 'GET', target, undefined, { headers }));
    }
  });

  it('a signature that does not verify → 401 invalid_signature', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    const other = newAgent();
    const target = '/v1/messages';
    const good = signRequest(kp, 'GET', target, '', Date.now());
    // 86 base64url chars, 64 bytes, but not a signature by this key.
    const foreign = signRequest(other, 'GET', target, '', Date.now());
    expectError(
      await signed(url, undefined, 'GET', target, undefined, {
        headers: { ...good, 'X-M2M-Signature': foreign['X-M2M-Signature'] },
      }),
      401,
      'invalid_signature',
    );
    const flipped = good['X-M2M-Signature'].startsWith('A')
      ? `B${good['X-M2M-Signature'].slice(1)}`
      : `A${good['X-M2M-Signature'].slice(1)}`;
    expectError(
      await signed(url, undefined, 'GET', target, undefined, { headers: { ...good, 'X-M2M-Signature': flipped } }),
      401,
      'invalid_signature',
    );
    // A timestamp header that differs from the one signed.
    const later = signRequest(kp, 'GET', target, '', Date.now());
    expectError(
      await signed(url, undefined, 'GET', target, undefined, {
        headers: { ...later, 'X-M2M-Timestamp': new Date(Date.now() - 60_000).toISOString().replace(/\.\d{3}Z$/, 'Z') },
      }),
      401,
      'invalid_signature',
    );
  });

  it('signature over a different target, body or method → 401 invalid_signature', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    const b = newAgent();
    const body = { recipient_key: b.publicKey, body: { text: 'hi' } };
    // Different body.
    expectError(
      await signed(url, kp, 'POST', '/v1/messages', body, {
        signBody: JSON.stringify({ ...body, body: { text: 'bye' } }),
      }),
      401,
      'invalid_signature',
    );
    // Body signed with whitespace differences is a different body (raw bytes are hashed).
    expectError(
      await signed(url, kp, 'POST', '/v1/messages', body, { signBody: JSON.stringify(body, null, 1) }),
      401,
      'invalid_signature',
    );
    // Empty-body hash used for a request that has a body.
    expectError(await signed(url, kp, 'POST', '/v1/messages', body, { signBody: '' }), 401, 'invalid_signature');
    // Different target.
    expectError(
      await signed(url, kp, 'GET', '/v1/messages', undefined, { signTarget: `/v1/agents/${kp.publicKey}` }),
      401,
      'invalid_signature',
    );
    // Different method.
    const headers = { ...signRequest(kp, 'PUT', `/v1/agents/${kp.publicKey}`, '', Date.now()) };
    expectError(
      await signed(url, undefined, 'GET', `/v1/agents/${kp.publicKey}`, undefined, { headers }),
      401,
      'invalid_signature',
    );
    // Lower-case method in the canonical string is not the canonical form.
    const ts = new Date(Math.floor(Date.now() / 1000) * 1000).toISOString().replace('.000Z', 'Z');
    const lower = {
      'X-M2M-Public-Key': kp.publicKey,
      'X-M2M-Timestamp': ts,
      'X-M2M-Signature': kp.sign(`get\n/v1/messages\n${ts}\n${bodyHash('')}`),
    };
    expectError(
      await signed(url, undefined, 'GET', '/v1/messages', undefined, { headers: lower }),
      401,
      'invalid_signature',
    );
    // Sanity: the correct signature works.
    expectOk(await signed(url, kp, 'POST', '/v1/messages', body), 201);
  });

  it('verifies against the raw request target including the query string (no normalisation)', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    // Query string omitted from the signed target.
    expectError(
      await signed(url, kp, 'GET', '/v1/messages?limit=10', undefined, { signTarget: '/v1/messages' }),
      401,
      'invalid_signature',
    );
    // Different query value.
    expectError(
      await signed(url, kp, 'GET', '/v1/messages?limit=10', undefined, { signTarget: '/v1/messages?limit=11' }),
      401,
      'invalid_signature',
    );
    // Reordered parameters.
    expectError(
      await signed(url, kp, 'GET', '/v1/messages?limit=10&status=sent', undefined, {
        signTarget: '/v1/messages?status=sent&limit=10',
      }),
      401,
      'invalid_signature',
    );
    // Percent-encoding is not decoded before verification.
    expectError(
      await signed(url, kp, 'GET', '/v1/discover?name=a%2Db', undefined, { signTarget: '/v1/discover?name=a-b' }),
      401,
      'invalid_signature',
    );
    expectError(
      await signed(url, kp, 'GET', '/v1/discover?q=x%20y', undefined, { signTarget: '/v1/discover?q=x y' }),
      401,
      'invalid_signature',
    );
    // Scheme/host are not part of the canonical string.
    expectError(
      await signed(url, kp, 'GET', '/v1/messages?limit=12', undefined, { signTarget: `${url}/v1/messages?limit=12` }),
      401,
      'invalid_signature',
    );
    // Signing exactly what is sent works, with query, encoding and order as on the wire.
    expectOk(await signed(url, kp, 'GET', '/v1/messages?status=sent&limit=10'));
    expectOk(await signed(url, kp, 'GET', '/v1/discover?name=a%2Db'));
    expectOk(await signed(url, kp, 'GET', '/v1/discover?q=x%20y&limit=5'));
  });

  it('replaying the exact same headers → 409 replay_detected; a fresh signature works', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    const b = newAgent();
    const at = Date.now();
    const first = await signed(url, kp, 'GET', '/v1/messages?limit=10', undefined, { at });
    expectOk(first);
    expectError(await signed(url, kp, 'GET', '/v1/messages?limit=10', undefined, { at }), 409, 'replay_detected');
    // Fresh signature (new timestamp) for the same request.
    expectOk(await signed(url, kp, 'GET', '/v1/messages?limit=10', undefined, { at: at - 1000 }));
    // Replayed send is refused and does not create a second message.
    const body = { recipient_key: b.publicKey, body: { n: 1 } };
    expectOk(await signed(url, kp, 'POST', '/v1/messages', body, { at }), 201);
    expectError(await signed(url, kp, 'POST', '/v1/messages', body, { at }), 409, 'replay_detected');
    const poll = expectOk(await signed(url, b, 'GET', '/v1/messages'));
    assert.equal(poll.messages.length, 1);
    // Explicit headers sent twice: the second is a replay.
    const headers = { ...signRequest(kp, 'GET', '/v1/messages?limit=20', '', Date.now()) };
    expectOk(await signed(url, undefined, 'GET', '/v1/messages?limit=20', undefined, { headers }));
    const again = await signed(url, undefined, 'GET', '/v1/messages?limit=20', undefined, { headers });
    expectError(again, 409, 'replay_detected');
  });

  it('§2.3 order: a used signature over a DIFFERENT body is 401 invalid_signature (step 4), over the same body 409 (step 5)', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    const b = newAgent();
    const body = JSON.stringify({ recipient_key: b.publicKey, body: { n: 1 } });
    const headers = { ...signRequest(kp, 'POST', '/v1/messages', body, Date.now()) };
    expectOk(await signed(url, undefined, 'POST', '/v1/messages', body, { headers }), 201);
    const other = JSON.stringify({ recipient_key: b.publicKey, body: { n: 2 } });
    expectError(await signed(url, undefined, 'POST', '/v1/messages', other, { headers }), 401, 'invalid_signature');
    expectError(await signed(url, undefined, 'POST', '/v1/messages', body, { headers }), 409, 'replay_detected');
    // Neither stored a message.
    assert.equal(expectOk(await signed(url, b, 'GET', '/v1/messages')).messages.length, 1);
  });

  it('replay-cache entries outlive the tolerance window (kept ≥ 2× tolerance, across sweeps)', async (t) => {
    const clock = new ManualClock();
    const { url } = await startRelay(t, { clock, sweepIntervalMs: 10_000 });
    const kp = newAgent();
    const T = clock.now();
    // Signed 4m50s in the future: valid now, and still valid 9m30s from now.
    const at = T + 4 * MIN + 50_000;
    expectOk(await signed(url, kp, 'GET', '/v1/messages?limit=33', undefined, { at }));
    await clock.advanceAsync(9 * MIN + 30_000);
    expectError(await signed(url, kp, 'GET', '/v1/messages?limit=33', undefined, { at }), 409, 'replay_detected');
  });

  it('a request with a bad signature is not remembered: the properly signed request still works', async (t) => {
    const { url } = await startRelay(t);
    const kp = newAgent();
    const at = Date.now();
    expectError(
      await signed(url, kp, 'GET', '/v1/messages?limit=7', undefined, { at, signTarget: '/v1/messages?limit=8' }),
      401,
      'invalid_signature',
    );
    expectOk(await signed(url, kp, 'GET', '/v1/messages?limit=8', undefined, { at }));
  });

  it('the first signed request auto-creates the agent with the documented defaults', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    const b = newAgent();
    // B does not exist yet.
    expectError(await api.get(a, `/v1/agents/${b.publicKey}`), 404, 'agent_not_found');
    // Any signed request by B creates it (here: a poll).
    expectOk(await api.get(b, '/v1/messages'));
    const p = expectOk(await api.get(a, `/v1/agents/${b.publicKey}`));
    assert.equal(p.public_key, b.publicKey);
    assert.match(p.public_key, KEY_RE);
    assert.equal(p.display_name, null);
    assert.equal(p.status, 'active');
    assert.equal(p.visibility, 'private');
    assert.equal(p.inbox_policy, 'blocklist');
    assert.deepEqual(p.metadata, {});
    assert.deepEqual(p.capabilities, []);
    assert.match(p.created_at, RFC3339_UTC_RE);
    assert.match(p.last_active_at, RFC3339_UTC_RE);
    assert.deepEqual(Object.keys(p).sort(), [
      'capabilities',
      'created_at',
      'display_name',
      'inbox_policy',
      'last_active_at',
      'metadata',
      'public_key',
      'status',
      'visibility',
    ]);
    // Reading your own key always works, even the very first time.
    const c = newAgent();
    const own = expectOk(await api.get(c, `/v1/agents/${c.publicKey}`));
    assert.equal(own.public_key, c.publicKey);
  });

  it('a suspended caller gets 403 agent_suspended', async (t) => {
    const { url, relay } = await startRelay(t);
    const api = new Api(url);
    const a = newAgent();
    await api.touch(a);
    await relay.setAgentStatus(a.publicKey, 'suspended');
    expectError(await api.get(a, '/v1/messages'), 403, 'agent_suspended');
  });
});

describe('§3.3 health and unauthenticated endpoints', () => {
  it('the four health endpoints answer without auth', async (t) => {
    const { url } = await startRelay(t);
    const h = await signed(url, undefined, 'GET', '/v1/health');
    const health = expectOk(h);
    assert.ok(['ok', 'degraded'].includes(health.status));
    assert.equal(health.status, 'ok');
    assert.equal(typeof health.version, 'string');
    assert.match(health.timestamp, RFC3339_UTC_RE);

    assert.deepEqual(expectOk(await signed(url, undefined, 'GET', '/v1/health/ready')), { status: 'ok' });
    assert.deepEqual(expectOk(await signed(url, undefined, 'GET', '/v1/health/live')), { status: 'ok' });

    const d = expectOk(await signed(url, undefined, 'GET', '/v1/health/details'));
    assert.equal(d.status, 'ok');
    assert.equal(typeof d.version, 'string');
    assert.match(d.timestamp, RFC3339_UTC_RE);
    assert.equal(d.mode, 'embedded');
    assert.equal(d.components.database.status, 'ok');
    assert.equal(typeof d.components.database.latency_ms, 'number');
    assert.equal(typeof d.components.blob_store.status, 'string');
    assert.equal(d.components.websocket.status, 'ok');
    assert.equal(d.components.websocket.connections, 0);
  });

  it('GET /v1/openapi.json needs no auth and is an OpenAPI 3.1 document', async (t) => {
    const { url } = await startRelay(t);
    const doc = expectOk(await signed(url, undefined, 'GET', '/v1/openapi.json'));
    assert.match(String(doc.openapi), /^3\.1/);
    assert.equal(typeof doc.info, 'object');
    assert.equal(typeof doc.paths, 'object');
  });

  it('everything else requires the three headers', async (t) => {
    const { url } = await startRelay(t);
    const k = newAgent().publicKey;
    for (const [m, target] of [
      ['GET', `/v1/agents/${k}`],
      ['GET', `/v1/agents/${k}/capabilities`],
      ['GET', '/v1/discover'],
      ['GET', '/v1/capabilities'],
      ['GET', '/v1/messages'],
      ['POST', '/v1/messages'],
      ['GET', '/v1/messages/msg_1_000000000000'],
      ['GET', '/v1/messages/msg_1_000000000000/status'],
      ['GET', '/v1/messages/threads/t1'],
      ['GET', `/v1/agents/${k}/acl`],
      ['PUT', `/v1/agents/${k}/acl`],
      ['PATCH', `/v1/agents/${k}`],
      ['DELETE', `/v1/agents/${k}`],
    ] as const) {
      const res = await signed(
        url,
        undefined,
        m,
        target,
        m === 'POST' || m === 'PUT' || m === 'PATCH' ? {} : undefined,
      );
      assert.equal(res.status, 401, `${m} ${target}: ${res.text}`);
      expectError(res, 401, 'unauthorized');
    }
  });
});

describe('§3.1/§3.2 routing and response rules', () => {
  it('unknown route → 404 not_found (with or without auth)', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const kp = newAgent();
    expectError(await signed(url, undefined, 'GET', '/v1/nope'), 404, 'not_found');
    expectError(await api.get(kp, '/v1/nope'), 404, 'not_found');
    expectError(await api.get(kp, '/v2/messages'), 404, 'not_found');
    expectError(await signed(url, undefined, 'GET', '/'), 404, 'not_found');
  });

  it('wrong method on a known route → 405 with code bad_request', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const kp = newAgent();
    expectError(await api.put(kp, '/v1/messages', {}), 405, 'bad_request');
    expectError(await api.delete(kp, '/v1/discover'), 405, 'bad_request');
    expectError(await api.post(kp, `/v1/agents/${kp.publicKey}`, {}), 405, 'bad_request');
    expectError(await signed(url, undefined, 'POST', '/v1/health', {}), 405, 'bad_request');
  });

  it('every response carries X-Request-Id; JSON is application/json; charset=utf-8; request ids are unique', async (t) => {
    const { url } = await startRelay(t);
    const api = new Api(url);
    const kp = newAgent();
    const ids = new Set<string>();
    for (const res of [
      await api.get(kp, '/v1/messages'),
      await api.get(kp, `/v1/agents/${kp.publicKey}`),
      await signed(url, undefined, 'GET', '/v1/health'),
      await api.get(kp, '/v1/messages/msg_1_000000000000'),
    ]) {
      const id = res.headers.get('x-request-id') ?? '';
      assert.match(id, REQ_ID_RE);
      assert.match(res.headers.get('content-type') ?? '', /^application\/json; charset=utf-8$/i);
      ids.add(id);
    }
    assert.equal(ids.size, 4);
  });

  it('CORS preflight is answered permissively', async (t) => {
    const { url } = await startRelay(t);
    const res = await fetch(`${url}/v1/messages`, {
      method: 'OPTIONS',
      headers: {
        Origin: 'https://example.com',
        'Access-Control-Request-Method': 'POST',
        'Access-Control-Request-Headers': 'x-m2m-signature',
      },
    });
    assert.ok(res.status >= 200 && res.status < 300, String(res.status));
    assert.equal(res.headers.get('access-control-allow-origin'), '*');
    const allowed = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase();
    for (const h of ['content-type', 'x-m2m-public-key', 'x-m2m-timestamp', 'x-m2m-signature'])
      assert.ok(allowed.includes(h), allowed);
    const api = new Api(url);
    const r = await api.get(newAgent(), '/v1/messages');
    const exposed = (r.headers.get('access-control-expose-headers') ?? '').toLowerCase();
    for (const h of ['x-ratelimit-limit', 'x-ratelimit-remaining', 'x-ratelimit-reset', 'retry-after', 'x-request-id'])
      assert.ok(exposed.includes(h), exposed);
  });
});
