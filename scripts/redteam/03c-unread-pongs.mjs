// Free keys, never reading: each socket sends 10,000 JSON pings with a 1 KiB ts (pong echoes it),
// never reads. Documented: "more than 8 MiB of unread answers -> close 1008".
// Usage: node 03c-unread-pongs.mjs [sockets=10]
import { startRelay, keypair, authFrame, sleep } from './lib.mjs';
import { rawConnect, frame } from './rawws.mjs';
const N = Number(process.argv[2] || 10);
const relay = await startRelay('/tmp/rt/up-' + process.pid);
await sleep(1000);
const before = relay.rss();
let peak = before; const iv = setInterval(() => { peak = Math.max(peak, relay.rss()); }, 100);
const socks = [];
for (let i = 0; i < N; i++) {
  const s = await rawConnect(relay.url, { read: false });
  s.write(frame(1, authFrame(keypair())));
  await sleep(30);
  const ping = frame(1, `{"type":"ping","ts":"${'x'.repeat(1000)}"}`);
  for (let j = 0; j < 20; j++) s.write(Buffer.concat(Array(500).fill(ping)));
  socks.push(s);
}
await sleep(5000);
clearInterval(iv);
const log = relay.log();
console.log(`${N} sockets: RSS before ${before.toFixed(0)}, peak ${peak.toFixed(0)} (+${(peak - before).toFixed(0)}), now ${relay.rss().toFixed(0)}; ws_slow_reader log lines: ${(log.match(/ws_slow_reader/g) || []).length}; ws_close lines: ${(log.match(/"ws_close"/g) || []).length}`);
for (const s of socks) s.destroy();
await relay.stop();
