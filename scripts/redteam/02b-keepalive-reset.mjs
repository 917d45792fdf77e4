// Keep-alive reset: the relay answers a request whose body it did not read (401 before the body,
// 404/405/400 on bad paths, public routes) WITHOUT "Connection: close", then destroys the socket.
// A keep-alive client (Node's default agent, undici/fetch, browsers) reuses that socket for the
// next request, which then fails (ECONNRESET / socket hang up) although it was well-formed.
// Usage: node 02b-keepalive-reset.mjs
import http from 'node:http';
import { startRelay, keypair, signHeaders, sleep } from './lib.mjs';
const relay = await startRelay('/tmp/rt/ka-' + process.pid);
const u = new URL(relay.url);
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const kp = keypair();
function go(method, path, body, headers = {}) {
  return new Promise((resolve) => {
    const buf = Buffer.from(body ?? '');
    const r = http.request({ host: u.hostname, port: u.port, method, path, agent, headers: { 'content-length': buf.length, ...headers } }, (res) => {
      let t = ''; res.on('data', (d) => (t += d)); res.on('end', () => resolve(`${res.statusCode} connection=${res.headers.connection}`));
    });
    r.on('error', (e) => resolve('ERROR ' + e.code + ' ' + e.message));
    r.end(buf);
  });
}
const cases = [
  ['POST /v1/messages, stale timestamp (401 before body)', 'POST', '/v1/messages', '{"recipient_key":"x","body":1}', { ...signHeaders(kp, 'POST', '/v1/messages'), 'x-m2m-timestamp': '2020-01-01T00:00:00Z' }],
  ['POST /v1/messages, no auth headers', 'POST', '/v1/messages', '{"body":1}', {}],
  ['POST /v1/nope (404)', 'POST', '/v1/nope', '{}', {}],
  ['POST /v1/health (405)', 'POST', '/v1/health', '{}', {}],
];
let fails = 0;
for (const [name, m, p, b, h] of cases) {
  const first = await go(m, p, b, h);
  if (process.env.GAP) await sleep(Number(process.env.GAP));
  const second = await go('GET', '/v1/health');
  const bad = second.startsWith('ERROR');
  if (bad) fails++;
  console.log(`${bad ? 'FAIL' : 'ok  '} ${name}: first ${first}; then GET /v1/health on the pooled socket -> ${second}`);
}
agent.destroy(); await relay.stop();
console.log(fails ? `${fails} cases: an honest follow-up request failed` : 'held');
