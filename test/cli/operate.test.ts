import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { RunnerMonitor } from '../../src/cli/metrics.js';
import { RelayClient } from '../../src/client/http.js';
import { Registry } from '../../src/core/metrics.js';
import { Keypair } from '../../src/protocol/signing.js';
import { createRelay } from '../../src/relay/index.js';
import { connected, Peer, startAgent } from '../helpers/agent.js';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';
import { FlakyDisk } from '../helpers/flaky-disk.js';
import { parsePrometheus, sampleValue } from '../helpers/prometheus.js';
import { startRelay } from '../helpers/relay.js';

const ECHO = fileURLToPath(new URL('../../handlers/echo.ts', import.meta.url));

async function get(url: string): Promise<{ status: number; text: string; type: string | null }> {
  const res = await fetch(url);
  return { status: res.status, text: await res.text(), type: res.headers.get('content-type') };
}

/** The first JSON event named `event` on a captured stream, once it is there. */
async function eventOf(
  stream: { waitFor(t: string): Promise<void>; text: string },
  event: string,
): Promise<Record<string, unknown>> {
  const needle = `"event":"${event}"`;
  await stream.waitFor(needle);
  return JSON.parse(stream.text.split('\n').find((l) => l.includes(needle))!) as Record<string, unknown>;
}

