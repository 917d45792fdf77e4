// Item 2 with free keys: each socket authenticates with a fresh (free) key, then sends an
// unfinished frame just under the 8 MiB post-auth cap and stalls. Relay RSS grows ~8 MiB per
// socket, no global cap; held until the heartbeat cuts them (~40 s).
// Usage: node 03b-freekey-frames.mjs [sockets=30]
import { startRelay, keypair, authFrame, sleep } from './lib.mjs';
import { rawConnect, frame } from './rawws.mjs';
const N = Number(process.argv[2] || 30);
const relay = await startRelay('/tmp/rt/fk-' + process.pid);
await sleep(1000);
const before = relay.rss();
const socks = [];
for (let i = 0; i < N; i++) {
  const s = await rawConnect(relay.url);
  s.write(frame(1, authFrame(keypair())));
  await sleep(20);
  const f = frame(1, Buffer.alloc(Math.floor(7.9 * 1048576), 0x20));
  s.write(f.subarray(0, f.length - 10));
  socks.push(s);
}
for (const t of [2, 20, 35, 45, 60]) {
  while ((Date.now() - 0) && false);
  await sleep(t === 2 ? 2000 : (t - [2, 20, 35, 45, 60][[2, 20, 35, 45, 60].indexOf(t) - 1]) * 1000);
  console.log(`t=${t}s: relay RSS ${relay.rss().toFixed(0)} MB (before ${before.toFixed(0)}), sockets open ${socks.filter((s) => !s.ended).length}/${N}`);
}
for (const s of socks) s.destroy();
await relay.stop();
