// Item 4: poll mode must handle only what it took. Scenarios:
//  A: runner (poll) stopped with SIGTERM; 5 messages arrive; `mrp recv` consumes them; runner restarts.
//  B: runner (poll) SIGKILLed while its long poll is waiting; 6 s later 5 messages arrive and
//     `mrp recv` consumes them; runner restarts.
// Expect: the restarted runner answers none of those 5 (they were taken by recv), but answers a new one.
// Usage: node 06-poll-recv.mjs   (env DELAY_MS: wait after the SIGKILL in B, default 6000; SCENARIOS=A,B)
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { ROOT, startRelay, keypair, writeKey, req, sleep, waitFor } from './lib.mjs';

const relay = await startRelay(`/tmp/rt/r06-${process.pid}`);
let failures = 0;
for (const scenario of (process.env.SCENARIOS || 'A,B').split(',')) {
  const home = `/tmp/rt/h06-${scenario}-${process.pid}`;
  fs.mkdirSync(home, { recursive: true, mode: 0o700 });
  const agent = keypair();
  const peer = keypair();
  writeKey(`${home}/agent.key`, agent);
  fs.writeFileSync(`${home}/handler.mjs`, `export default async (msg) => ({ ok: msg.body?.text });\n`);
  const run = () => {
    const p = spawn(process.execPath, [ROOT + '/bin/mrp.js', 'run', '--handler', `${home}/handler.mjs`, '--relay', relay.url, '--key', `${home}/agent.key`, '--log-format', 'json', '--mode', 'poll'], { env: { ...process.env, MRP_HOME: home }, stdio: ['ignore', 'pipe', 'pipe'] });
    p.out = '';
    p.stdout.on('data', (d) => (p.out += d));
    p.stderr.on('data', (d) => (p.out += d));
    p.done = new Promise((r) => p.on('exit', (c, s) => r(c ?? s)));
    return p;
  };
  const send = async (text) => JSON.parse((await req(relay.url, 'POST', '/v1/messages', { kp: peer, body: JSON.stringify({ recipient_key: agent.pub, body: { text } }) })).text).message_id;
  const replies = async () => JSON.parse((await req(relay.url, 'GET', '/v1/messages?status=sent&limit=100', { kp: peer })).text).messages.concat(JSON.parse((await req(relay.url, 'GET', '/v1/messages?status=delivered&limit=100', { kp: peer })).text).messages);

  let p = run();
  const warm = await send('warm');
  await waitFor(async () => (await replies()).some((m) => m.in_reply_to === warm), 15000, 200);
  await sleep(1500); // now inside a long poll
  if (scenario === 'A') { p.kill('SIGTERM'); console.log(`[${scenario}] runner exit on SIGTERM: ${await p.done}`); }
  else { p.kill('SIGKILL'); await p.done; await sleep(Number(process.env.DELAY_MS || 6000)); }
  const taken = [];
  for (let i = 0; i < 5; i++) taken.push(await send('taken' + i));
  const recv = execFileSync(process.execPath, [ROOT + '/bin/mrp.js', 'recv', '--relay', relay.url, '--key', `${home}/agent.key`, '--json', '--limit', '100'], { env: { ...process.env, MRP_HOME: home } }).toString();
  const got = (recv.match(/msg_\d+_[0-9a-f]{12}/g) || []).filter((id) => taken.includes(id));
  console.log(`[${scenario}] mrp recv took ${new Set(got).size}/5`);
  p = run();
  const fresh = await send('fresh');
  await waitFor(async () => (await replies()).some((m) => m.in_reply_to === fresh), 20000, 200);
  await sleep(1500);
  const rs = await replies();
  const dup = taken.filter((id) => rs.some((m) => m.in_reply_to === id));
  const freshOk = rs.some((m) => m.in_reply_to === fresh);
  const ok = dup.length === 0 && freshOk;
  if (!ok) failures++;
  console.log(`[${scenario}] ${ok ? 'HELD' : 'FAILED'}: runner answered ${dup.length} of the 5 messages recv had taken; fresh answered: ${freshOk}`);
  if (!ok) console.log(p.out.split('\n').filter((l) => /recovered|handled/.test(l)).map((l) => l.slice(0, 200)).join('\n'));
  p.kill('SIGTERM');
  await p.done;
}
await relay.stop();
console.log(failures ? 'FAILED' : 'HELD');