describe('mrp run --health-port', () => {
  it('readyz turns 503 while the relay is down and 200 when it is back; metrics count what happened', async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), 'mrp-relay-'));
    t.after(() => rm(dataDir, { recursive: true, force: true }));
    let relay = createRelay({ port: 0, dataDir, logger: () => undefined });
    const url = await relay.listen();
    t.after(() => relay.close());
    const home = await tempDir(t);
    const deps = testDeps({ home, env: { MRP_RELAY_URL: url } });
    const { public_key: me } = JSON.parse((await runCli(['keygen', '--json'], deps)).stdout);

    const run = runCli(['run', '--handler', ECHO, '--health-port', '0'], deps);
    const health = (await eventOf(deps.stdout, 'health'))['url'] as string;
    assert.match(health, /^http:\/\/127\.0\.0\.1:\d+$/);
    await eventOf(deps.stdout, 'ready');
    assert.deepEqual(JSON.parse((await get(`${health}/readyz`)).text), {
      ready: true,
      connected: true,
      journal_writable: true,
      draining: false,
    });
    assert.equal((await get(`${health}/healthz`)).status, 200);
    assert.equal((await get(`${health}/nope`)).status, 404);

    const peer = new RelayClient({ relayUrl: url, keypair: Keypair.generate() });
    await peer.send({ recipient_key: me, body: { text: 'one' } });
    await eventOf(deps.stdout, 'handled');

    await relay.close();
    await eventOf(deps.stdout, 'disconnected');
    const down = await get(`${health}/readyz`);
    assert.equal(down.status, 503);
    assert.deepEqual(JSON.parse(down.text), {
      ready: false,
      connected: false,
      journal_writable: true,
      draining: false,
    });
    assert.equal((await get(`${health}/healthz`)).status, 200, 'alive while not ready');

    // The same port and data directory: a restart, as an operator would do it.
    relay = createRelay({ port: Number(new URL(url).port), dataDir, logger: () => undefined });
    await relay.listen();
    await eventOf(deps.stdout, 'reconnected');
    assert.equal((await get(`${health}/readyz`)).status, 200);

    const metrics = await get(`${health}/metrics`);
    assert.equal(metrics.status, 200);
    assert.equal(metrics.type, 'text/plain; version=0.0.4; charset=utf-8');
    const families = parsePrometheus(metrics.text);
    assert.equal(sampleValue(families, 'mrp_runner_messages_total', { outcome: 'replied' }), 1);
    assert.equal(sampleValue(families, 'mrp_runner_handler_duration_seconds_count', { outcome: 'replied' }), 1);
    assert.equal(sampleValue(families, 'mrp_runner_reconnects_total'), 1);
    assert.equal(sampleValue(families, 'mrp_runner_disconnects_total'), 1, 'one connection lost');
    assert.equal(sampleValue(families, 'mrp_runner_queue_depth'), 0);
    assert.equal(sampleValue(families, 'mrp_runner_connected'), 1);
    for (const name of [
      'mrp_runner_duplicates_suppressed_total',
      'mrp_runner_rate_limited_total',
      'mrp_runner_in_flight',
    ]) {
      assert.ok(families.has(name), name);
    }

    deps.raise('SIGTERM');
    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    await assert.rejects(fetch(`${health}/healthz`), 'the health server stops with the runner');
  });

  it('readyz is 503 while journal writes fail (disk full, still W_OK) and 200 once they work again', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0, receiveRatePerMinute: 0 });
    const disk = new FlakyDisk();
    const agent = await startAgent(t, relay, () => 'ok', {
      journal: { fs: disk.fs, retryBackoff: { firstMinMs: 20, firstMaxMs: 20, maxMs: 40 } },
    });
    const monitor = new RunnerMonitor();
    monitor.attach(agent.runtime, join(agent.journalDir, 'journal.jsonl'));
    const readyz = monitor.routes()['/readyz']!;
    const probe = async () => {
      const p = await readyz();
      return { status: p.status, body: JSON.parse(p.body) as Record<string, unknown> };
    };
    agent.runtime.start();
    await connected(agent.runtime);
    assert.deepEqual(await probe(), {
      status: 200,
      body: { ready: true, connected: true, journal_writable: true, draining: false },
    });

    const peer = await Peer.connect(t, relay);
    disk.full = true;
    const notReady = agent.runtime.next('readiness');
    await peer.send(agent.keypair.publicKey, { n: 1 });
    assert.equal((await notReady)[0].ready, false);
    assert.deepEqual(await probe(), {
      status: 503,
      body: {
        ready: false,
        connected: true,
        journal_writable: false,
        draining: false,
        journal_error: 'journal_unwritable',
      },
    });

    const readyAgain = agent.runtime.next('readiness');
    disk.full = false;
    assert.equal((await readyAgain)[0].ready, true);
    assert.deepEqual(await probe(), {
      status: 200,
      body: { ready: true, connected: true, journal_writable: true, draining: false },
    });
    await peer.waitForReplies(1);
    await agent.runtime.stop();
  });

  it('disconnects_total counts connections lost, not the failed reconnect attempts of one outage', async (t) => {
    const first = await startRelay(t);
    const port = first.relay.port;
    const agent = await startAgent(t, first, () => 'ok', {
      session: { backoff: { firstMinMs: 5, firstMaxMs: 10, maxMs: 20 } },
    });
    const monitor = new RunnerMonitor();
    monitor.attach(agent.runtime, join(agent.journalDir, 'journal.jsonl'));
    agent.runtime.start();
    await connected(agent.runtime);
    let downs = 0;
    const outage = new Promise<void>((resolve) =>
      agent.runtime.on('disconnected', () => {
        if (++downs === 3) resolve();
      }),
    );
    await first.relay.close();
    await outage; // the connection lost, then 2 attempts refused
    const back = agent.runtime.next('connected');
    await startRelay(t, { dataDir: first.dataDir, port });
    await back;
    const families = parsePrometheus(monitor.registry.expose());
    assert.equal(sampleValue(families, 'mrp_runner_disconnects_total'), 1);
    assert.equal(sampleValue(families, 'mrp_runner_reconnects_total'), 1);
    assert.equal(sampleValue(families, 'mrp_runner_connected'), 1);
  });

  it('counts 429 answers from the client trace, over HTTP and WebSocket', () => {
    const monitor = new RunnerMonitor();
    const trace = monitor.tracers({});
    const http = {
      method: 'POST',
      target: '/v1/messages',
      ms: 1,
      attempt: 1,
      requestId: undefined,
      error: 'rate_limit_exceeded',
      requestBody: undefined,
      response: undefined,
    };
    trace.http({ ...http, status: 429 });
    trace.http({ ...http, status: 201, error: undefined });
    trace.ws({ direction: 'in', type: 'send_result', bytes: 10, code: 'rate_limit_exceeded', text: undefined });
    const families = parsePrometheus(monitor.registry.expose());
    assert.equal(sampleValue(families, 'mrp_runner_rate_limited_total', { via: 'http' }), 1);
    assert.equal(sampleValue(families, 'mrp_runner_rate_limited_total', { via: 'websocket' }), 1);
  });

  it('suspended while connected: exits 4 (auth refused), which systemd does not restart', async (t) => {
    const relay = await startRelay(t);
    const home = await tempDir(t);
    const deps = testDeps({ home, env: { MRP_RELAY_URL: relay.url } });
    const { public_key: me } = JSON.parse((await runCli(['keygen', '--json'], deps)).stdout);
    const run = runCli(['run', '--handler', ECHO, '--json'], deps);
    await eventOf(deps.stdout, 'ready');
    await relay.relay.setAgentStatus(me, 'suspended');
    const res = await run;
    assert.equal(res.code, 4, res.stderr);
    assert.match(res.stdout + res.stderr, /agent_suspended/);
  });

  it('a taken --health-port is a usage error before anything starts', async (t) => {
    const home = await tempDir(t);
    const blocker = await import('node:net').then((net) => net.createServer());
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.after(() => blocker.close());
    const port = (blocker.address() as import('node:net').AddressInfo).port;
    const deps = testDeps({ home, env: { MRP_RELAY_URL: 'http://127.0.0.1:1' } });
    await runCli(['keygen'], deps);
    const res = await runCli(['run', '--handler', ECHO, '--health-port', String(port), '--json'], deps);
    assert.equal(res.code, 2);
    assert.equal(JSON.parse(res.stderr.trim()).error.code, 'address_in_use');
  });

  it('--lease and --standby without a shared journal are usage errors naming the flag, not silently ignored', {
    timeout: 20_000, // without the check the runner starts and runs on: fail, don't hang
  }, async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home, env: { MRP_RELAY_URL: 'http://127.0.0.1:1' } });
    await runCli(['keygen'], deps);
    for (const [flag, extra] of [
      ['--lease', ['--lease', '10s']],
      ['--standby', ['--standby']],
      ['--standby', ['--journal', 'local', '--standby']],
    ] as const) {
      const res = await runCli(['run', '--handler', ECHO, ...extra, '--json'], deps);
      assert.equal(res.code, 2, res.stderr);
      const err = JSON.parse(res.stderr.trim()).error;
      assert.equal(err.code, 'invalid_argument');
      assert.equal(err.message, `${flag} only applies with a shared journal`);
      assert.match(err.hint, /--journal postgres:\/\//);
    }
  });

  it('--standby with --mode poll or webhook is a usage error (it waits for a WebSocket slot those modes never take)', async (t) => {
    const deps = testDeps({ home: await tempDir(t), env: { MRP_RELAY_URL: 'http://127.0.0.1:1' } });
    await runCli(['keygen'], deps);
    for (const mode of ['poll', 'webhook']) {
      const res = await runCli(
        [
          'run',
          '--handler',
          ECHO,
          '--journal',
          'postgres://u:s3cret@127.0.0.1:1/db',
          '--mode',
          mode,
          '--standby',
          '--json',
        ],
        deps,
      );
      assert.equal(res.code, 2, res.stderr);
      const err = JSON.parse(res.stderr.trim()).error;
      assert.equal(err.code, 'invalid_argument');
      assert.equal(err.message, `--standby waits for a WebSocket slot; --mode ${mode} never takes one`);
      assert.doesNotMatch(res.stderr, /s3cret/);
    }
  });

  it('mrp fleet without a key: the hint offers --all (listing needs no identity), not only keygen', async (t) => {
    const deps = testDeps({ home: await tempDir(t) });
    const res = await runCli(['fleet', '--journal', 'postgres://u:s3cret@127.0.0.1:1/db', '--json'], deps);
    assert.equal(res.code, 2, res.stderr);
    const err = JSON.parse(res.stderr.trim()).error;
    assert.equal(err.code, 'key_not_found');
    assert.match(err.hint, /--all/);
    assert.doesNotMatch(res.stderr, /s3cret/);
  });

  it('a --health-host that is not an address of this machine is a usage error naming the flag', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home, env: { MRP_RELAY_URL: 'http://127.0.0.1:1' } });
    await runCli(['keygen'], deps);
    // 192.0.2.1 is TEST-NET-1: documentation only, never a local address.
    const argv = ['run', '--handler', ECHO, '--health-port', '0', '--health-host', '192.0.2.1', '--json'];
    const res = await runCli(argv, deps);
    assert.equal(res.code, 2, res.stderr);
    const err = JSON.parse(res.stderr.trim()).error;
    assert.equal(err.code, 'invalid_argument');
    assert.equal(err.message, '--health-host: cannot listen on 192.0.2.1:0 (not an address of this machine)');
  });
});

