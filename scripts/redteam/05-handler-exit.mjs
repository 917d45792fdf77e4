// Item 4: a handler that calls process.exit(0) on one message ("boom"). The runner must exit non-zero
// each time; after --max-crashes (3) starts it must answer that message with handler_crashed and
// go on answering the others. Acts as a supervisor restarting the runner up to 6 times.
// Usage: node 05-handler-exit.mjs [websocket|poll] [js statement that ends the process]
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { ROOT, startRelay, keypair, writeKey, req, sleep, waitFor } from './lib.mjs';

const mode = process.argv[2] || 'websocket';
const how = process.argv[3] || 'process.exit(0)'; // also: "process.kill(process.pid,'SIGKILL')", 'process.abort()', 'process.reallyExit(0)'
const relay = await startRelay(`/tmp/rt/r05-${mode}-${process.pid}`);
const home = `/tmp/rt/h05-${mode}-${process.pid}`;
fs.mkdirSync(home, { recursive: true, mode: 0o700 });
const agent = keypair();
const peer = keypair();
writeKey(`${home}/agent.key`, agent);
fs.writeFileSync(`${home}/handler.mjs`, `export default async (msg) => { if (msg.body?.text === 'boom') ${how}; return { ok: msg.body?.text }; };\n`);
const send = async (text) => JSON.parse((await req(relay.url, 'POST', '/v1/messages', { kp: peer, body: JSON.stringify({ recipient_key: agent.pub, body: { text } }) })).text).message_id;
const boom = await send('boom');
const others = [await send('a'), await send('b')];
const exits = [];
for (let i = 0; i < 6; i++) {
  const p = spawn(process.execPath, [ROOT + '/bin/mrp.js', 'run', '--handler', `${home}/handler.mjs`, '--relay', relay.url, '--key', `${home}/agent.key`, '--log-format', 'json', '--mode', mode], { env: { ...process.env, MRP_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => (out += d));
  p.stderr.on('data', (d) => (out += d));
  const code = await Promise.race([new Promise((r) => p.on('exit', (c, s) => r(c ?? s))), sleep(8000).then(() => 'running')]);
  const ev = out.split('\n').filter(Boolean).map((l) => { try { return JSON.parse(l).event; } catch { return 'text:' + l.slice(0, 80); } });
  exits.push(code);
  console.log(`start ${i + 1}: exit=${code}; events: ${ev.join(',')}`);
  if (process.env.VERBOSE) console.log(out.split('\n').map((l) => l.slice(0, 300)).join('\n'));
  if (code === 'running') { p.kill('SIGTERM'); await new Promise((r) => p.on('exit', r)); break; }
}
const replies = JSON.parse((await req(relay.url, 'GET', '/v1/messages?status=sent&limit=100', { kp: peer })).text).messages;
const toBoom = replies.filter((m) => m.in_reply_to === boom);
const toOthers = others.map((id) => replies.filter((m) => m.in_reply_to === id).length);
console.log(`replies to boom: ${toBoom.length} ${toBoom.map((m) => JSON.stringify(m.body)).join(' ')}`);
console.log(`replies to the other two: ${toOthers.join(',')}`);
const crashes = exits.filter((c) => c !== 'running');
const ok = crashes.length === 3 && crashes.every((c) => c !== 0) && toBoom.length === 1 && JSON.stringify(toBoom[0].body).includes('handler_crashed') && toOthers.every((n) => n === 1);
console.log(ok ? 'HELD' : 'FAILED');
await relay.stop();
