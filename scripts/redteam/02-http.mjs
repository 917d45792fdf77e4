// Item 1 (HTTP): hostile bodies on every route, deep values in every field, huge strings, odd
// numbers, invalid UTF-8, odd cursors, discover with thousands of params, long URLs, headers,
// percent-encoding. Flags any 5xx (other than 503 busy) or a dead relay.
// Usage: node 02-http.mjs
import { startRelay, keypair, req, deep, deepObj, health, sleep, rawSocket, b64u } from './lib.mjs';

const relay = await startRelay('/tmp/rt/h02-' + process.pid);
const base = relay.url;
const me = keypair();
const peer = keypair();
const bad = [];
let n = 0;
const seen = {};
async function call(name, method, target, body, { kp = me, headers, expect } = {}) {
  n++;
  const r = await req(base, method, target, { body, kp, headers });
  seen[r.status] = (seen[r.status] || 0) + 1;
  let ok = r.status > 0 && (r.status < 500 || r.status === 503) && !(r.status === 503 && !/too_many_uploads|busy/.test(r.text));
  if (expect) ok = ok && expect(r);
  if (!relay.alive) { console.log('RELAY DEAD after', name); console.log(relay.log().slice(-3000)); process.exit(1); }
  if (!ok) { bad.push(`${name}: ${r.status} ${r.text.slice(0, 200)}`); console.log(`FAIL ${name}: ${r.status} ${r.text.slice(0, 200)}`); }
  return r;
}

// make peer exist, public, with a capability
await call('setup peer', 'PATCH', `/v1/agents/${peer.pub}`, JSON.stringify({ visibility: 'public', display_name: 'p', capabilities: [{ name: 'x', tags: ['abc'] }] }), { kp: peer });
await call('setup me', 'PATCH', `/v1/agents/${me.pub}`, JSON.stringify({ inbox_policy: 'open' }));

const DEEP = [129, 1e4, 1e5, 1e6];
const vals = [];
for (const d of DEEP) { vals.push([`arr${d}`, deep(d)]); if (d <= 1e5) vals.push([`obj${d}`, deepObj(d)]); }
vals.push(['str1.9M', JSON.stringify('x'.repeat(1.9 * 1048576))]);
for (const v of ['1e999', '-1e999', '12345678901234567890', '1e-400', '-0', 'null', 'true', '[]', '{}', '"\\ud800"', '"\\u0000"', '"\u001b[2J"']) vals.push([`num/lit ${v}`, v]);

