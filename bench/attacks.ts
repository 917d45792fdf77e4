/**
 * `node --import tsx bench/attacks.ts [--root <dir>] [--only <name,...>] [--hold <seconds>] [--json <file>]`
 *
 * Memory-exhaustion attacks against `mrp relay` (issue 9, items 2 and 3), each against a fresh
 * relay child process, measuring the relay's RSS (Linux /proc) before and at its peak during the
 * attack, and once more when the attack has been held for `--hold` seconds ("settled"). WebSocket
 * connections still open are counted by the relay itself (`/v1/health/details`). `--root` runs the relay of another checkout (e.g. an older commit, built) so figures can
 * be compared; the attacking code is this checkout's. Nothing here asserts: the tests in
 * test/relay/hostile.test.ts check the behaviour; this script reports the figures.
 *
 * Attacks:
 * - `ping-echo`: 4 unauthenticated sockets send 10 pings with a 15 MiB `ts` each and never read.
 * - `unfinished-frames`: 20 unauthenticated sockets each send most of a 15 MiB frame, then stall.
 * - `stalled-posts`: 100 POSTs declaring 2 MiB bodies send all but one byte, then stall.
 * - `slow-reader`: 120 × 1 MiB messages wait for an offline agent, which then connects twice and never reads.
 * - `idle`: a control, 200 honest signed requests (how much a relay grows doing nothing special).
 * - `discover-shapes`: 683 `/v1/discover` requests with 1…683 `tag=` parameters (a new query shape each).
 * - `profile-cache`: 300 agents each store a ~400 KiB profile; each is read back (fills the profile cache).
 * - `freekey-frames`: 30 fresh (free) keys authenticate, each sends all but 10 bytes of a 7.9 MiB frame, then stalls.
 * - `unread-pongs`: 10 fresh keys each send 10,000 JSON pings with a 1 KiB `ts` and never read the pongs.
 * - `control-pings`: 10 fresh keys each send 20,000 WebSocket control pings (125-byte payload) and never read.
 * - `body-gate`: 70 POSTs from one address declare a body and never send it (junk signatures); an
 *   honest sender on another address (127.0.0.2) sends meanwhile: its latencies are the note.
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import WebSocket from 'ws';
import { authFrame, Keypair, signRequest, uniqueTimestamp } from '../src/protocol/signing.js';
import { cleanupAll, installCleanup, ROOT, rssMb } from './lib.js';
import { startRelay as startProductRelay } from './processes.js';

const { values: opts } = parseArgs({
  options: {
    root: { type: 'string' },
    only: { type: 'string' },
    hold: { type: 'string', default: '12' },
    json: { type: 'string' },
  },
});
const root = resolve(opts.root ?? ROOT);
const holdMs = Number(opts.hold) * 1000;
const MiB = 1024 * 1024;

installCleanup();

interface RelayChild {
  pid: number;
  url: string;
  host: string;
  port: number;
  stop(): Promise<void>;
}

async function startRelay(): Promise<RelayChild> {
  const relay = await startProductRelay({ bin: join(root, 'bin', 'mrp.js'), logLevel: 'error' });
  const u = new URL(relay.url);
  return {
    pid: relay.child.pid,
    url: relay.url,
    host: u.hostname,
    port: Number(u.port),
    stop: () => relay.child.stop(),
  };
}

/** Samples the relay's RSS every 50 ms until stopped; returns the peak. */
function sampler(pid: number): { stop(): number } {
  let peak = rssMb(pid);
  const timer = setInterval(() => {
    const v = rssMb(pid);
    if (v > peak) peak = v;
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, rssMb(pid));
    },
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * 10 authenticated sockets that never read, each writing `rounds` × 500 copies of `frame` (each
 * answered by the relay), then held for the hold time: how many the relay still keeps open.
 */
async function floodUnread(relay: RelayChild, frame: Buffer, rounds: number): Promise<{ note: string }> {
  const sockets: Socket[] = [];
  for (let i = 0; i < 10; i++) {
    const s = await authedRawWs(relay);
    s.pause();
    sockets.push(s);
  }
  const burst = Buffer.concat(Array(500).fill(frame));
  await Promise.all(
    sockets.map(async (s) => {
      for (let j = 0; j < rounds && !s.destroyed; j++) await write(s, burst);
    }),
  );
  await sleep(holdMs);
  const open = await relayConnections(relay);
  for (const s of sockets) s.destroy();
  return { note: `${open}/10 sockets still open (relay's count) after ${holdMs / 1000} s` };
}

/** A raw WebSocket client over TCP: handshake by hand, masked frames (zero mask), reads nothing after the handshake. */
async function rawWs(relay: RelayChild): Promise<Socket> {
  const socket = connect(relay.port, relay.host);
  socket.on('error', () => {});
  await new Promise<void>((res, rej) => {
    socket.once('connect', () => res());
    socket.once('error', rej);
  });
  socket.write(
    `GET /v1/ws HTTP/1.1\r\nHost: ${relay.host}:${relay.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await new Promise<void>((res, rej) => {
    let head = '';
    const onData = (d: Buffer): void => {
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) {
        socket.off('data', onData);
        if (!head.startsWith('HTTP/1.1 101')) rej(new Error(head.split('\r\n')[0]));
        else res();
      }
    };
    socket.on('data', onData);
  });
  return socket;
}

/** A client frame header (FIN, `opcode` (text), mask bit, zero masking key) for a payload of `len` bytes. */
function frameHeader(len: number, opcode = 1): Buffer {
  if (len < 126) return Buffer.from([0x80 | opcode, 0x80 | len, 0, 0, 0, 0]);
  if (len < 65536) {
    const b = Buffer.alloc(8);
    b[0] = 0x81;
    b[1] = 0x80 | 126;
    b.writeUInt16BE(len, 2);
    return b;
  }
  const b = Buffer.alloc(14);
  b[0] = 0x80 | opcode;
  b[1] = 0x80 | 127;
  b.writeBigUInt64BE(BigInt(len), 2);
  return b;
}

/** Writes `data` and resolves once it is handed to the kernel (or the socket died). */
function write(socket: Socket, data: Buffer | string): Promise<void> {
  return new Promise((res) => {
    if (socket.destroyed) return res();
    const done = (): void => {
      socket.off('close', done);
      res();
    };
    socket.once('close', done);
    socket.write(data, done);
  });
}

async function signedFetch(
  relay: RelayChild,
  kp: Keypair,
  method: string,
  target: string,
  body?: string,
): Promise<number> {
  const headers = signRequest(kp, method, target, body ?? '', Date.now(), { timestamp: uniqueTimestamp(Date.now()) });
  const res = await fetch(relay.url + target, {
    method,
    headers: { ...headers, 'content-type': 'application/json' },
    ...(body ? { body } : {}),
  });
  await res.arrayBuffer();
  return res.status;
}

interface Outcome {
  note: string;
}

/** WebSocket connections the relay still holds (from /v1/health/details). */
async function relayConnections(relay: RelayChild): Promise<number> {
  const res = await fetch(`${relay.url}/v1/health/details`);
  const body = (await res.json()) as { components?: { websocket?: { connections?: number } } };
  return body.components?.websocket?.connections ?? -1;
}

/** A raw socket authenticated with a fresh key (its answers are left unread once `pause`d). */
async function authedRawWs(relay: RelayChild): Promise<Socket> {
  const s = await rawWs(relay);
  const auth = Buffer.from(JSON.stringify(authFrame(Keypair.generate(), Date.now())));
  let seen = '';
  const ok = new Promise<void>((res) => {
    const onData = (d: Buffer): void => {
      seen += d.toString('latin1');
      if (seen.includes('"status":"ok"') || s.destroyed) {
        s.off('data', onData);
        res();
      }
    };
    s.on('data', onData);
    s.once('close', () => res());
  });
  await write(s, Buffer.concat([frameHeader(auth.length), auth]));
  await ok;
  return s;
}

/** One signed send from `localAddress`; resolves with the status and milliseconds taken. */
function sendFrom(
  relay: RelayChild,
  localAddress: string,
  kp: Keypair,
  to: string,
): Promise<{ status: number; ms: number }> {
  const body = JSON.stringify({ recipient_key: to, body: { text: 'hi' } });
  const headers = signRequest(kp, 'POST', '/v1/messages', body, Date.now(), { timestamp: uniqueTimestamp(Date.now()) });
  const started = performance.now();
  return new Promise((res) => {
    const s = connect({ port: relay.port, host: relay.host, localAddress });
    s.on('error', () => res({ status: 0, ms: performance.now() - started }));
    const lines = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('');
    s.write(
      `POST /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${lines}\r\n${body}`,
    );
    let text = '';
    s.setEncoding('latin1').on('data', (d: string) => {
      text += d;
      if (text.includes('\r\n')) {
        res({ status: Number(text.slice(9, 12)), ms: performance.now() - started });
        s.destroy();
      }
    });
  });
}

const ATTACKS: Record<string, (relay: RelayChild) => Promise<Outcome>> = {
  async 'freekey-frames'(relay) {
    const len = Math.floor(7.9 * MiB);
    const chunk = Buffer.alloc(MiB, 0x20);
    const sockets: Socket[] = [];
    for (let i = 0; i < 30; i++) sockets.push(await authedRawWs(relay));
    await Promise.all(
      sockets.map(async (s) => {
        await write(s, frameHeader(len));
        let sent = 0;
        for (; sent + chunk.length <= len - 10 && !s.destroyed; sent += chunk.length) await write(s, chunk);
        await write(s, chunk.subarray(0, len - 10 - sent));
      }),
    );
    await sleep(holdMs);
    const open = await relayConnections(relay);
    for (const s of sockets) s.destroy();
    return { note: `${open}/30 sockets still open (relay's count) after ${holdMs / 1000} s` };
  },

  async 'unread-pongs'(relay) {
    const p = Buffer.from(`{"type":"ping","ts":"${'x'.repeat(1000)}"}`);
    return floodUnread(relay, Buffer.concat([frameHeader(p.length), p]), 20);
  },

  async 'control-pings'(relay) {
    return floodUnread(relay, Buffer.concat([frameHeader(125, 9), Buffer.alloc(125, 0x70)]), 40);
  },

  async 'body-gate'(relay) {
    const sockets = new Set<Socket>();
    let stop = false;
    let opened = 0;
    const attacker = (async () => {
      while (!stop) {
        while (sockets.size < 70 && !stop) {
          const s = connect({ port: relay.port, host: relay.host, localAddress: '127.0.0.1' });
          s.on('error', () => {});
          await new Promise<void>((res) => {
            s.once('connect', () => res());
            s.once('error', () => res());
          });
          const kp = Keypair.generate();
          s.write(
            `POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n` +
              `X-M2M-Public-Key: ${kp.publicKey}\r\nX-M2M-Timestamp: ${uniqueTimestamp(Date.now())}\r\nX-M2M-Signature: ${'A'.repeat(86)}\r\n\r\n`,
          );
          s.on('data', () => s.destroy());
          s.on('close', () => sockets.delete(s));
          sockets.add(s);
          opened++;
        }
        await sleep(50);
      }
    })();
    await sleep(1000);
    const kp = Keypair.generate();
    const to = Keypair.generate().publicKey;
    const statuses = new Map<number, number>();
    const ms: number[] = [];
    const until = Date.now() + holdMs;
    while (Date.now() < until) {
      const r = await sendFrom(relay, '127.0.0.2', kp, to);
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      if (r.status === 201) ms.push(r.ms);
      await sleep(200);
    }
    stop = true;
    await attacker;
    for (const s of sockets) s.destroy();
    ms.sort((a, b) => a - b);
    const pct = (p: number): string =>
      ms.length ? ms[Math.min(ms.length - 1, Math.floor(p * ms.length))]!.toFixed(1) : '-';
    return {
      note: `${opened} attacker connections; honest sends ${[...statuses].map(([k, v]) => `${v}× ${k}`).join(', ')}; 201 latency p50 ${pct(0.5)} ms, p99 ${pct(0.99)} ms`,
    };
  },

  async 'ping-echo'(relay) {
    const ts = 'x'.repeat(15 * MiB - 64);
    const payload = Buffer.from(`{"type":"ping","ts":"${ts}"}`);
    const sockets = await Promise.all(Array.from({ length: 4 }, () => rawWs(relay)));
    for (const s of sockets) s.pause();
    await Promise.all(
      sockets.map(async (s) => {
        for (let i = 0; i < 10 && !s.destroyed; i++) {
          await write(s, frameHeader(payload.length));
          await write(s, payload);
        }
      }),
    );
    await sleep(holdMs);
    const open = await relayConnections(relay);
    for (const s of sockets) s.destroy();
    return { note: `${open}/4 sockets still open (relay's count) after ${holdMs / 1000} s` };
  },

  async 'unfinished-frames'(relay) {
    const len = 15 * MiB;
    const chunk = Buffer.alloc(MiB, 0x20);
    const sockets = await Promise.all(Array.from({ length: 20 }, () => rawWs(relay)));
    await Promise.all(
      sockets.map(async (s) => {
        await write(s, frameHeader(len));
        for (let sent = 0; sent < len - MiB && !s.destroyed; sent += MiB) await write(s, chunk);
      }),
    );
    await sleep(holdMs);
    const open = await relayConnections(relay);
    for (const s of sockets) s.destroy();
    return { note: `${open}/20 sockets still open (relay's count) after ${holdMs / 1000} s` };
  },

  async 'stalled-posts'(relay) {
    const len = 2 * MiB;
    const chunk = Buffer.alloc(256 * 1024, 0x20);
    const kp = Keypair.generate();
    const answered: string[] = [];
    const sockets = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const s = connect(relay.port, relay.host);
        s.on('error', () => {});
        await new Promise<void>((res) => s.once('connect', () => res()));
        const headers = signRequest(kp, 'POST', '/v1/messages', `stalled ${i}`, Date.now(), {
          timestamp: uniqueTimestamp(Date.now()),
        });
        const lines = Object.entries(headers)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('');
        s.write(
          `POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${len}\r\n${lines}\r\n`,
        );
        s.setEncoding('latin1').on('data', (d: string) => answered.push(d.split('\r\n')[0]!));
        // All but the last byte, then silence.
        let sent = 0;
        for (; sent + chunk.length <= len - 1 && !s.destroyed; sent += chunk.length) await write(s, chunk);
        await write(s, chunk.subarray(0, len - 1 - sent));
        return s;
      }),
    );
    await sleep(holdMs);
    const open = sockets.filter((s) => !s.destroyed && !s.readableEnded).length;
    for (const s of sockets) s.destroy();
    const statuses = new Map<string, number>();
    for (const a of answered) statuses.set(a, (statuses.get(a) ?? 0) + 1);
    return {
      note: `${open}/100 still open after ${holdMs / 1000} s; answers: ${[...statuses].map(([k, v]) => `${v}× ${k}`).join(', ') || 'none'}`,
    };
  },

  async 'slow-reader'(relay) {
    const victim = Keypair.generate();
    const sender = Keypair.generate();
    const ws = new WebSocket(`${relay.url.replace(/^http/, 'ws')}/v1/ws`);
    await new Promise((r) => ws.once('open', r));
    ws.send(JSON.stringify(authFrame(sender, Date.now())));
    let results = 0;
    let ok = 0;
    let waiting: (() => void) | undefined;
    ws.on('message', (d) => {
      results++;
      if (String(d).includes('"status":"ok"')) ok++;
      waiting?.();
    });
    const body = JSON.stringify('y'.repeat(MiB - 16));
    for (let i = 0; i < 120; i++) {
      ws.send(`{"type":"send","request_id":"r${i}","recipient_key":"${victim.publicKey}","body":${body}}`);
      if (i % 10 === 9) await sleep(50);
    }
    while (results < 121) await new Promise<void>((r) => (waiting = r));
    ws.close();
    // The victim connects twice, authenticates, and never reads: the backlog is 120 MiB.
    const readers = await Promise.all(
      [0, 1].map(async (i) => {
        const s = await rawWs(relay);
        const auth = Buffer.from(JSON.stringify(authFrame(victim, Date.now() - i * 1000)));
        await write(s, Buffer.concat([frameHeader(auth.length), auth]));
        s.pause();
        return s;
      }),
    );
    await sleep(holdMs);
    for (const s of readers) s.destroy();
    return { note: `${ok - 1}/120 sends accepted, then 2 readers that never read` };
  },

  async idle(relay) {
    const kp = Keypair.generate();
    for (let i = 0; i < 200; i++) await signedFetch(relay, kp, 'GET', `/v1/agents/me?i=${i}`);
    await sleep(holdMs);
    return { note: '200 honest requests' };
  },

  async 'discover-shapes'(relay) {
    const kp = Keypair.generate();
    const statuses = new Map<number, number>();
    for (let n = 1; n <= 683; n++) {
      const query = Array.from({ length: n }, (_, i) => `tag=t${i.toString(36)}x`).join('&');
      const status = await signedFetch(relay, kp, 'GET', `/v1/discover?${query}`);
      statuses.set(status, (statuses.get(status) ?? 0) + 1);
    }
    await sleep(holdMs);
    return { note: `answers: ${[...statuses].map(([k, v]) => `${v}× ${k}`).join(', ')}` };
  },

  async 'profile-cache'(relay) {
    const schema = { type: 'object', description: 'd'.repeat(16 * 1024 - 64) };
    const capabilities = Array.from({ length: 20 }, (_, i) => ({
      name: `cap${i}`,
      description: 'e'.repeat(1000),
      tags: [`tag${i}`],
      input_schema: schema,
    }));
    const body = JSON.stringify({ display_name: 'big', capabilities });
    const statuses = new Map<number, number>();
    const reader = Keypair.generate();
    for (let i = 0; i < 300; i++) {
      const kp = Keypair.generate();
      const s1 = await signedFetch(relay, kp, 'PATCH', `/v1/agents/${kp.publicKey}`, body);
      const s2 = await signedFetch(relay, reader, 'GET', `/v1/agents/${kp.publicKey}`);
      for (const s of [s1, s2]) statuses.set(s, (statuses.get(s) ?? 0) + 1);
    }
    await sleep(holdMs);
    return {
      note: `${(body.length / 1024).toFixed(0)} KiB profiles; answers: ${[...statuses].map(([k, v]) => `${v}× ${k}`).join(', ')}`,
    };
  },
};

