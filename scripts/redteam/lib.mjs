// Shared helpers for the red-team repros. Independent signing with node:crypto.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { createRequire } from 'node:module';

export const ROOT = process.env.MRP_ROOT || new URL('../..', import.meta.url).pathname.replace(/\/$/, '');
const require = createRequire(ROOT + '/package.json');
export const WebSocket = require('ws');

export const b64u = (b) => Buffer.from(b).toString('base64url');

export function keypair(seed = crypto.randomBytes(32)) {
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  const priv = crypto.createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  const pubDer = crypto.createPublicKey(priv).export({ format: 'der', type: 'spki' });
  const pub = b64u(pubDer.subarray(12));
  return { seed, pub, sign: (m) => b64u(crypto.sign(null, Buffer.from(m), priv)) };
}

export function writeKey(path, kp) {
  fs.writeFileSync(path, kp.seed, { mode: 0o600 });
}

let last = 0;
export function ts() {
  // millisecond timestamps so repeats never collide
  let t = Date.now();
  if (t <= last) t = last + 1;
  last = t;
  return new Date(t).toISOString();
}

export function signHeaders(kp, method, target, body = Buffer.alloc(0)) {
  const t = ts();
  const h = b64u(crypto.createHash('sha256').update(body).digest());
  return {
    'x-m2m-public-key': kp.pub,
    'x-m2m-timestamp': t,
    'x-m2m-signature': kp.sign(`${method}\n${target}\n${t}\n${h}`),
  };
}

export function req(base, method, target, { body, kp, headers = {}, timeout = 15000 } = {}) {
  const buf = body === undefined ? Buffer.alloc(0) : Buffer.isBuffer(body) ? body : Buffer.from(body);
  const u = new URL(base);
  const hs = { ...headers };
  if (kp) Object.assign(hs, signHeaders(kp, method, target, buf));
  if (buf.length) hs['content-type'] ??= 'application/json';
  hs['content-length'] = buf.length;
  return new Promise((resolve) => {
    const r = http.request(
      { host: u.hostname, port: u.port, method, path: target, headers: hs, timeout, agent: false },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text: Buffer.concat(chunks).toString() }));
        res.on('error', (e) => resolve({ status: -1, text: String(e) }));
      },
    );
    r.on('error', (e) => resolve({ status: -1, text: String(e.code || e) }));
    r.on('timeout', () => { r.destroy(); resolve({ status: -2, text: 'timeout' }); });
    r.end(buf);
  });
}

export async function startRelay(dataDir, args = []) {
  fs.mkdirSync(dataDir, { recursive: true });
  const p = spawn(process.execPath, [ROOT + '/bin/mrp.js', 'relay', '--port', '0', '--data-dir', dataDir, '--log-format', 'json', '--send-rate', '0', '--receive-rate', '0', '--request-rate', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  p.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((r) => p.on('exit', (code, sig) => r({ code, sig })));
  const url = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('relay did not start: ' + out)), 15000);
    const iv = setInterval(() => {
      const m = out.match(/"url":"(http:\/\/[^"]+)"/);
      if (m) { clearTimeout(t); clearInterval(iv); resolve(m[1]); }
    }, 50);
    exited.then((e) => { clearTimeout(t); clearInterval(iv); reject(new Error('relay exited ' + JSON.stringify(e) + out)); });
  });
  let alive = true;
  exited.then(() => { alive = false; });
  return {
    url, proc: p, pid: p.pid, exited,
    get alive() { return alive; },
    log: () => out,
    rss: () => rssOf(p.pid),
    async stop() { if (alive) { p.kill('SIGTERM'); const t = setTimeout(() => p.kill('SIGKILL'), 8000); await exited; clearTimeout(t); } return exited; },
  };
}

export function rssOf(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    return Number(s.match(/VmRSS:\s+(\d+)/)[1]) / 1024;
  } catch { return NaN; }
}

export function wsOpen(base, opts = {}) {
  return new Promise((resolve) => {
    const ws = new WebSocket(base.replace(/^http/, 'ws') + '/v1/ws', { perMessageDeflate: false, ...opts });
    const frames = [];
    ws.frames = frames;
    ws.closeInfo = null;
    ws.on('message', (d, isBin) => frames.push(isBin ? d : d.toString()));
    ws.on('close', (code, reason) => { ws.closeInfo = { code, reason: reason.toString() }; });
    ws.on('error', () => {});
    ws.on('open', () => resolve(ws));
    ws.on('unexpected-response', (_r, res) => { ws.closeInfo = { code: -res.statusCode }; resolve(ws); });
    ws.once('error', (e) => { ws.closeInfo ??= { code: -1, reason: String(e) }; resolve(ws); });
  });
}

export function authFrame(kp) {
  const t = ts();
  return JSON.stringify({ type: 'auth', public_key: kp.pub, timestamp: t, signature: kp.sign(`WS\n${t}`) });
}

export async function wsAuthed(base, kp) {
  const ws = await wsOpen(base);
  ws.send(authFrame(kp));
  await waitFor(() => ws.frames.some((f) => String(f).includes('auth_result')) || ws.closeInfo, 5000);
  return ws;
}

export async function waitFor(fn, ms = 5000, step = 20) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const v = await fn();
    if (v) return v;
    await sleep(step);
  }
  return fn();
}
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export const deep = (n, inner = '0', o = '[', c = ']') => o.repeat(n) + inner + c.repeat(n);
export const deepObj = (n, inner = '0') => '{"a":'.repeat(n) + inner + '}'.repeat(n);

export function rawSocket(base) {
  const u = new URL(base);
  return new Promise((resolve) => {
    const s = net.connect(Number(u.port), u.hostname, () => resolve(s));
    s.on('error', () => {});
  });
}

export async function health(base) {
  return req(base, 'GET', '/v1/health/live', { timeout: 3000 });
}
