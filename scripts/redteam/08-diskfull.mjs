// Item 4: disk full under the journal. MRP_HOME on a 3 MiB tmpfs (needs root: mount -t tmpfs).
// 1) runner answers; 2) tmpfs filled: new messages must wait (not_ready), /readyz 503;
// 3) space freed: all answered exactly once (ready_again); 4) filled again + SIGTERM: exits non-zero;
// 5) restart with space: the message is answered exactly once.
// Usage: node 08-diskfull.mjs [websocket|poll]     (mounts/unmounts /tmp/rt/small-<pid>)
import { spawn, execSync } from 'node:child_process';
import fs from 'node:fs';
import { ROOT, startRelay, keypair, writeKey, req, sleep, waitFor } from './lib.mjs';

const mode = process.argv[2] || 'websocket';
const mnt = `/tmp/rt/small-${process.pid}`;
fs.mkdirSync(mnt, { recursive: true });
execSync(`mount -t tmpfs -o size=3m tmpfs ${mnt}`);
const relay = await startRelay(`/tmp/rt/r08-${process.pid}`);
const home = `${mnt}/home`;
fs.mkdirSync(home, { recursive: true, mode: 0o700 });
const agent = keypair(); const peer = keypair();
writeKey(`${home}/agent.key`, agent);
fs.writeFileSync(`${home}/handler.mjs`, `export default async (msg) => ({ ok: msg.body?.text });\n`);
const hport = 20000 + (process.pid % 20000);
const run = () => {
  const p = spawn(process.execPath, [ROOT + '/bin/mrp.js', 'run', '--handler', `${home}/handler.mjs`, '--relay', relay.url, '--key', `${home}/agent.key`, '--log-format', 'json', '--mode', mode, '--health-port', String(hport), '--grace', '5s'], { env: { ...process.env, MRP_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
  p.out = ''; p.stdout.on('data', (d) => (p.out += d)); p.stderr.on('data', (d) => (p.out += d));
  p.done = new Promise((r) => p.on('exit', (c, s) => r(c ?? s)));
  return p;
};
const pad = 'p'.repeat(20000);
const send = async (text) => JSON.parse((await req(relay.url, 'POST', '/v1/messages', { kp: peer, body: JSON.stringify({ recipient_key: agent.pub, body: { text, pad } }) })).text).message_id;
const seenReplies = new Map();
const replies = async () => {
  for (const st of ['sent', 'delivered']) for (const m of JSON.parse((await req(relay.url, 'GET', `/v1/messages?status=${st}&limit=100`, { kp: peer })).text).messages) seenReplies.set(m.message_id, m);
  return [...seenReplies.values()];
};
const answered = async (id) => (await replies()).filter((m) => m.in_reply_to === id).length;
const readyz = async () => { const r = await req(`http://127.0.0.1:${hport}`, 'GET', '/readyz', { timeout: 2000 }); console.log('   /readyz ->', r.status, r.text.slice(0, 150)); return r.status; };
const fill = () => { try { execSync(`dd if=/dev/zero of=${mnt}/filler bs=4k 2>/dev/null`); } catch {} return execSync(`df -k ${mnt} | tail -1`).toString().trim(); };
const free = () => fs.rmSync(`${mnt}/filler`, { force: true });
const fails = [];
const check = (cond, what) => { console.log(`${cond ? 'ok  ' : 'FAIL'} ${what}`); if (!cond) fails.push(what); };

let p = run();
const m1 = await send('one');
await waitFor(async () => (await answered(m1)) === 1, 15000, 200);
check((await answered(m1)) === 1, 'answered before the disk fills');
console.log('filled:', fill());
const during = [];
for (let i = 0; i < 5; i++) during.push(await send('during' + i));
await sleep(5000);
const answeredDuring = (await Promise.all(during.map(answered))).reduce((a, b) => a + b, 0);
const rz = await readyz();
console.log(`while full: answered ${answeredDuring}/5, /readyz ${rz}, events: ${[...new Set(p.out.split('\n').map((l) => { try { return JSON.parse(l).event; } catch { return null; } }).filter(Boolean))].join(',')}`);
check(rz === 503, '/readyz is 503 while the journal cannot be written');
check(p.exitCode === null, 'runner still running while full');
free();
await waitFor(async () => (await Promise.all(during.map(answered))).every((n) => n >= 1), 40000, 500);
await sleep(2000);
const counts = await Promise.all(during.map(answered));
check(counts.every((n) => n === 1), `after freeing space each of the 5 answered exactly once (${counts.join(',')})`);
check(/ready_again/.test(p.out) || /not_ready/.test(p.out) === false, 'ready_again reported');
check((await readyz()) === 200, '/readyz 200 again');
// full again, then SIGTERM
console.log('filled again:', fill());
const m2 = await send('at-stop');
await sleep(3000);
const t0 = Date.now();
p.kill('SIGTERM');
const code = await Promise.race([p.done, sleep(20000).then(() => 'still running after 20 s')]);
console.log(`SIGTERM while full: exit ${code} after ${Date.now() - t0} ms; last lines: ${p.out.trim().split('\n').slice(-2).map((l) => l.slice(0, 200)).join(' | ')}`);
check(code !== 0 && typeof code === 'number', 'exits non-zero when stopped while the journal is unwritable');
if (code === 'still running after 20 s') { p.kill('SIGKILL'); await p.done; }
free();
p = run();
await waitFor(async () => (await answered(m2)) >= 1, 20000, 300);
await sleep(2000);
check((await answered(m2)) === 1, `message that arrived while full answered exactly once after restart (${await answered(m2)})`);
const all = await Promise.all([m1, ...during, m2].map(answered));
check(all.every((n) => n === 1), `no duplicates overall (${all.join(',')})`);
p.kill('SIGTERM'); await p.done;
await relay.stop();
execSync(`umount ${mnt}`);
console.log(fails.length ? `FAILED (${fails.length})` : 'HELD');
process.exit(0);
