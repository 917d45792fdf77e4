// Issue item 3 re-check: 120 x ~1 MiB queued for one recipient, then 2 of its connections that
// authenticate and never read. Relay RSS before / peak / after 12 s.  Usage: node 03d-slow-reader.mjs
import { startRelay, keypair, authFrame, req, sleep } from './lib.mjs';
import { rawConnect, frame } from './rawws.mjs';
const relay = await startRelay('/tmp/rt/sr-' + process.pid);
const to = keypair(); const from = keypair();
const body = JSON.stringify({ recipient_key: to.pub, body: { pad: 'x'.repeat(1048576 - 20) } });
for (let i = 0; i < 120; i++) { const r = await req(relay.url, 'POST', '/v1/messages', { kp: from, body }); if (r.status !== 201) { console.log('send', r.status, r.text.slice(0, 100)); break; } }
await sleep(3000);
const before = relay.rss();
let peak = before; const iv = setInterval(() => { peak = Math.max(peak, relay.rss()); }, 100);
const socks = [];
for (let i = 0; i < 2; i++) { const s = await rawConnect(relay.url, { read: false }); s.write(frame(1, authFrame(to))); socks.push(s); await sleep(50); }
await sleep(12000);
clearInterval(iv);
console.log(`2 non-reading connections, 120 MiB queued: RSS before ${before.toFixed(0)} MB, peak ${peak.toFixed(0)} (+${(peak - before).toFixed(0)}), after 12 s ${relay.rss().toFixed(0)}`);
for (const s of socks) s.destroy();
await relay.stop();
