// Item 4: crash between reply and journal in a thread with 2,050 older messages. A TCP proxy between
// runner and relay watches the runner's WebSocket frames; when the reply (`send`) goes out it forwards
// it, then SIGKILLs the runner before `send_result` comes back. The runner is restarted (direct).
// In poll mode the reply is an HTTP POST: the proxy forwards it, then SIGKILLs the runner before the 201.
// Expect exactly one reply to the message.  Usage: node 07-thread-2050.mjs [older=2050] [websocket|poll]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { ROOT, startRelay, keypair, writeKey, req, sleep, waitFor } from './lib.mjs';

const OLDER = Number(process.argv[2] || 2050);
const MODE = process.argv[3] || 'websocket';
const relay = await startRelay(`/tmp/rt/r07-${process.pid}`);
const home = `/tmp/rt/h07-${process.pid}`;
fs.mkdirSync(home, { recursive: true, mode: 0o700 });
const agent = keypair();
const peer = keypair();
writeKey(`${home}/agent.key`, agent);
fs.writeFileSync(`${home}/handler.mjs`, `export default async (msg) => ({ answer: msg.body?.text });\n`);
const T = 'thread-2050';
// 2,050 older messages in the thread, sent by the agent to the peer
for (let i = 0; i < OLDER; i += 50) {
  await Promise.all(Array.from({ length: Math.min(50, OLDER - i) }, (_, j) => req(relay.url, 'POST', '/v1/messages', { kp: agent, body: JSON.stringify({ recipient_key: peer.pub, thread_id: T, body: { n: i + j } }) })));
}
console.log(`thread has ${OLDER} older messages`);

// proxy
const up = new URL(relay.url);
let victim = null;
let killed = false;
const proxy = net.createServer((c) => {
  const s = net.connect(Number(up.port), up.hostname);
  let hdr = true; let buf = Buffer.alloc(0);
  s.on('data', (d) => { if (!killed) c.write(d); });
  c.on('data', (d) => {
    s.write(d);
    if (MODE === 'poll') {
      if (victim && !killed && d.toString('latin1').startsWith('POST /v1/messages ')) {
        killed = true;
        setTimeout(() => { victim.kill('SIGKILL'); console.log('proxy: reply POST forwarded, runner SIGKILLed before the 201'); }, 30);
        setTimeout(() => { s.destroy(); c.destroy(); }, 1500);
      }
      return;
    }
    if (hdr) { const t = d.toString('latin1'); if (t.includes('\r\n\r\n')) { hdr = false; buf = d.subarray(t.indexOf('\r\n\r\n') + 4); } return; }
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 6) {
      let len = buf[1] & 0x7f; let p = 2;
      if (len === 126) { len = buf.readUInt16BE(2); p = 4; } else if (len === 127) { len = Number(buf.readBigUInt64BE(2)); p = 10; }
      const mask = buf.subarray(p, p + 4); p += 4;
      if (buf.length < p + len) break;
      const payload = Buffer.from(buf.subarray(p, p + len)).map((b, i) => b ^ mask[i % 4]);
      buf = buf.subarray(p + len);
      if (victim && !killed && payload.toString().includes('"type":"send"')) {
        killed = true;
        victim.kill('SIGKILL');
        console.log('proxy: reply frame forwarded, runner SIGKILLed before send_result');
        setTimeout(() => { s.destroy(); c.destroy(); }, 1500);
      }
    }
  });
  s.on('error', () => c.destroy()); c.on('error', () => s.destroy());
  s.on('close', () => c.destroy()); c.on('close', () => setTimeout(() => s.destroy(), 1500));
});
await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
const proxyUrl = `http://127.0.0.1:${proxy.address().port}`;

const run = (url) => {
  const p = spawn(process.execPath, [ROOT + '/bin/mrp.js', 'run', '--handler', `${home}/handler.mjs`, '--relay', url, '--key', `${home}/agent.key`, '--log-format', 'json', '--mode', MODE], { env: { ...process.env, MRP_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  p.out = ''; p.stdout.on('data', (d) => (p.out += d)); p.stderr.on('data', (d) => (p.out += d));
  p.done = new Promise((r) => p.on('exit', (c, s) => r(c ?? s)));
  return p;
};
victim = run(proxyUrl);
await sleep(1500);
const x = JSON.parse((await req(relay.url, 'POST', '/v1/messages', { kp: peer, body: JSON.stringify({ recipient_key: agent.pub, thread_id: T, body: { text: 'question' } }) })).text).message_id;
await waitFor(() => killed, 15000);
await victim.done;
await sleep(1000);
if (process.env.VERBOSE) { for (const f of fs.readdirSync(`${home}/state`, { recursive: true })) { const p = `${home}/state/${f}`; if (fs.statSync(p).isFile()) console.log('journal file', f, fs.readFileSync(p, 'utf8').slice(-1500)); } }
if (process.env.VERBOSE) { const th = JSON.parse((await req(relay.url, 'GET', `/v1/messages/threads/${T}?limit=100`, { kp: peer })).text); console.log('before restart, thread as the peer sees it:', th.messages.filter((m) => m.in_reply_to === x).map((m) => m.message_id + ' ' + m.created_at + ' ' + JSON.stringify(m.body))); }
const second = run(relay.url);
await sleep(8000);
// count replies to x
let all = [];
for (const status of ['sent', 'delivered']) {
  let cursor = '';
  for (let i = 0; i < 40; i++) {
    const r = JSON.parse((await req(relay.url, 'GET', `/v1/messages?status=${status}&limit=100&in_reply_to=${x}${cursor ? '&cursor=' + cursor : ''}`, { kp: peer })).text);
    all = all.concat(r.messages);
    if (!r.has_more) break;
    cursor = r.next_cursor;
  }
}
const n = new Set(all.filter((m) => m.in_reply_to === x).map((m) => m.message_id)).size;
console.log(`replies to the message: ${n}`);
console.log(second.out.split('\n').filter((l) => /recovered|handled|reply_retry|duplicate|error/.test(l)).map((l) => l.slice(0, 220)).join('\n'));
if (process.env.VERBOSE) console.log(all.filter((m) => m.in_reply_to === x).map((m) => m.message_id + ' ' + m.created_at + ' ' + JSON.stringify(m.body)), relay.log().split('\n').filter((l) => /threads|ws_auth|ws_close/.test(l)).join('\n'));
console.log(n === 1 ? 'HELD' : 'FAILED');
second.kill('SIGTERM'); await second.done;
proxy.close();
await relay.stop();
process.exit(0);
