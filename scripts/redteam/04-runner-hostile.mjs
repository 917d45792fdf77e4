// Item 3: hostile messages to `mrp run` from a scripted relay, in websocket and poll mode, then one
// normal message that must still be answered. Reports per hostile message: replied? acked? and
// whether the runner survived.  Usage: node 04-runner-hostile.mjs [websocket|poll]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { ROOT, keypair, writeKey, sleep, waitFor, deep, deepObj } from './lib.mjs';
import { fakeRelay } from './fake-relay.mjs';

const mode = process.argv[2] || 'websocket';
const home = `/tmp/rt/r04-${mode}-${process.pid}`;
fs.mkdirSync(home, { recursive: true, mode: 0o700 });
const me = keypair();
writeKey(`${home}/agent.key`, me);
fs.writeFileSync(`${home}/handler.mjs`, `export default async (msg) => ({ got: msg.message_id, body: msg.body });\n`);
const S = keypair().pub;
const now = new Date().toISOString();
const exp = new Date(Date.now() + 864e5).toISOString();
const msg = (id, extra = '', body = '{"text":"x"}') =>
  `{"message_id":${JSON.stringify(id)},"sender_key":"${S}","recipient_key":"${me.pub}","content_type":"application/json","body":${body},"attachments":[],"thread_id":null,"in_reply_to":null,"metadata":{},"status":"sent","created_at":"${now}","expires_at":"${exp}","delivered_at":null${extra}}`;
const cases = [
  ['h01 body 5000 deep', msg('h01', '', deep(5000)), 'reply'],
  ['h02 body 1e5 deep obj', msg('h02', '', deepObj(1e5)), 'reply'],
  ['h03 huge numbers', msg('h03', '', '{"n":1e999,"m":12345678901234567890,"x":-1e999,"y":1e-999}'), 'reply'],
  ['h04 no message_id', `{"sender_key":"${S}","body":1}`, 'none'],
  ['h05 no sender_key', `{"message_id":"h05","body":1}`, 'ack'],
  ['h06 message null', 'null', 'none'],
  ['h07 message_id number', msg(7), 'none'],
  ['h08 sender not a key', msg('h08').replace(S, 'not-a-key'), 'ack'],
  ['h09 message_id 1 MB', msg('h09' + 'x'.repeat(1048576)), 'none'],
  ['h10 message_id path traversal', msg('../../../../tmp/rt/pwn-h10'), 'reply'],
  ['h11 metadata 5000 deep', msg('h11').replace('"metadata":{}', `"metadata":${deepObj(5000)}`), 'reply'],
  ['h12 message_id deep object', msg('h12').replace('"message_id":"h12"', `"message_id":${deepObj(5000)}`), 'none'],
  ['h13 __proto__ id', msg('__proto__'), 'reply'],
  ['h14 thread_id deep, in_reply_to object', msg('h14').replace('"thread_id":null', `"thread_id":${deep(3000)}`).replace('"in_reply_to":null', '"in_reply_to":{"a":1}'), 'reply'],
  ['h15 duplicate message_id keys', msg('h15').replace('{"message_id":"h15"', '{"message_id":"dupfirst","message_id":"h15"'), 'reply'],
  ['h16 body 1.5 MB string', msg('h16', '', JSON.stringify('y'.repeat(1.5 * 1048576))), 'reply'],
  ['h17 attachments deep', msg('h17').replace('"attachments":[]', `"attachments":${deep(4000)}`), 'reply'],
  ['h18 expires_at in the past', msg('h18').replace(exp, '2000-01-01T00:00:00Z'), 'any'],
  ['h19 sender_key = runner itself', msg('h19').replace(`"sender_key":"${S}"`, `"sender_key":"${me.pub}"`), 'any'],
  ['h20 constructor id', msg('constructor'), 'reply'],
  ['h21 message_id with newline+ESC', msg('h21\n\u001b[31mX'), 'reply'],
];
const normal = ['n01 NORMAL', msg('n01'), 'reply'];
const all = [...cases, normal];

