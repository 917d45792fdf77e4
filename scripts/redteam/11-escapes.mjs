// Item 5: terminal escapes from peers. A peer with an escape-laden display name, capability
// description and metadata sends messages whose body, content_type, in_reply_to, metadata and body
// keys carry OSC title, clear screen, OSC 8 links, C1 CSI, BEL, \r overwrites, bidi override.
// The victim runs tail, recv, get, thread, discover, profile, status, send --wait on a TTY
// (script(1), 120 columns) with and without colour; any peer payload byte sequence reaching the
// terminal raw is reported.  Usage: node 11-escapes.mjs
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { ROOT, startRelay, keypair, writeKey, req, sleep } from './lib.mjs';

const relay = await startRelay(`/tmp/rt/r11-${process.pid}`);
const home = `/tmp/rt/h11-${process.pid}`;
fs.mkdirSync(home, { recursive: true, mode: 0o700 });
const victim = keypair(); const peer = keypair();
writeKey(`${home}/agent.key`, victim);
writeKey(`${home}/peer.key`, peer);
const ESC = '\u001b';
const payloads = {
  osc_title: `${ESC}]0;PWNED-TITLE\u0007`,
  clear: `${ESC}[2J${ESC}[H`,
  osc8: `${ESC}]8;;http://evil.example/${ESC}\\CLICK${ESC}]8;;${ESC}\\`,
  c1_csi: '\u009b31mC1RED',
  c1_osc: '\u009d0;C1TITLE\u009c',
  cr: 'GOOD\rEVIL',
  bel: 'ding\u0007',
  bs: 'abc\b\b\bXYZ',
  bidi: 'safe\u202Etxt.exe',
};
const all = Object.values(payloads).join(' ');
const markers = { osc_title: `${ESC}]0;PWNED`, clear: `${ESC}[2J`, osc8: `${ESC}]8;;http://evil`, c1_csi: '\u009b31m', c1_osc: '\u009d0;', cr: 'GOOD\rEVIL', bel: 'ding\u0007', bs: 'abc\b', bidi: '\u202E' };

// peer profile
await req(relay.url, 'PATCH', `/v1/agents/${peer.pub}`, { kp: peer, body: JSON.stringify({ display_name: ('N ' + all).slice(0, 250), visibility: 'public', metadata: { ['k' + ESC + '[2J']: ('v ' + all).slice(0, 250) }, capabilities: [{ name: 'cap' + payloads.osc_title, description: 'D ' + all, tags: ['esc-test'] }] }) });
await req(relay.url, 'PATCH', `/v1/agents/${victim.pub}`, { kp: victim, body: JSON.stringify({ inbox_policy: 'open' }) });
const send = async (body, extra = {}) => JSON.parse((await req(relay.url, 'POST', '/v1/messages', { kp: peer, body: JSON.stringify({ recipient_key: victim.pub, body, thread_id: 'esc-thread', metadata: { m: all }, ...extra }) })).text).message_id;
const ids = [];
ids.push(await send({ text: 'T ' + all }));
ids.push(await send({ ['key' + payloads.osc_title]: all, nested: { deep: all } }));
ids.push(await send('plain string ' + all, { content_type: 'text/plain' + payloads.osc_title }));
ids.push(await send({ text: 'reply-ish' }, { in_reply_to: ('x' + payloads.osc_title + payloads.cr).slice(0, 120) }));

// a peer runner that answers with escapes (for send --wait)
fs.writeFileSync(`${home}/evil.mjs`, `export default async () => ({ text: ${JSON.stringify('R ' + all)} });\n`);
const peerHome = `${home}/peerhome`; fs.mkdirSync(peerHome, { mode: 0o700 });
const runner = spawn(process.execPath, [ROOT + '/bin/mrp.js', 'run', '--handler', `${home}/evil.mjs`, '--relay', relay.url, '--key', `${home}/peer.key`, '--log-format', 'json'], { env: { ...process.env, MRP_HOME: peerHome }, stdio: 'ignore' });
await sleep(1500);

const tty = (args, secs = 6, color = false) => {
  const cmd = `stty cols 120 rows 40; exec timeout ${secs} node ${ROOT}/bin/mrp.js ${args} --relay ${relay.url} --key ${home}/agent.key${color ? '' : ' --no-color'}`;
  const r = spawnSync('script', ['-qfec', cmd, '/dev/null'], { env: { ...process.env, MRP_HOME: home, TERM: 'xterm-256color', ...(color ? { FORCE_COLOR: '1' } : {}) }, timeout: (secs + 10) * 1000, maxBuffer: 64 << 20 });
  return r.stdout.toString('utf8');
};
const cmds = [
  ['tail -n 4', 5], [`get ${ids[0]}`, 6], [`get ${ids[1]}`, 6], [`get ${ids[2]}`, 6], [`get ${ids[3]}`, 6], ['thread esc-thread', 6], ['discover --tag esc-test', 6], ['discover --tag esc-test --all', 6],
  [`profile ${peer.pub}`, 6], [`status ${ids[0]}`, 6], ['recv --ws', 5], ['recv --no-ack', 6], ['recv --status sent', 6], ['recv --status delivered', 6], ['capabilities', 6],
  [`send --to ${peer.pub} --text hi --wait 10`, 14],
];
let bad = 0;
for (const color of [false, true]) {
  for (const [c, secs] of cmds) {
    const out = tty(c, secs, color);
    const leaked = Object.entries(markers).filter(([, m]) => out.includes(m)).map(([k]) => k);
    const showed = /PWNED|C1RED|EVIL|CLICK|ding|XYZ|txt/.test(out);
    if (leaked.length) bad++;
    console.log(`${leaked.length ? 'FAIL' : showed ? 'ok  ' : 'ok? '} ${color ? 'color' : 'plain'} mrp ${c.replace(/[A-Za-z0-9_-]{43}/g, 'KEY').replace(/msg_\w+/, 'ID')}: ${leaked.length ? 'RAW: ' + leaked.join(',') : showed ? 'payloads shown neutralised' : 'payload text not shown'} (${out.length} B)`);
    if (leaked.length && process.env.VERBOSE) console.log(JSON.stringify(out.slice(0, 1500)));
  }
}
// mrp run --log-payloads on a TTY
fs.writeFileSync(`${home}/noop.mjs`, 'export default async () => null;\n');
for (const color of [false, true]) {
  await send({ text: 'RUN ' + all });
  const out = tty(`run --handler ${home}/noop.mjs --log-payloads`, 5, color);
  const leaked = Object.entries(markers).filter(([, m]) => out.includes(m)).map(([k]) => k);
  if (leaked.length) bad++;
  console.log(`${leaked.length ? 'FAIL' : 'ok  '} ${color ? 'color' : 'plain'} mrp run --log-payloads: ${leaked.length ? 'RAW: ' + leaked.join(',') : 'no raw sequences'} (${out.length} B)`);
}
runner.kill('SIGTERM');
await new Promise((r) => runner.on('exit', r));
await relay.stop();
console.log(bad ? `FAILED: ${bad} command runs leaked raw control sequences` : 'HELD');