describe('mrp relay --metrics / --metrics-port', () => {
  it('serves requests by route and status, messages accepted, open sockets and store latency', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    const run = runCli(
      [
        'relay',
        '--port',
        '0',
        '--metrics-port',
        '0',
        '--data-dir',
        join(home, 'data'),
        '--json',
        '--log-level',
        'error',
      ],
      deps,
    );
    await deps.stdout.waitFor('\n');
    const started = JSON.parse(deps.stdout.text.split('\n')[0]!);
    assert.match(started.metrics_url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    assert.notEqual(new URL(started.metrics_url).port, new URL(started.url).port, 'apart from the API');

    const a = new RelayClient({ relayUrl: started.url, keypair: Keypair.generate() });
    const b = Keypair.generate();
    await a.send({ recipient_key: b.publicKey, body: { text: 'hi' } });
    await a.send({ recipient_key: b.publicKey, body: { text: 'again' } });
    const { Session } = await import('../../src/client/session.js');
    const session = new Session({ url: new RelayClient({ relayUrl: started.url, keypair: b }).wsUrl, keypair: b });
    session.start();
    await session.ready();

    const res = await get(started.metrics_url);
    assert.equal(res.status, 200);
    const families = parsePrometheus(res.text);
    assert.equal(
      sampleValue(families, 'mrp_relay_http_requests_total', { method: 'POST', route: '/v1/messages', status: '201' }),
      2,
    );
    assert.equal(sampleValue(families, 'mrp_relay_messages_accepted_total'), 2);
    assert.equal(sampleValue(families, 'mrp_relay_websockets_open'), 1);
    assert.ok(sampleValue(families, 'mrp_relay_store_duration_seconds_count', { op: 'commit' })! >= 1);
    assert.ok(sampleValue(families, 'mrp_relay_http_request_duration_seconds_count', { route: '/v1/messages' })! >= 2);
    assert.equal((await get(started.metrics_url.replace('/metrics', '/healthz'))).status, 200);
    await session.close();

    deps.raise('SIGTERM');
    assert.equal((await run).code, 0);
  });

  it('a --host that is not an address of this machine, or a taken --port, is a usage error naming the flag', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    const host = await runCli(
      ['relay', '--host', '192.0.2.1', '--port', '0', '--data-dir', join(home, 'a'), '--json', '--log-level', 'error'],
      deps,
    );
    assert.equal(host.code, 2, host.stderr);
    assert.deepEqual(JSON.parse(host.stderr.trim()).error, {
      code: 'invalid_argument',
      message: '--host: cannot listen on 192.0.2.1:0 (not an address of this machine)',
    });
    const blocker = await import('node:net').then((net) => net.createServer());
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.after(() => blocker.close());
    const port = String((blocker.address() as import('node:net').AddressInfo).port);
    const taken = await runCli(
      ['relay', '--port', port, '--data-dir', join(home, 'b'), '--json', '--log-level', 'error'],
      testDeps({ home }),
    );
    assert.equal(taken.code, 2, taken.stderr);
    assert.equal(JSON.parse(taken.stderr.trim()).error.code, 'address_in_use');
  });

  it('pretty logs on a terminal escape what clients sent (a WebSocket close reason)', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home, tty: true });
    const argv = ['relay', '--port', '0', '--data-dir', join(home, 'd'), '--json', '--log-format', 'pretty'];
    const run = runCli([...argv, '--log-level', 'info'], deps);
    await deps.stdout.waitFor('\n');
    const { url } = JSON.parse(deps.stdout.text.split('\n')[0]!) as { url: string };
    const { default: WebSocket } = await import('ws');
    const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/v1/ws`);
    await new Promise<void>((resolve, reject) => {
      ws.on('open', () => ws.close(4000, 'bye\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202eX'));
      ws.on('close', () => resolve());
      ws.on('error', reject);
    });
    await deps.stderr.waitFor('ws_close');
    deps.raise('SIGTERM');
    assert.equal((await run).code, 0);
    const line = deps.stderr.text.split('\n').find((l) => l.includes('ws_close'))!;
    assert.match(line, /reason=(\u001b\[[0-9;]*m)?bye\\x1b\]0;pwned\\x07\\x1b\[2J\\x9b31m\\u202eX/, line);
    assert.doesNotMatch(line, /agent=/, 'fields without a value are left out');
    assert.doesNotMatch(deps.stderr.text, /[\u0000-\u0008\u000b-\u001a\u001c-\u001f\u007f-\u009f\u202e]/);
    assert.doesNotMatch(deps.stderr.text, /\u001b(?!\[[0-9;]*m)/);
  });

  it("--metrics serves /metrics on the relay's own port, outside /v1/; without it /metrics is 404", async (t) => {
    const home = await tempDir(t);
    const started = async (argv: string[]) => {
      const deps = testDeps({ home });
      const dataDir = join(home, `data-${argv.length}`);
      const run = runCli(
        ['relay', '--port', '0', '--data-dir', dataDir, '--json', '--log-level', 'error', ...argv],
        deps,
      );
      const exited = await Promise.race([deps.stdout.waitFor('\n').then(() => undefined), run]);
      assert.equal(exited, undefined, `mrp relay ${argv.join(' ')} exited: ${exited?.stderr}`);
      return { info: JSON.parse(deps.stdout.text.split('\n')[0]!), deps, run };
    };
    const on = await started(['--metrics']);
    const { url, metrics_url } = on.info as { url: string; metrics_url: string };
    assert.equal(metrics_url, `${url}/metrics`);
    await new RelayClient({ relayUrl: url, keypair: Keypair.generate() }).send({
      recipient_key: Keypair.generate().publicKey,
      body: { text: 'hi' },
    });
    const res = await get(metrics_url);
    assert.equal(res.status, 200);
    assert.equal(res.type, 'text/plain; version=0.0.4; charset=utf-8');
    assert.equal(sampleValue(parsePrometheus(res.text), 'mrp_relay_messages_accepted_total'), 1);
    assert.equal((await get(`${url}/v1/metrics`)).status, 404, 'not an API route');
    on.deps.raise('SIGTERM');
    assert.equal((await on.run).code, 0);

    const off = await started([]);
    assert.equal(off.info.metrics_url, undefined);
    const none = await get(`${off.info.url}/metrics`);
    assert.equal(none.status, 404);
    assert.equal(JSON.parse(none.text).error.code, 'not_found');
    off.deps.raise('SIGTERM');
    assert.equal((await off.run).code, 0);
  });

  it('createRelay({ metrics }) counts unknown paths under one route label', async (t) => {
    const dataDir = await tempDir(t);
    const registry = new Registry();
    const relay = createRelay({ port: 0, dataDir, logger: () => undefined, metrics: registry });
    const url = await relay.listen();
    t.after(() => relay.close());
    const res = await fetch(`${url}/v1/nope`);
    assert.equal(res.status, 404);
    await res.text();
    assert.equal(
      sampleValue(parsePrometheus(registry.expose()), 'mrp_relay_http_requests_total', {
        method: 'GET',
        route: 'unmatched',
        status: '404',
      }),
      1,
    );
  });
});