let relay;
if (mode === 'websocket') {
  const frames = [];
  for (const [, m] of cases) frames.push({ data: `{"type":"message","message":${m}}` });
  // garbage frames too
  frames.push({ data: Buffer.from('{"type":"message"}'), binary: true });
  frames.push({ data: '{"type":"message","message":' });
  frames.push({ data: '{"no_type":1}' });
  frames.push({ data: deep(200000) });
  frames.push({ data: `{"type":"message","message":${msg('h22-7MB', '', JSON.stringify('z'.repeat(7 * 1048576)))}}` });
  frames.push({ data: `{"type":"message","message":${normal[1]}}` });
  relay = await fakeRelay({ frames });
} else {
  const pages = [];
  pages.push(`{"messages":[${cases.slice(0, 10).map((c) => c[1]).join(',')}],"has_more":true,"next_cursor":"c1"}`);
  pages.push(`{"messages":[${cases.slice(10).map((c) => c[1]).join(',')}],"has_more":true,"next_cursor":"c2"}`);
  pages.push('{"messages":' + deep(5000) + ',"has_more":true,"next_cursor":"c3"}');
  pages.push('{"messages":"nope","has_more":true}');
  pages.push('not json at all');
  pages.push(`{"messages":[${normal[1]}],"has_more":false,"next_cursor":null}`);
  relay = await fakeRelay({ pages });
}
const p = spawn(process.execPath, [ROOT + '/bin/mrp.js', 'run', '--handler', `${home}/handler.mjs`, '--relay', relay.url, '--key', `${home}/agent.key`, '--log-format', 'json', '--mode', mode, '--interval', '200ms'], { env: { ...process.env, MRP_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
let out = '';
p.stdout.on('data', (d) => (out += d));
p.stderr.on('data', (d) => (out += d));
let exit = null;
p.on('exit', (c, s) => (exit = { c, s }));
const repliedTo = () => {
  const replies = [...relay.rec.sends, ...relay.rec.posts.map((t) => { try { return JSON.parse(t); } catch { return {}; } })];
  return replies.map((r) => r.in_reply_to ?? r.message?.in_reply_to);
};
await waitFor(() => repliedTo().includes('n01') || exit, 30000, 100);
await sleep(1500);
const replied = repliedTo();
const acks = relay.rec.acks;
let fails = 0;
for (const [name, m, want] of all) {
  const id = (() => { try { return JSON.parse(m).message_id; } catch { return undefined; } })();
  const r = typeof id === 'string' && replied.includes(id);
  const a = typeof id === 'string' && acks.includes(id);
  const ok = want === 'any' || (want === 'reply' ? r : want === 'ack' ? (mode === 'poll' || a) && !r : !r);
  if (!ok) fails++;
  console.log(`${ok ? 'ok  ' : 'FAIL'} [${mode}] ${name}: replied=${r} acked=${a} (want ${want})`);
}
const replyBodies = [...relay.rec.sends.map((s) => JSON.stringify(s.body ?? s.message?.body)), ...relay.rec.posts];
console.log(`replies: ${replied.length}, invalid_message replies: ${replyBodies.filter((b) => String(b).includes('invalid_message')).length}; pwn file exists: ${fs.existsSync('/tmp/rt/pwn-h10')}`);
console.log(`runner alive: ${exit === null} ${exit ? JSON.stringify(exit) : ''}; ws conns: ${relay.rec.conns}; requests: ${relay.rec.requests.length}`);
const events = out.split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l).event ?? JSON.parse(l).type ?? l.slice(0, 60); } catch { return l.slice(0, 100); } });
const counts = {};
for (const e of events) counts[e] = (counts[e] || 0) + 1;
console.log('runner events:', JSON.stringify(counts));
if (process.env.VERBOSE) console.log(out.slice(0, 6000));
p.kill('SIGTERM');
await waitFor(() => exit, 10000);
relay.close();
console.log(`exit after SIGTERM: ${JSON.stringify(exit)}; ${fails} failures`);
process.exit(0);