const only = opts.only ? opts.only.split(',') : Object.keys(ATTACKS);
const report: Array<{
  attack: string;
  baseline_mb: number;
  peak_mb: number;
  growth_mb: number;
  settled_mb: number;
  alive: boolean;
  note: string;
}> = [];
console.error(`relay under test: ${root}`);
for (const name of only) {
  const attack = ATTACKS[name];
  if (!attack) throw new Error(`unknown attack ${name}; known: ${Object.keys(ATTACKS).join(', ')}`);
  const relay = await startRelay();
  await sleep(1500);
  const baseline = rssMb(relay.pid);
  const s = sampler(relay.pid);
  let note: string;
  try {
    note = (await attack(relay)).note;
  } catch (err) {
    note = `attack failed: ${(err as Error).message}`;
  }
  const settled = rssMb(relay.pid);
  const peak = s.stop();
  let alive = false;
  try {
    alive = (await fetch(`${relay.url}/v1/health`)).ok;
  } catch {
    alive = false;
  }
  report.push({
    attack: name,
    baseline_mb: Math.round(baseline),
    peak_mb: Math.round(peak),
    growth_mb: Math.round(peak - baseline),
    settled_mb: Math.round(settled),
    alive,
    note,
  });
  console.error(
    `${name.padEnd(18)} baseline ${baseline.toFixed(0).padStart(4)} MB  peak ${peak.toFixed(0).padStart(5)} MB  (+${(peak - baseline).toFixed(0)} MB)` +
      `  settled ${settled.toFixed(0).padStart(5)} MB  ${alive ? 'alive' : 'DEAD'}  ${note}`,
  );
  await relay.stop();
}
if (opts.json) writeFileSync(opts.json, `${JSON.stringify(report, null, 2)}\n`);
cleanupAll();
