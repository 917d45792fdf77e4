// mrp.db truncated to 0 bytes under a running relay: polls answer 503 (SQLITE_IOERR_SHORT_READ) and
// sends still get 201, but /v1/health/ready keeps answering 200 ok.  Usage: node 13b-truncated-db.mjs
import fs from 'node:fs';
import { startRelay, keypair, req, sleep } from './lib.mjs';
const D = '/tmp/rt/trunc-' + process.pid;
const a = await startRelay(D);
const k = keypair(), t = keypair();
for (let i = 0; i < 100; i++) await req(a.url, 'POST', '/v1/messages', { kp: k, body: JSON.stringify({ recipient_key: t.pub, body: { pad: 'q'.repeat(50000) } }) });
await sleep(1500);
console.log('db size', fs.statSync(D + '/mrp.db').size, 'wal', fs.statSync(D + '/mrp.db-wal').size);
fs.truncateSync(D + '/mrp.db', 0);
await sleep(1200);
const r = await req(a.url, 'GET', '/v1/health/ready'); console.log('ready', r.status, r.text.trim());
const p = await req(a.url, 'GET', '/v1/messages?limit=100', { kp: t }); console.log('poll', p.status, p.text.slice(0, 120), 'count', (p.text.match(/msg_/g) || []).length);
const s = await req(a.url, 'POST', '/v1/messages', { kp: k, body: JSON.stringify({ recipient_key: t.pub, body: 1 }) }); console.log('send', s.status, s.text.slice(0, 100));
const g = await req(a.url, 'GET', '/v1/agents/' + k.pub, { kp: k }); console.log('profile', g.status, g.text.slice(0, 80));
await sleep(1200);
const r2 = await req(a.url, 'GET', '/v1/health/ready'); console.log('ready', r2.status, r2.text.trim());
console.log(a.log().split('\n').filter(l => /error|corrupt/i.test(l)).slice(0, 3).join('\n').slice(0, 600));
await a.stop();
