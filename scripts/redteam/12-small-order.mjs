// Item 7: small-order Ed25519 public keys (the 8 small-order points) and non-canonical encodings,
// as HTTP auth keys (with the "universal" signature R=identity, S=0 and a few others), as WebSocket
// auth keys, as recipients (HTTP and inline send), as ACL peers, as path keys.
// Usage: node 12-small-order.mjs
import { startRelay, keypair, req, wsOpen, waitFor, sleep, b64u, authFrame } from './lib.mjs';

const hex = (h) => b64u(Buffer.from(h, 'hex'));
const small = {
  identity: '0100000000000000000000000000000000000000000000000000000000000000',
  'order2 (0,-1)': 'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'order4 y=0': '0000000000000000000000000000000000000000000000000000000000000000',
  'order4 y=0 x-': '0000000000000000000000000000000000000000000000000000000000000080',
  'order8 a': 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a',
  'order8 b': 'c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa',
  'order8 c': '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05',
  'order8 d': '26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85',
};
const noncanon = {
  'identity x- (sign bit)': '0100000000000000000000000000000000000000000000000000000000000080',
  'y=p (0)': 'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'y=p x-': 'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  'y=p+1 (identity)': 'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'y=p+1 x-': 'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  '(0,-1) x-': 'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  'y=2^255-1': 'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
};
// a valid key written non-canonically in base64url (last char's unused bits set)
const good = keypair();
const lastIdx = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(good.pub[42]);
const b64nc = good.pub.slice(0, 42) + 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[lastIdx | 1];

const relay = await startRelay(`/tmp/rt/r12-${process.pid}`);
const base = relay.url;
const me = keypair();
await req(base, 'PATCH', `/v1/agents/${me.pub}`, { kp: me, body: JSON.stringify({ inbox_policy: 'open' }) });
let bad = 0;
const sigs = {
  'R=identity,S=0': hex('01' + '00'.repeat(31) + '00'.repeat(32)),
  'R=key,S=0': null,
  'R=order8,S=0': hex('c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a' + '00'.repeat(32)),
};
for (const [name, h] of [...Object.entries(small), ...Object.entries(noncanon), ['valid key, non-canonical base64url', null]]) {
  const key = h ? hex(h) : b64nc;
  const results = [];
  // HTTP auth
  for (const [sn, s0] of Object.entries(sigs)) {
    const sig = s0 ?? b64u(Buffer.concat([Buffer.from(key, 'base64url'), Buffer.alloc(32)]));
    const t = new Date().toISOString();
    const r = await req(base, 'GET', '/v1/agents/me', { headers: { 'x-m2m-public-key': key, 'x-m2m-timestamp': t, 'x-m2m-signature': sig } });
    results.push([`http auth ${sn}`, r.status, r.status === 401]);
    const r2 = await req(base, 'POST', '/v1/messages', { body: JSON.stringify({ recipient_key: me.pub, body: 1 }), headers: { 'x-m2m-public-key': key, 'x-m2m-timestamp': t + '', 'x-m2m-signature': sig } });
    results.push([`http send as it ${sn}`, r2.status, r2.status === 401]);
  }
  // WS auth
  {
    const ws = await wsOpen(base);
    const t = new Date().toISOString().replace(/\.\d+Z/, 'Z');
    ws.send(JSON.stringify({ type: 'auth', public_key: key, timestamp: t, signature: sigs['R=identity,S=0'] }));
    await waitFor(() => ws.closeInfo || ws.frames.length, 3000);
    await sleep(100);
    const ok = !String(ws.frames[0]).includes('"ok"') && (ws.closeInfo?.code === 4001);
    results.push(['ws auth', `${ws.closeInfo?.code} ${String(ws.frames[0]).slice(0, 60)}`, ok]);
    ws.terminate();
  }
  // as recipient / ACL peer / path
  const r3 = await req(base, 'POST', '/v1/messages', { kp: me, body: JSON.stringify({ recipient_key: key, body: 1 }) });
  results.push(['recipient', r3.status, r3.status === 400]);
  const ws = await wsOpen(base);
  ws.send(authFrame(me));
  await waitFor(() => ws.frames.length, 3000);
  ws.send(JSON.stringify({ type: 'send', request_id: 'x', recipient_key: key, body: 1 }));
  await waitFor(() => ws.frames.length > 1, 3000);
  results.push(['ws send recipient', String(ws.frames[1]).slice(0, 80), /send_result.*"error".*bad_request/.test(ws.frames[1])]);
  ws.terminate();
  const r4 = await req(base, 'PUT', `/v1/agents/${me.pub}/acl`, { kp: me, body: JSON.stringify({ peer_key: key, entry_type: 'allow' }) });
  results.push(['acl peer', r4.status, r4.status === 400]);
  const r5 = await req(base, 'GET', `/v1/agents/${key}`, { kp: me });
  results.push(['GET /v1/agents/{it}', r5.status, r5.status === 400 || r5.status === 404]);
  const fails = results.filter((x) => !x[2]);
  if (fails.length) bad++;
  console.log(`${fails.length ? 'FAIL' : 'ok  '} ${name} (${key}): ${results.map(([w, s, ok]) => `${w}=${s}${ok ? '' : '!'}`).join('; ')}`);
}
await relay.stop();
console.log(bad ? `FAILED (${bad})` : 'HELD');
