import assert from 'node:assert/strict';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Clock, systemClock } from '../../src/core/clock.js';
import { Keypair } from '../../src/protocol/signing.js';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';
import { RawSocket, startRelay } from '../helpers/relay.js';

const ECHO = fileURLToPath(new URL('../../handlers/echo.ts', import.meta.url));

interface Check {
  name: string;
  status: string;
  summary: string;
  hint?: string;
  details?: Record<string, unknown>;
}

/** A port nothing listens on. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function skewed(ms: number): Clock {
  return { now: () => Date.now() + ms, setTimeout: systemClock.setTimeout, setInterval: systemClock.setInterval };
}

async function setup(t: import('node:test').TestContext, options: { clock?: Clock; relayUrl?: string } = {}) {
  const home = await tempDir(t);
  const relayUrl = options.relayUrl ?? (await startRelay(t)).url;
  const deps = testDeps({ home, env: { MRP_RELAY_URL: relayUrl }, ...(options.clock ? { clock: options.clock } : {}) });
  const keygen = await runCli(['keygen', '--json'], deps);
  assert.equal(keygen.code, 0, keygen.stderr);
  return { home, deps, relayUrl, publicKey: JSON.parse(keygen.stdout).public_key as string };
}

async function doctor(argv: string[], deps: ReturnType<typeof testDeps>) {
  const res = await runCli(['doctor', '--json', ...argv], deps);
  const doc = JSON.parse(res.stdout) as { ok: boolean; checks: Check[] };
  const by = Object.fromEntries(doc.checks.map((c) => [c.name, c]));
  return { res, doc, by };
}

describe('mrp doctor', () => {
  it('a healthy setup: every check passes, a real handshake closes cleanly, exit 0', async (t) => {
    const relay = await startRelay(t);
    const { deps, publicKey } = await setup(t, { relayUrl: relay.url });
    const { res, doc, by } = await doctor(['--handler', ECHO], deps);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(res.stderr, '');
    assert.equal(doc.ok, true);
    assert.deepEqual(
      doc.checks.map((c) => c.name),
      ['node', 'config', 'key', 'relay', 'clock', 'auth', 'sockets', 'journal', 'manifest', 'handler'],
    );
    for (const name of ['node', 'config', 'key', 'relay', 'clock', 'auth', 'sockets', 'journal', 'handler'])
      assert.equal(by[name]!.status, 'ok', `${name}: ${by[name]!.summary}`);
    assert.equal(by['manifest']!.status, 'skip');
    assert.equal(by['key']!.details!['public_key'], publicKey);
    assert.match(
      by['clock']!.summary,
      /^offset [+−]\d+\.\d s \(this machine \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ, relay \d{4}-.*Z\)$/,
    );
    assert.match(by['auth']!.summary, /closed cleanly \(1000\)/);
    // The handshake really happened: the relay logged the auth and the clean close.
    assert.ok(
      relay.logs.some((l) => l.msg === 'ws_auth' || JSON.stringify(l).includes(publicKey)),
      'relay saw the agent',
    );

    // A WebSocket auth frame carries a whole-second timestamp, and the relay refuses a repeat
    // within the same second (replay); the later runs sign one and two seconds ahead.
    const piped = await runCli(
      ['doctor'],
      testDeps({ home: deps.env['MRP_HOME']!, env: { MRP_RELAY_URL: relay.url }, clock: skewed(1000) }),
    );
    assert.equal(piped.code, 0, piped.stderr);
    const lines = piped.stdout.trim().split('\n').filter(Boolean);
    assert.match(lines[0]!, /^ok {3}node {5}v\d+\.\d+\.\d+$/);
    assert.ok(lines.some((l) => /^skip manifest /.test(l)));
    assert.match(piped.stdout, /All checks passed\./);
    assert.ok(!piped.stdout.includes('✓'), 'plain words when piped');

    const tty = await runCli(
      ['doctor'],
      testDeps({ home: deps.env['MRP_HOME']!, env: { MRP_RELAY_URL: relay.url }, tty: true, clock: skewed(2000) }),
    );
    assert.match(tty.stdout, /^✓ node /m);
    assert.match(tty.stdout, /^- manifest /m);
  });

  it('a clock 10 minutes fast fails (both times shown) and the relay refuses the login', async (t) => {
    const { deps } = await setup(t, { clock: skewed(10 * 60_000) });
    const { res, doc, by } = await doctor([], deps);
    assert.equal(res.code, 1);
    assert.equal(doc.ok, false);
    assert.equal(by['clock']!.status, 'fail');
    assert.match(by['clock']!.summary, /^offset \+600 s \(this machine .*Z, relay .*Z\)$/);
    assert.ok(Math.abs((by['clock']!.details!['offset_ms'] as number) - 600_000) < 2000);
    assert.equal(by['auth']!.status, 'fail');
    assert.equal(by['auth']!.details!['code'], 'timestamp_expired');
    const err = JSON.parse(res.stderr.trim()).error;
    assert.equal(err.code, 'doctor_failed');
    assert.deepEqual(err.details.failed, ['clock', 'auth']);
  });

  it('a relay Date header at the end of time is a failed clock check, not a crash of doctor', async (t) => {
    // Answers /v1/health with a Date a JavaScript Date can just hold; the WebSocket login then fails.
    const server = createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', () => {
        const body = JSON.stringify({ status: 'ok', version: '1' });
        socket.end(
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\ndate: Sat, 13 Sep 275760 00:00:00 GMT\r\n\r\n${body}`,
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const { deps } = await setup(t, { relayUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
    const { res, by } = await doctor(['--timeout', '2s'], deps);
    assert.equal(res.code, 1, res.stderr);
    assert.equal(by['clock']!.status, 'fail');
    assert.match(by['clock']!.summary, /relay \+?275760-09-13T00:00:00Z\)$/);
    assert.ok(by['handler'], 'the checks after it ran');
  });

  it('a clock 2 minutes slow is a warning, not a failure', async (t) => {
    const { deps } = await setup(t, { clock: skewed(-2 * 60_000) });
    const { res, by } = await doctor([], deps);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(by['clock']!.status, 'warn');
    assert.match(by['clock']!.summary, /^offset −120 s/);
    assert.equal(by['auth']!.status, 'ok');
  });

  it('a world-readable key fails with the chmod to run; a failure exits 1 with one error line', async (t) => {
    const { deps, home } = await setup(t);
    const key = join(home, 'agent.key');
    await chmod(key, 0o644);
    const { res, by } = await doctor([], deps);
    assert.equal(res.code, 1);
    assert.equal(by['key']!.status, 'fail');
    assert.match(by['key']!.summary, /mode 0644: every user on this machine can read/);
    assert.equal(by['key']!.hint, `run \`chmod 600 ${key}\``);
    assert.equal(by['auth']!.status, 'skip');
    assert.equal(by['relay']!.status, 'ok', 'other checks still run');

    const human = await runCli(['doctor'], deps);
    assert.equal(human.code, 1);
    assert.match(human.stdout, /^fail key {6}.*mode 0644.* — run `chmod 600 /m);
    assert.deepEqual(human.stderr.trim().split('\n'), ['error: 1 check failed: key']);
    await chmod(key, 0o640);
    assert.match((await doctor([], deps)).by['key']!.summary, /mode 0640: its group can read/);
  });

  it('an unreachable relay fails and the checks that need it are skipped', async (t) => {
    const port = await freePort();
    const { deps } = await setup(t, { relayUrl: `http://127.0.0.1:${port}` });
    const { res, by } = await doctor([], deps);
    assert.equal(res.code, 1);
    assert.equal(by['relay']!.status, 'fail');
    assert.equal(by['relay']!.summary, `cannot reach http://127.0.0.1:${port} (ECONNREFUSED)`);
    assert.deepEqual([by['clock']!.status, by['auth']!.status, by['sockets']!.status], ['skip', 'skip', 'skip']);
    assert.equal(by['journal']!.status, 'ok');
  });

  it('a health answer that never ends is read only up to 64 KiB (not until --timeout), and https:// to a plain relay names the TLS handshake', async (t) => {
    const { createServer: createHttpServer } = await import('node:http');
    let written = 0;
    const chunk = Buffer.alloc(1 << 20, 0x61);
    const endless = createHttpServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"status":"ok","version":"');
      const pump = (): void => {
        while (!res.destroyed && written < 256 * 2 ** 20 && res.write(chunk)) written += chunk.length;
      };
      res.on('drain', pump);
      req.on('close', () => res.destroy());
      pump();
    });
    await new Promise<void>((resolve) => endless.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      endless.closeAllConnections();
      endless.close();
    });
    const url = `http://127.0.0.1:${(endless.address() as AddressInfo).port}`;
    const { deps } = await setup(t, { relayUrl: url });
    const { by } = await doctor(['--timeout', '20s'], deps);
    assert.doesNotMatch(by['relay']!.summary, /no answer within/, by['relay']!.summary);
    assert.ok(written < 64 * 2 ** 20, `the relay wrote ${written} bytes before doctor stopped reading`);

    const plain = await startRelay(t);
    const tls = await setup(t, { relayUrl: plain.url.replace('http:', 'https:') });
    const { by: tlsBy } = await doctor([], tls.deps);
    assert.equal(tlsBy['relay']!.status, 'fail');
    assert.match(tlsBy['relay']!.summary, /\(TLS handshake failed: \S+/);
    assert.match(String(tlsBy['relay']!.hint), /a local relay without TLS is http:\/\//);
  });

  it("says when other processes hold the key's sockets (4002) or its journal lock", async (t) => {
    const relay = await startRelay(t);
    const { deps, home } = await setup(t, { relayUrl: relay.url });
    const who = JSON.parse((await runCli(['whoami', '--json'], deps)).stdout);
    const { readFile } = await import('node:fs/promises');
    const kp = Keypair.fromSeed(new Uint8Array(await readFile(who.key_file)));
    // Two connections, signed in different seconds (a repeat within one second is a replay).
    for (const at of [Date.now() - 2000, Date.now() - 1000]) {
      const s = await RawSocket.open(relay.wsUrl);
      t.after(() => s.ws.terminate());
      assert.equal((await s.auth(kp, at)).status, 'ok');
    }
    const stateDir = join(home, 'state', who.public_key);
    await mkdir(stateDir, { recursive: true });
    await writeFile(join(stateDir, 'lock'), `${process.pid}\n`);
    const { res, by } = await doctor([], deps);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(by['auth']!.status, 'ok');
    assert.equal(by['sockets']!.status, 'warn');
    assert.match(by['sockets']!.summary, /close 4002/);
    assert.equal(by['journal']!.status, 'warn');
    assert.match(by['journal']!.summary, new RegExp(`locked by pid ${process.pid}`));
  });

  it('reports an invalid manifest and a handler that does not load', async (t) => {
    const { deps, home } = await setup(t);
    await writeFile(join(home, 'mrp.yaml'), 'name: Bot\nvisibilty: public\n');
    await writeFile(join(home, 'bad.ts'), 'export const x = 1;\n');
    const { res, by } = await doctor(['--handler', './bad.ts'], deps);
    assert.equal(res.code, 1);
    assert.equal(by['manifest']!.status, 'fail');
    assert.match(by['manifest']!.summary, /mrp\.yaml:2: visibilty: unknown key/);
    assert.equal(by['handler']!.status, 'fail');
    assert.equal(by['handler']!.details!['code'], 'handler_invalid');
  });
});
