// Item 1 (WebSocket): crash frames before and after auth. Every frame type x every field x deep
// arrays/objects (1e4..1e6), huge strings, 1e999, invalid UTF-8, binary, fragments, ping floods.
// Prints one line per case with the close code and whether the relay is still alive.
// Usage: node 01-frames.mjs   (starts its own relay, stops it at the end)
import crypto from 'node:crypto';
import { startRelay, keypair, wsOpen, authFrame, waitFor, sleep, deep, deepObj, health, WebSocket } from './lib.mjs';

const relay = await startRelay('/tmp/rt/f01-' + process.pid);
const base = relay.url;
const bad = [];
const note = (name, r, expect) => {
  const ok = expect(r);
  if (!ok) bad.push(name);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${name}: close=${r.close} frames=${r.frames.map((f) => String(f).slice(0, 90)).join(' | ').slice(0, 260)}`);
};

async function trial(text, { auth = false, binary = false, fragments, raw } = {}) {
  const kp = keypair();
  const ws = await wsOpen(base);
  if (ws.closeInfo) return { close: ws.closeInfo.code, frames: [] };
  if (auth) {
    ws.send(authFrame(kp));
    await waitFor(() => ws.frames.length, 3000);
    if (!String(ws.frames[0]).includes('"ok"')) return { close: 'authfail', frames: ws.frames };
    await sleep(20);
    ws.frames.length = 0;
  }
  try {
    if (raw) raw(ws);
    else if (fragments) {
      for (let i = 0; i < fragments.length; i++) ws.send(fragments[i], { fin: i === fragments.length - 1, binary: false });
    } else ws.send(typeof text === 'string' && !binary ? text : text, { binary });
  } catch (e) { return { close: 'sendthrow ' + e.message, frames: [] }; }
  await waitFor(() => ws.closeInfo || ws.frames.length, 4000);
  await sleep(150);
  const r = { close: ws.closeInfo?.code ?? 'open', frames: [...ws.frames] };
  ws.terminate();
  const h = await health(base);
  r.alive = h.status === 200 && relay.alive;
  if (!r.alive) { console.log('RELAY DEAD after', text?.slice?.(0, 80)); console.log(relay.log().slice(-3000)); process.exit(1); }
  return r;
}

const DEPTHS = [129, 3000, 1e4, 1e5, 1e6];
const shapes = { arr: (n) => deep(n), obj: (n) => deepObj(n) };
const frameTypes = {
  auth: ['type', 'public_key', 'timestamp', 'signature'],
  ping: ['type', 'ts'],
  pong: ['type', 'ts'],
  ack: ['type', 'message_id'],
  send: ['type', 'request_id', 'recipient_key', 'content_type', 'body', 'thread_id', 'in_reply_to', 'expires_in', 'metadata', 'attachments'],
  sendNested: ['message', 'message.body', 'message.metadata', 'request_id'],
  zzz: ['type', 'x'],
};
const rk = keypair().pub;
function frameWith(type, field, value) {
  const base = type === 'send' ? { type, request_id: 'r1', recipient_key: rk, body: { t: 1 } }
    : type === 'sendNested' ? { type: 'send', request_id: 'r1', message: { recipient_key: rk, body: { t: 1 } } }
    : type === 'ack' ? { type, message_id: 'msg_1_aaaaaaaaaaaa' }
    : type === 'auth' ? { type, public_key: rk, timestamp: new Date().toISOString(), signature: 'A'.repeat(86) }
    : { type };
  const MARK = '"@@MARK@@"';
  if (field.startsWith('message.')) base.message[field.slice(8)] = '@@MARK@@';
  else base[field] = '@@MARK@@';
  return JSON.stringify(base).replace(MARK, value);
}

for (const auth of [false, true]) {
  for (const [type, fields] of Object.entries(frameTypes)) {
    for (const field of fields) {
      for (const [sname, shape] of Object.entries(shapes)) {
        for (const d of DEPTHS) {
          if (!auth && d > 3000 && field !== fields[0]) continue; // pre-auth: size cut applies, one field suffices
          const text = frameWith(type, field, shape(d));
          const name = `${auth ? 'post' : 'pre '}-auth ${type}.${field} ${sname}${d} (${text.length} B)`;
          const r = await trial(text, { auth });
          note(name, r, (r) => {
            if (!auth && text.length > 8192) return [1009, 1006, 4000].includes(r.close); // 4000: the frame came in one socket read (see 01b); 1006: cut mid-send
            if (auth && text.length > 8 * 1048576) return r.close === 1009;
            if (auth && field === 'type') return r.close === 4000;
            if (auth && (type === 'send' || type === 'sendNested')) return r.frames.some((f) => /send_result.*bad_request/.test(f)) && r.close === 'open';
            if (auth && d === 129 && type === 'pong') return true;
            return r.close === 4000 || r.close === 4001 || (auth && r.frames.some((f) => /"error"/.test(f)));
          });
        }
      }
    }
  }
}

// Huge strings and odd numbers
const big = '"' + 'x'.repeat(7 * 1048576) + '"';
for (const [type, field] of [['ack', 'message_id'], ['send', 'request_id'], ['ping', 'ts'], ['send', 'body'], ['send', 'thread_id'], ['send', 'content_type'], ['send', 'recipient_key'], ['zzz', 'type'], ['send', 'metadata'], ['auth', 'signature']]) {
  const text = frameWith(type, field, field === 'metadata' ? `{"k":${big}}` : big);
  const r = await trial(text, { auth: true });
  note(`post-auth huge-string ${type}.${field}`, r, (r) => r.close !== 1011 && r.close !== 1006);
}
for (const num of ['1e999', '-1e999', '12345678901234567890', '1e-999', '-0', '0.0000000000000000000000001']) {
  for (const [type, field] of [['ping', 'ts'], ['send', 'expires_in'], ['send', 'request_id'], ['send', 'body'], ['ack', 'message_id'], ['send', 'thread_id']]) {
    for (const auth of [false, true]) {
      const text = frameWith(type, field, num);
      const r = await trial(text, { auth });
      note(`${auth ? 'post' : 'pre '}-auth number ${num} in ${type}.${field}`, r, (r) => r.close !== 1011 && r.close !== 1006 && !(type === 'ping' && r.frames.some((f) => { try { JSON.parse(f); return false; } catch { return true; } })));
    }
  }
}

// invalid UTF-8 / binary / fragments / control frames
for (const auth of [false, true]) {
  const A = auth ? 'post' : 'pre ';
  note(`${A}-auth invalid utf8 text frame`, await trial(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { auth }), (r) => r.close === 1007);
  note(`${A}-auth invalid utf8 inside send body`, await trial(Buffer.concat([Buffer.from(`{"type":"send","recipient_key":"${rk}","body":"`), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), { auth }), (r) => r.close === 1007);
  note(`${A}-auth binary frame`, await trial(Buffer.from('{"type":"ping"}'), { auth, binary: true }), (r) => r.close === 4000);
  note(`${A}-auth empty text frame`, await trial('', { auth }), (r) => r.close === 4000);
  note(`${A}-auth 2000 fragments of a 1e5-deep array`, await trial(null, { auth, fragments: Array.from({ length: 2000 }, (_, i) => (i < 1000 ? '['.repeat(100) : ']'.repeat(100))) }), (r) => (auth ? r.close === 4000 : [1009, 1006].includes(r.close)));
  note(`${A}-auth fragmented valid ping`, await trial(null, { auth, fragments: ['{"type":', '"ping","ts"', ':1}'] }), (r) => r.frames.some((f) => f.includes('pong')));
  note(`${A}-auth fragmented 12MB (never finished)`, await trial(null, { auth, fragments: Array.from({ length: 12 }, () => 'x'.repeat(1048576)).concat([]) }), (r) => [1009, 1006].includes(r.close));
  // 5000 control pings with 125-byte payloads, reading the pongs
  note(`${A}-auth 5000 control pings`, await trial(null, { auth, raw: (ws) => { for (let i = 0; i < 5000; i++) ws.ping(Buffer.alloc(125, 1)); } }), (r) => r.close !== 1011); // the ws library itself drops a control-ping flood (1006), plain ws server too
  note(`${A}-auth 3000 JSON pings`, await trial(null, { auth, raw: (ws) => { for (let i = 0; i < 3000; i++) ws.send('{"type":"ping","ts":' + i + '}'); } }), (r) => (auth ? r.close === 'open' : [1009, 1006].includes(r.close)));
  // raw protocol violations
  note(`${A}-auth continuation frame without start`, await trial(null, { auth, raw: (ws) => ws._socket.write(Buffer.from([0x80, 0x82, 0, 0, 0, 0, 0x7b, 0x7d])) }), (r) => r.close === 1002);
  note(`${A}-auth reserved opcode 0x3`, await trial(null, { auth, raw: (ws) => ws._socket.write(Buffer.from([0x83, 0x80, 0, 0, 0, 0])) }), (r) => r.close === 1002);
  note(`${A}-auth unmasked client frame`, await trial(null, { auth, raw: (ws) => ws._socket.write(Buffer.from([0x81, 0x02, 0x7b, 0x7d])) }), (r) => r.close === 1002);
  note(`${A}-auth 64-bit length 2^62`, await trial(null, { auth, raw: (ws) => ws._socket.write(Buffer.from([0x81, 0xff, 0x40, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])) }), (r) => r.close === 1009 || r.close === 1002);
  note(`${A}-auth close frame with bad code 999`, await trial(null, { auth, raw: (ws) => ws._socket.write(Buffer.from([0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe7])) }), (r) => r.close === 1002);
  note(`${A}-auth ping control frame 126 bytes (too long)`, await trial(null, { auth, raw: (ws) => ws._socket.write(Buffer.concat([Buffer.from([0x89, 0xfe, 0, 126, 0, 0, 0, 0]), Buffer.alloc(126)])) }), (r) => r.close === 1002);
}
// JSON-valid-but-odd top-level values
for (const t of ['null', '[]', '"x"', '1', 'true', '{"type":null}', '{"type":1}', '{"type":"auth"}', '{"type":"send"}', '{"__proto__":{"type":"ping"}}', '{"type":"ping","__proto__":{"ts":1}}', '{"type":"constructor"}', '{"type":"toString"}', '{"type":"hasOwnProperty"}']) {
  for (const auth of [false, true]) {
    const r = await trial(t, { auth });
    note(`${auth ? 'post' : 'pre '}-auth odd ${t}`, r, (r) => r.close !== 1011 && r.close !== 1006);
  }
}

const internal = (relay.log().match(/"internal_error"/g) || []).length;
console.log(`\ninternal_error log lines: ${internal}`);
console.log(`relay alive at end: ${relay.alive}; failures: ${bad.length}`);
for (const b of bad) console.log('  FAIL ' + b);
await relay.stop();
process.exit(0);