const bodies = {
  'POST /v1/messages': { recipient_key: peer.pub, body: { t: 1 }, content_type: 'application/json', thread_id: 't1', in_reply_to: 'm1', expires_in: 60, metadata: {}, attachments: [] },
  [`PATCH /v1/agents/${me.pub}`]: { display_name: 'n', visibility: 'public', inbox_policy: 'open', metadata: { a: 'b' }, capabilities: [{ name: 'c', description: 'd', tags: ['abc'], input_schema: { type: 'object' }, version: '1' }] },
  [`PUT /v1/agents/${me.pub}/acl`]: { peer_key: peer.pub, entry_type: 'block' },
  [`PUT /v1/agents/${me.pub}/webhook`]: { url: 'http://x', secret: 's' },
};
function paths(obj, prefix = []) {
  const out = [];
  for (const [k, v] of Object.entries(obj)) {
    out.push([...prefix, k]);
    if (v && typeof v === 'object') out.push(...paths(v, [...prefix, k]));
  }
  return out;
}
function withValue(obj, path, text) {
  const copy = JSON.parse(JSON.stringify(obj));
  let o = copy;
  for (const k of path.slice(0, -1)) o = o[k];
  o[path.at(-1)] = '@@M@@';
  return JSON.stringify(copy).replace('"@@M@@"', () => text);
}
for (const [route, obj] of Object.entries(bodies)) {
  const [method, target] = route.split(' ');
  for (const path of paths(obj)) {
    for (const [vn, v] of vals) {
      const text = withValue(obj, path, v);
      if (text.length > 2.2 * 1048576 && vn !== 'str1.9M') continue;
      const r = await call(`${route} ${path.join('.')}=${vn}`, method, target, text, {
        expect: (r) => !(vn.startsWith('arr') || vn.startsWith('obj')) || r.status === 400 || r.status === 413 || (route.includes('webhook') && r.status === 404),
      });
      if (method === 'POST' && path.join('.') === 'body' && r.status === 201 && vn.startsWith('num')) {
        // verbatim check: fetch it back
        const id = JSON.parse(r.text).message_id;
        const g = await req(base, 'GET', `/v1/messages/${id}`, { kp: me });
        const m = g.text.match(/"body":(.*?),"attachments"/s);
        if (!m || m[1] !== v) { bad.push(`verbatim body ${vn}: got ${m?.[1]?.slice(0, 60)}`); console.log(`FAIL verbatim ${vn}: ${m?.[1]}`); }
      }
      await sleep(2);
    }
  }
}
// Whole-body oddities on every route with a body, and bodies on GET/DELETE routes
const routes = ['GET /v1/agents/me', `PATCH /v1/agents/${me.pub}`, `DELETE /v1/agents/${keypair().pub}`, `GET /v1/agents/${peer.pub}/capabilities`, `GET /v1/agents/${me.pub}/acl`, `PUT /v1/agents/${me.pub}/acl`, `GET /v1/agents/${me.pub}/acl/${peer.pub}`, `DELETE /v1/agents/${me.pub}/acl/${peer.pub}`, 'GET /v1/discover', 'GET /v1/capabilities', 'POST /v1/messages', 'GET /v1/messages', 'GET /v1/messages/msg_1_x', 'GET /v1/messages/msg_1_x/status', 'GET /v1/messages/threads/t1', 'POST /v1/blobs', `PUT /v1/agents/${me.pub}/webhook`, 'GET /v1/health', 'GET /v1/health/ready', 'GET /v1/openapi.json', 'GET /v1/ws', 'GET /v1/nope'];
const whole = [
  ['invalid utf8', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])],
  ['overlong utf8', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc0, 0xaf, 0x22, 0x7d])],
  ['surrogate utf8', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xed, 0xa0, 0x80, 0x22, 0x7d])],
  ['BOM+json', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('{}')])],
  ['deep arr 1e6', deep(1e6)],
  ['deep obj 3e5', deepObj(3e5)],
  ['2.5MB', 'x'.repeat(2.5 * 1048576)],
  ['not json', '{{{'],
  ['dup keys + proto', '{"__proto__":{"x":1},"constructor":{"prototype":{"y":1}},"recipient_key":1,"recipient_key":"' + peer.pub + '","body":1}'],
  ['empty', ''],
];
for (const route of routes) {
  const [method, target] = route.split(' ');
  for (const [wn, w] of whole) {
    await call(`${route} whole=${wn}`, method, target, w);
  }
}
// verbatim: duplicate keys and invalid utf8 in body
{
  const text = `{"recipient_key":"${peer.pub}","body":{"a":1,"a":2,"n":12345678901234567890,"x":1e999}}`;
  const r = await call('verbatim dup', 'POST', '/v1/messages', text);
  const g = await req(base, 'GET', `/v1/messages/${JSON.parse(r.text).message_id}`, { kp: me });
  if (!g.text.includes('{"a":1,"a":2,"n":12345678901234567890,"x":1e999}')) { bad.push('verbatim dup: ' + g.text.slice(0, 300)); console.log('FAIL verbatim dup', g.text.slice(0, 300)); }
}
// cursors
for (const c of ['{"t":1e999,"k":"x"}', '{"t":-1e999,"k":"' + 'x'.repeat(5000) + '"}', '{"i":1e999}', '{"i":-1e999}', '{"i":1e308}', '{"t":1e308,"id":"x"}', '{"t":1,"id":' + '"' + 'y'.repeat(100000) + '"}', deep(200), '{"i":"1"}', '{"k":[],"t":[]}']) {
  const cur = b64u(Buffer.from(c));
  for (const p of ['/v1/discover', `/v1/agents/${me.pub}/acl`, '/v1/messages', '/v1/messages?status=delivered', '/v1/messages/threads/t1']) {
    const t = p + (p.includes('?') ? '&' : '?') + 'cursor=' + cur;
    if (t.length > 16000) continue;
    await call(`cursor ${c.slice(0, 30)} on ${p}`, 'GET', t);
  }
}
// query strings
const qs = {
  'tags 5000 distinct': Array.from({ length: 5000 }, (_, i) => `tag=t${i}x`).join('&'),
  'tags 5000 same': Array.from({ length: 5000 }, () => 'tag=abc').join('&'),
  'q 5000 params': Array.from({ length: 5000 }, (_, i) => `q=w${i}`).join('&'),
  'junk 8000 params': Array.from({ length: 8000 }, (_, i) => `z${i}=1`).join('&'),
  'q 128 words': 'q=' + Array.from({ length: 128 }, () => 'a').join('+'),
  'tag_prefix long': 'tag_prefix=' + 'a'.repeat(65),
  'active_since odd': 'active_since=%2B275760-09-13T00:00:00Z',
  'active_since offset 99': 'active_since=2026-01-01T00:00:00%2B99:99',
  'active_since frac 1000': 'active_since=2026-01-01T00:00:00.' + '9'.repeat(1000) + 'Z',
  'limit huge': 'limit=' + '9'.repeat(400),
  'limit -0': 'limit=-0',
  'bad percent': 'q=%ZZ%&tag=%F0%9F',
  'nul': 'q=%00&name=%00',
  'name 256 emoji': 'name=' + encodeURIComponent('😀'.repeat(200)),
};
for (const [k, v] of Object.entries(qs)) {
  for (const p of ['/v1/discover', '/v1/messages', '/v1/capabilities', `/v1/agents/${me.pub}/acl`]) await call(`query ${k} on ${p}`, 'GET', `${p}?${v}`);
}
for (const p of ['/v1/messages?since=2026-01-01T00:00:00%2B99:99', '/v1/messages?wait=30000000000000000000', '/v1/messages?status=sent&limit=100&wait=0&sender_key=AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', '/v1/messages?since=0000-00-00T00:00:00Z', '/v1/messages?since=2026-02-31T25:61:61Z']) await call(`query ${p}`, 'GET', p);
// paths
for (const p of ['/v1/agents/%ZZ', '/v1/agents/%00', '/v1/messages/threads/%F0%9F', '/v1/messages/threads/' + 'a'.repeat(12000), '/v1/messages/%2e%2e/%2e%2e/health', '/v1//agents', '/v1/agents/me/acl/%E2%80%AE', '//v1/health', '/v1/messages/' + '%41'.repeat(3000), '/v1/agents/' + 'A'.repeat(43) + '/acl/' + '_'.repeat(43), '/v1/agents/AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/acl/me', '*', 'http://evil/v1/health']) {
  for (const m of ['GET', 'DELETE', 'PUT', 'PATCH', 'POST', 'HEAD', 'OPTIONS', 'TRACE', 'PROPFIND']) await call(`path ${m} ${p.slice(0, 60)}`, m, p, m === 'GET' || m === 'HEAD' ? undefined : '{}');
}
// Long URL and big headers: raw sockets, expect 414/431/400, relay alive
async function raw(name, text) {
  const s = await rawSocket(base);
  let out = '';
  s.on('data', (d) => { out += d; });
  s.write(text);
  await new Promise((r) => { s.on('close', r); setTimeout(r, 3000); });
  s.destroy();
  const status = out.slice(9, 12);
  console.log(`raw ${name}: ${out.split('\r\n')[0] || '(no answer, closed)'}`);
  if (status.startsWith('5') && status !== '503') bad.push(`raw ${name}: ${out.slice(0, 100)}`);
  if (!relay.alive) { console.log('RELAY DEAD'); process.exit(1); }
}
await raw('100KB url', `GET /v1/discover?q=${'a'.repeat(100000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
await raw('3000 headers', `GET /v1/health HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 3000 }, (_, i) => `X-${i}: y\r\n`).join('')}\r\n`);
await raw('header 20KB', `GET /v1/health HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(20000)}\r\n\r\n`);
await raw('dup auth headers', `GET /v1/agents/me HTTP/1.1\r\nHost: x\r\nX-M2M-Public-Key: ${me.pub}\r\nX-M2M-Public-Key: ${peer.pub}\r\nX-M2M-Timestamp: x\r\nX-M2M-Signature: y\r\n\r\n`);
await raw('CL+TE', `POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`);
await raw('chunked huge size', `POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nX-M2M-Public-Key: ${me.pub}\r\nX-M2M-Timestamp: ${new Date().toISOString()}\r\nX-M2M-Signature: ${'A'.repeat(86)}\r\n\r\nFFFFFFFFFFFFFFFF\r\nabc`);
await raw('negative CL', `POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n`);
await raw('CL 1e30', `POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000000000000000000000\r\nX-M2M-Public-Key: ${me.pub}\r\nX-M2M-Timestamp: ${new Date().toISOString()}\r\nX-M2M-Signature: ${'A'.repeat(86)}\r\n\r\n`);
await raw('non-ascii url', `GET /v1/agents/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n`);
await raw('ws upgrade bad version', `GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 99\r\n\r\n`);
await raw('ws upgrade other path', `GET /v1/health HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
await raw('ws upgrade POST', `POST /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nContent-Length: 5\r\n\r\nhello`);
await raw('HTTP/0.9', `GET /v1/health\r\n\r\n`);
await raw('garbage', `\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03` + 'x'.repeat(500));

const h = await health(base);
console.log(`\n${n} requests; statuses ${JSON.stringify(seen)}; alive ${relay.alive && h.status === 200}`);
console.log(`internal_error log lines: ${(relay.log().match(/"internal_error"/g) || []).length}`);
console.log(`failures: ${bad.length}`);
for (const b of bad.slice(0, 40)) console.log('  ' + b);
await relay.stop();
process.exit(0);
