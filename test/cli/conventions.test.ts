/**
 * The CLI's conventions at the edges (issue 14): exact counts, quiet, JSON everywhere, one list
 * convention, fail fast, unique signatures, global flags anywhere, completion, help and exit codes.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import type { Command } from 'commander';
import { completionTree } from '../../src/cli/commands/completion.js';
import { buildProgram, COMMANDS, loadCommands, main } from '../../src/cli/main.js';
import { RelayClient } from '../../src/client/http.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { Message } from '../../src/protocol/types.js';
import { ndjson, runCli, type TestDeps, tempDir, testDeps } from '../helpers/cli.js';
import { RawSocket, startRelay, type TestRelay } from '../helpers/relay.js';

async function user(
  t: TestContext,
  relay: Pick<TestRelay, 'url'>,
  extra: Partial<Parameters<typeof testDeps>[0]> = {},
): Promise<{ deps: TestDeps; key: string; home: string }> {
  const home = await tempDir(t);
  const deps = testDeps({ home, env: { MRP_RELAY_URL: relay.url }, ...extra });
  const res = await runCli(['keygen', '--json'], deps);
  return { deps, key: JSON.parse(res.stdout).public_key, home };
}

/** The URL of a port nothing listens on. */
async function closedPort(): Promise<string> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return `http://127.0.0.1:${port}`;
}

/** Resolves once `text` has been written to `capture` at least `n` times. */
function occurrences(capture: TestDeps['stdout'], text: string, n: number): Promise<void> {
  const count = (): number => capture.text.split(text).length - 1;
  if (count() >= n) return Promise.resolve();
  return new Promise((resolve) => {
    const write = capture.write.bind(capture);
    capture.write = (chunk: string): boolean => {
      const ok = write(chunk);
      if (count() >= n) {
        capture.write = write;
        resolve();
      }
      return ok;
    };
  });
}

/** `mrp run --mode poll` (echo handler, JSON log lines) with a fresh key, against `url`; not awaited. */
async function pollRun(t: TestContext, url: string): Promise<{ deps: TestDeps; run: ReturnType<typeof runCli> }> {
  const deps = testDeps({ home: await tempDir(t), env: { MRP_RELAY_URL: url } });
  await runCli(['keygen'], deps);
  const handler = join(import.meta.dirname, '../../handlers/echo.ts');
  return { deps, run: runCli(['run', '--mode', 'poll', '--handler', handler, '--log-format', 'json'], deps) };
}

describe('tail -n N', () => {
  it('prints and acknowledges exactly N of a backlog, then exits; the rest stays for a runner', async (t) => {
    const relay = await startRelay(t);
    const { deps, key } = await user(t, relay);
    const sender = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await sender.send({ recipient_key: key, body: { i } })).message_id);
    const res = await runCli(['tail', '-n', '2', '--ack'], deps);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(
      ndjson(res.stdout).map((m) => m['message_id']),
      ids.slice(0, 2),
    );
    const statuses = await Promise.all(ids.map(async (id) => (await sender.messageStatus(id)).status));
    assert.deepEqual(statuses, ['delivered', 'delivered', 'sent', 'sent', 'sent']);
  });
});

describe('--quiet prints the bare value asked for', () => {
  it('whoami, keygen, send (id; with --wait the reply), config get, status, get, contacts ls, config ls, context ls', async (t) => {
    const relay = await startRelay(t);
    const home = await tempDir(t);
    const deps = testDeps({ home, env: { MRP_RELAY_URL: relay.url } });
    const keygen = await runCli(['keygen', '-q'], deps);
    const key = keygen.stdout.trim();
    assert.match(key, /^[\w-]{43}$/);
    assert.equal((await runCli(['whoami', '-q'], deps)).stdout, `${key}\n`);
    assert.equal((await runCli(['config', 'get', 'relay', '-q'], deps)).stdout, `${relay.url}\n`);
    const peer = Keypair.generate();
    assert.equal(
      (await runCli(['contacts', 'add', 'bob', peer.publicKey, '-q'], deps)).stdout,
      '',
      'an action prints nothing',
    );
    assert.equal((await runCli(['contacts', 'ls', '-q'], deps)).stdout, 'bob\n');
    assert.equal(
      (await runCli(['config', 'ls', '-q'], deps)).stdout,
      `relay=${relay.url}\nkey_file=${join(home, 'agent.key')}\n`,
    );
    assert.equal((await runCli(['context', 'add', 'prod', '--relay', relay.url, '-q'], deps)).stdout, '');
    assert.equal((await runCli(['context', 'add', 'dev', '--relay', relay.url, '-q'], deps)).stdout, '');
    assert.equal((await runCli(['context', 'ls', '-q'], deps)).stdout, 'dev\nprod\n');
    const sent = await runCli(
      ['send', '-q', 'bob', 'hello'],
      testDeps({ home, env: { MRP_RELAY_URL: relay.url }, tty: true }),
    );
    assert.equal(sent.code, 0, sent.stderr);
    assert.match(sent.stdout, /^msg_\S+\n$/, 'on a terminal too: only the id');
    assert.equal(sent.stderr, '');
    const id = sent.stdout.trim();
    assert.equal((await runCli(['status', id, '-q'], deps)).stdout, 'sent\n');
    assert.equal((await runCli(['get', id, '-q'], deps)).stdout, '{"text":"hello"}\n');
    const bob = new RelayClient({ relayUrl: relay.url, keypair: peer });
    const waiting = runCli(['send', '-q', '--wait', '10s', 'bob', 'ping'], deps);
    let ping: Message | undefined;
    while (!ping)
      ping = (await bob.poll({ wait: 10 })).messages.find((m) => JSON.stringify(m.body) === '{"text":"ping"}');
    await bob.send({ recipient_key: key, body: { pong: true }, in_reply_to: ping.message_id });
    const reply = await waiting;
    assert.equal(reply.code, 0, reply.stderr);
    assert.equal(reply.stdout, '{"pong":true}\n');
  });
});

describe('--json: every failure is {"error":…} on stderr', () => {
  it('parse errors too: unknown option, unknown command, missing argument', async (t) => {
    const deps = testDeps({ home: await tempDir(t) });
    const cases: Array<[string[], string]> = [
      [['whoami', '--bogus', '--json'], 'unknown_option'],
      [['frobnicate', '--json'], 'unknown_command'],
      [['help', 'sned', '--json'], 'unknown_command'],
      [['acl', 'allow', '--json'], 'missing_argument'],
      [['--json', 'contacts', 'add', 'x'], 'missing_argument'],
      // Before `send`, --json is the output flag (after it, `--json <value>` is a body).
      [['--json', 'send', 'x', 'y', '--ttl'], 'missing_argument'],
      [['--json', 'send', 'x', 'y', '--bogus'], 'unknown_option'],
    ];
    for (const [argv, code] of cases) {
      const res = await runCli(argv, deps);
      assert.equal(res.code, 2, argv.join(' '));
      assert.equal(res.stdout, '');
      const err = JSON.parse(res.stderr).error;
      assert.equal(err.code, code, argv.join(' '));
      assert.match(err.hint, /mrp .*--help/);
    }
    const plain = await runCli(['whoami', '--jsn'], deps);
    assert.equal(plain.stderr.trim().split('\n').length, 1, 'one line without --json');
    assert.match(plain.stderr, /^error: unknown option '--jsn' — did you mean --json\? \(see `mrp whoami --help`\)/);
    // `mrp help <word>` fails as `mrp <word>` does; `mrp help <command>` is that command's help.
    const help = await runCli(['help', 'sned'], deps);
    assert.deepEqual([help.code, help.stdout], [2, '']);
    assert.match(help.stderr, /^error: unknown command 'sned' — did you mean send\?/);
    const known = await runCli(['help', 'send'], deps);
    assert.equal(known.code, 0);
    assert.match(known.stdout, /^Usage: mrp send /m);
  });

  it('status lines of tail are JSON on stderr; stdout carries only messages', async (t) => {
    const relay = await startRelay(t);
    const { deps, key } = await user(t, relay);
    const tail = runCli(['tail', '--json', '-n', '1'], deps);
    await deps.stderr.waitFor('"event":"connected"');
    await new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() }).send({
      recipient_key: key,
      body: { n: 1 },
    });
    const res = await tail;
    assert.equal(res.code, 0, res.stderr);
    const status = ndjson(res.stderr);
    assert.equal(status[0]!['event'], 'connected');
    assert.equal(status[0]!['agent'], key);
    assert.match(String(status[0]!['time']), /^\d{4}-\d{2}-\d{2}T/);
    assert.deepEqual(
      ndjson(res.stdout).map((m) => m['body']),
      [{ n: 1 }],
    );
  });

  it('tail and recv --ws exit 4 when the agent is suspended while they watch', async (t) => {
    const relay = await startRelay(t);
    for (const argv of [['tail'], ['recv', '--ws']]) {
      const { deps, key } = await user(t, relay);
      const watching = runCli([...argv, '--json'], deps);
      await deps.stderr.waitFor('"event":"connected"');
      await relay.relay.setAgentStatus(key, 'suspended');
      const res = await watching;
      assert.equal(res.code, 4, `${argv.join(' ')}: ${res.stderr}`);
      assert.equal((ndjson(res.stderr).at(-1)!['error'] as { code: string }).code, 'agent_suspended');
    }
  });
});

describe('lists of messages and agents: NDJSON when piped or with --json', () => {
  it('recv --no-ack says has_more only when more are waiting', async (t) => {
    const relay = await startRelay(t);
    const { deps, key } = await user(t, relay);
    const sender = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    for (let i = 0; i < 3; i++) await sender.send({ recipient_key: key, body: { i } });
    const some = await runCli(['recv', '--no-ack', '--limit', '2', '--json'], deps);
    assert.equal(some.code, 0, some.stderr);
    assert.deepEqual(
      ndjson(some.stdout).map((m) => m['body']),
      [{ i: 0 }, { i: 1 }],
    );
    assert.equal(ndjson(some.stderr)[0]!['event'], 'has_more');
    const all = await runCli(['recv', '--no-ack', '--limit', '3', '--json'], deps);
    assert.equal(ndjson(all.stdout).length, 3);
    assert.equal(all.stderr, '', 'nothing more: no has_more');
    const piped = await runCli(['recv', '--limit', '3'], deps);
    assert.deepEqual(
      ndjson(piped.stdout).map((m) => m['body']),
      [{ i: 0 }, { i: 1 }, { i: 2 }],
      'piped: the same NDJSON',
    );
  });

  it('recv --no-ack fails fast when the key already has its 2 connections', async (t) => {
    const relay = await startRelay(t);
    const { deps, home } = await user(t, relay);
    const { keypair } = await (await import('../../src/cli/keys.js')).readKeyFile(join(home, 'agent.key'));
    for (let i = 0; i < 2; i++) {
      const s = await RawSocket.open(relay.wsUrl);
      t.after(() => s.ws.terminate());
      assert.equal((await s.auth(keypair)).status, 'ok');
    }
    const started = Date.now();
    const res = await runCli(['recv', '--no-ack', '--json'], deps);
    assert.ok(Date.now() - started < 5000, 'at once, not after the 30 s wait');
    assert.equal(res.code, 1);
    const err = JSON.parse(res.stderr).error;
    assert.equal(err.code, 'too_many_connections');
    assert.match(err.message, /already has 2 WebSocket connections/);
  });

  it('capabilities: a hint when the relay lists only the most used tags', async (t) => {
    const relay = await startRelay(t);
    // 3 agents × 400 distinct tags: more than the relay lists (CAPABILITY_TAGS_MAX).
    for (let a = 0; a < 3; a++) {
      await new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() }).updateProfile({
        visibility: 'public',
        capabilities: Array.from({ length: 20 }, (_, c) => ({
          name: `c${c}`,
          description: '',
          tags: Array.from({ length: 20 }, (_, i) => `t${a}-${c}-${i}`),
        })),
      });
    }
    const { deps } = await user(t, relay);
    const many = await runCli(['capabilities', '--json'], deps);
    assert.equal(many.code, 0, many.stderr);
    assert.equal(ndjson(many.stderr)[0]!['event'], 'has_more');
    const few = await runCli(['capabilities', '--prefix', 't1-', '--json'], deps);
    assert.equal(few.code, 0, few.stderr);
    assert.equal(few.stderr, '', 'all listed: no has_more');
  });

  it('discover: a hint when more match, --all really all, full keys on a terminal', async (t) => {
    const relay = await startRelay(t);
    const agents = Array.from({ length: 23 }, () => Keypair.generate());
    for (const [i, kp] of agents.entries()) {
      await new RelayClient({ relayUrl: relay.url, keypair: kp }).updateProfile({
        display_name: `agent ${i}`,
        visibility: 'public',
        capabilities: [{ name: 'x', description: '', tags: ['pagetest'] }],
      });
    }
    const { deps } = await user(t, relay);
    const first = await runCli(['discover', '--tag', 'pagetest', '--json'], deps);
    assert.equal(ndjson(first.stdout).length, 20);
    assert.deepEqual(ndjson(first.stderr)[0]!['event'], 'has_more');
    const all = await runCli(['discover', '--tag', 'pagetest', '--all', '-q'], deps);
    assert.equal(all.stdout.trim().split('\n').length, 23, '--all: every one (bare keys with -q)');
    assert.equal(all.stderr, '');
    const tty = await runCli(
      ['discover', '--tag', 'pagetest', '--limit', '30'],
      testDeps({ home: deps.env['MRP_HOME']!, env: { MRP_RELAY_URL: relay.url }, tty: true }),
    );
    for (const kp of agents) assert.ok(tty.stdout.includes(kp.publicKey), 'the full key, copyable');
  });
});

describe('signatures never collide', () => {
  it('identical requests in parallel and two tails started together all work', async (t) => {
    const relay = await startRelay(t);
    const kp = Keypair.generate();
    const client = new RelayClient({ relayUrl: relay.url, keypair: kp, maxAttempts: 1 });
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => client.getAgent(kp.publicKey)));
    const refused = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as { code?: string }).code] : []));
    assert.ok(!refused.includes('replay_detected'), `no replay_detected: ${refused.join(', ')}`);

    const { home, key } = await user(t, relay);
    const [a, b] = [0, 1].map(() => testDeps({ home, env: { MRP_RELAY_URL: relay.url } })) as [TestDeps, TestDeps];
    const tails = [runCli(['tail', '-n', '1'], a), runCli(['tail', '-n', '1'], b)];
    await Promise.all([a.stderr.waitFor('connected'), b.stderr.waitFor('connected')]);
    await new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() }).send({
      recipient_key: key,
      body: { both: true },
    });
    for (const res of await Promise.all(tails)) {
      assert.equal(res.code, 0, res.stderr);
      assert.doesNotMatch(res.stderr, /refused|replay/);
      assert.deepEqual(
        ndjson(res.stdout).map((m) => m['body']),
        [{ both: true }],
      );
    }
  });
});

describe('an unreachable relay', () => {
  it('one-shot commands fail at once; tail shows each attempt with a time and "never connected — check --relay"', async (t) => {
    const home = await tempDir(t);
    const down = await closedPort();
    const deps = testDeps({ home, env: { MRP_RELAY_URL: down } });
    await runCli(['keygen'], deps);
    for (const argv of [
      ['discover'],
      ['profile'],
      ['recv'],
      ['recv', '--no-ack'],
      ['status', 'msg_1_000000000000'],
      ['acl', 'ls'],
      ['send', Keypair.generate().publicKey, 'hi'],
    ]) {
      const started = Date.now();
      const res = await runCli([...argv, '--json'], deps);
      assert.equal(res.code, 3, `${argv[0]}: ${res.stderr}`);
      assert.ok(Date.now() - started < 1500, `${argv[0]} failed fast (${Date.now() - started} ms)`);
      assert.equal(JSON.parse(res.stderr).error.code, 'connection_refused');
    }
    const tail = runCli(['tail'], deps);
    await deps.stderr.waitFor('reconnecting in');
    deps.raise('SIGINT');
    const res = await tail;
    assert.equal(res.code, 0);
    const line = res.stderr.split('\n')[0]!;
    assert.match(
      line,
      /^\d\d:\d\d:\d\d {2}↻ cannot reach the relay at ws:\/\/127\.0\.0\.1:\d+\/v1\/ws \(ECONNREFUSED\); reconnecting in \S+ — never connected — check --relay/,
    );
    assert.ok(line.endsWith(`check --relay (${down}) and that the relay is running`), line);
  });
});

describe('mrp run against a relay that never answers', () => {
  it('keeps trying, each attempt an event with the never-connected hint; one SIGTERM exits 0', async (t) => {
    const home = await tempDir(t);
    const down = await closedPort();
    const deps = testDeps({ home, env: { MRP_RELAY_URL: down } });
    await runCli(['keygen'], deps);
    const run = runCli(
      ['run', '--handler', join(import.meta.dirname, '../../handlers/echo.ts'), '--log-format', 'json'],
      deps,
    );
    await deps.stdout.waitFor('"event":"disconnected"');
    deps.raise('SIGTERM');
    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    const event = ndjson(res.stdout).find((e) => e['event'] === 'disconnected')!;
    assert.equal(event['will_reconnect'], true);
    assert.equal(event['hint'], `never connected — check --relay (${down}) and that the relay is running`);
  });

  it('--mode poll: the first failed attempt is said at once, as in WebSocket mode; later ones back off; SIGTERM exits 0 at once', async (t) => {
    const down = await closedPort();
    const { deps, run } = await pollRun(t, down);
    await deps.stdout.waitFor('"event":"disconnected"');
    // The run's JSON lines (keygen's line comes first).
    const events = (): Array<Record<string, unknown>> =>
      ndjson(deps.stdout.text.slice(deps.stdout.text.indexOf('{"time"')));
    const at = (event: string): number => Date.parse(String(events().find((e) => e['event'] === event)?.['time']));
    // From the first attempt to its line. The HTTP client used to retry inside the call first:
    // about 4.5 s of silence (at least 3.25 s).
    const firstAt = at('disconnected') - at('connecting');
    assert.ok(firstAt < 2500, `the first line came ${firstAt} ms after connecting`);
    const disconnects = (): Array<Record<string, unknown>> => events().filter((e) => e['event'] === 'disconnected');
    // The next attempt comes after the delay the first line announced, and announces a longer one.
    await occurrences(deps.stdout, '"event":"disconnected"', 2);
    deps.raise('SIGTERM');
    const stopping = Date.now();
    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    // It used to take 5 s.
    assert.ok(Date.now() - stopping < 3000, `stopped in ${Date.now() - stopping} ms`);
    const [first, second] = disconnects() as [Record<string, unknown>, Record<string, unknown>];
    for (const d of [first, second]) {
      assert.equal(d['will_reconnect'], true);
      assert.equal(d['reason'], `cannot reach the relay at ${down} (ECONNREFUSED)`);
      assert.equal(d['hint'], `never connected — check --relay (${down}) and that the relay is running`);
    }
    assert.ok(Number(second['delay_ms']) > Number(first['delay_ms']), 'backing off');
    const gap = Date.parse(String(second['time'])) - Date.parse(String(first['time']));
    assert.ok(gap >= Number(first['delay_ms']) - 5, `the second attempt waited the announced delay (${gap} ms)`);
    assert.ok(!ndjson(res.stdout).some((e) => e['event'] === 'warning'), 'no warnings on top of the retry lines');
  });

  it('--mode poll, a relay that takes the connection and never answers: said after 10 s (the WebSocket handshake limit), not after four 30 s attempts', {
    timeout: 30_000,
  }, async (t) => {
    const held = new Set<Socket>();
    const silent = createServer((socket) => {
      held.add(socket);
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    t.after(() => {
      for (const s of held) s.destroy();
      silent.close();
    });
    const url = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const started = Date.now();
    const { deps, run } = await pollRun(t, url);
    await deps.stdout.waitFor('"event":"disconnected"');
    const firstAt = Date.now() - started;
    deps.raise('SIGTERM');
    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    assert.ok(firstAt >= 9_000 && firstAt < 20_000, `the first line came after ${firstAt} ms`);
    const event = ndjson(res.stdout).find((e) => e['event'] === 'disconnected')!;
    assert.match(String(event['reason']), /no answer from .* within 10000 ms/);
    assert.equal(event['hint'], `never connected — check --relay (${url}) and that the relay is running`);
  });

  it('on a terminal: the retry line has a time and the hint (also on a terminal that reports no width)', async (t) => {
    const home = await tempDir(t);
    const down = await closedPort();
    const deps = testDeps({ home, env: { MRP_RELAY_URL: down }, tty: true });
    deps.stderr.columns = 0;
    await runCli(['keygen'], deps);
    const run = runCli(['run', '--handler', join(import.meta.dirname, '../../handlers/echo.ts')], deps);
    await deps.stdout.waitFor('never connected');
    deps.raise('SIGINT');
    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    assert.match(
      res.stdout,
      /^\d\d:\d\d:\d\d {2}↻ cannot reach the relay .*; reconnecting in \S+ — never connected — check --relay/m,
    );
  });
});

describe('mrp dev', () => {
  it('a second one on the same MRP_HOME exits at once with advice (also --once); --key is the agent', async (t) => {
    const home = await tempDir(t);
    const first = testDeps({ home });
    const running = runCli(['dev', '--port', '0', '--no-watch'], first);
    await first.stdout.waitFor('"event":"dev"');
    for (const argv of [
      ['dev', '--port', '0'],
      ['dev', '--once', '--port', '0', '--json'],
    ]) {
      const second = await runCli(argv, testDeps({ home }));
      assert.equal(second.code, 1, second.stderr);
      assert.match(second.stderr, /another mrp dev \(pid \d+\) is already running/);
      assert.match(second.stderr, /MRP_HOME=/);
    }
    first.raise('SIGINT');
    assert.equal((await running).code, 0);

    const key = join(await tempDir(t), 'mine.key');
    const withKey = await runCli(['dev', '--once', '--port', '0', '--key', key], testDeps({ home }));
    assert.equal(withKey.code, 0, withKey.stderr);
    const dev = ndjson(withKey.stdout).find((e) => e['event'] === 'dev')!;
    const mine = await (await import('../../src/cli/keys.js')).readKeyFile(key);
    assert.equal(dev['agent'], mine.keypair.publicKey, 'the agent runs as --key');
    const relayFlag = await runCli(['dev', '--relay', 'http://127.0.0.1:1'], testDeps({ home }));
    assert.equal(relayFlag.code, 2);
    assert.match(relayFlag.stderr, /mrp dev` runs its own relay/);
  });

  it('a taken --port is a usage error naming the flag (the default port taken: any free one)', async (t) => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    t.after(() => blocker.close());
    const port = String((blocker.address() as AddressInfo).port);
    const res = await runCli(['dev', '--once', '--port', port, '--json'], testDeps({ home: await tempDir(t) }));
    assert.equal(res.code, 2, res.stderr);
    const err = JSON.parse(res.stderr.trim()).error;
    assert.equal(err.code, 'address_in_use');
    assert.equal(err.message, `--port: 127.0.0.1:${port} is already in use`);
  });
});

describe('peer-controlled text on a terminal', () => {
  const EVIL = 'Bob\u001b]0;pwned\u0007\u001b[2J\r\u009b31m\u202eevil';
  it('is shown with visible escapes in tail, thread, profile, discover, get; --json stays exact', async (t) => {
    const relay = await startRelay(t);
    const { key, home } = await user(t, relay);
    const evil = Keypair.generate();
    const peer = new RelayClient({ relayUrl: relay.url, keypair: evil });
    await peer.updateProfile({
      display_name: EVIL,
      visibility: 'public',
      metadata: { note: EVIL },
      capabilities: [{ name: 'x', description: EVIL, tags: ['evil-tag'] }],
    });
    const sent = await peer.send({ recipient_key: key, body: { text: EVIL }, thread_id: 'th-1' });
    const tty = testDeps({ home, env: { MRP_RELAY_URL: relay.url }, tty: true });
    const outputs = [
      await runCli(['tail', '-n', '1'], tty),
      await runCli(['thread', 'th-1'], tty),
      await runCli(['profile', evil.publicKey], tty),
      await runCli(['discover', '--tag', 'evil-tag'], tty),
      await runCli(['get', sent.message_id], tty),
    ];
    for (const res of outputs) {
      assert.equal(res.code, 0, res.stderr);
      assert.doesNotMatch(
        res.stdout + res.stderr,
        /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202e]/,
        'no raw control characters',
      );
      // Escaped visibly: by safeText on a line, or already by JSON inside a pretty-printed body.
      assert.ok(
        res.stdout.includes('\\x1b]0;pwned\\x07\\x1b[2J\\r\\x9b31m\\u202eevil') ||
          res.stdout.includes('\\u001b]0;pwned\\u0007\\u001b[2J\\r\\x9b31m\\u202eevil'),
        res.stdout,
      );
    }
    const json = await runCli(
      ['get', sent.message_id, '--json'],
      testDeps({ home, env: { MRP_RELAY_URL: relay.url } }),
    );
    assert.equal(JSON.parse(json.stdout).body.text, EVIL, 'JSON is exact');
  });

  it('-q bodies and --json documents on a terminal carry no raw C1, DEL or bidi characters; their values stay exact', async (t) => {
    const relay = await startRelay(t);
    const { key, home } = await user(t, relay);
    const peer = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const sent = await peer.send({ recipient_key: key, body: { text: EVIL }, thread_id: 'th-q' });
    const tty = testDeps({ home, env: { MRP_RELAY_URL: relay.url }, tty: true });
    const runs: Array<[string[], 'json' | 'ndjson']> = [
      [['thread', 'th-q', '-q'], 'json'],
      [['get', sent.message_id, '-q'], 'json'],
      [['tail', '-n', '1', '-q'], 'json'],
      [['recv', '--no-ack', '-q'], 'json'],
      [['thread', 'th-q', '--json'], 'ndjson'],
      [['get', sent.message_id, '--json'], 'ndjson'],
      [['recv', '--no-ack', '--json'], 'ndjson'],
    ];
    for (const [argv, kind] of runs) {
      const res = await runCli(argv, tty);
      assert.equal(res.code, 0, `${argv.join(' ')}: ${res.stderr}`);
      assert.doesNotMatch(res.stdout + res.stderr, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202e]/, argv.join(' '));
      const doc = JSON.parse(res.stdout.trim().split('\n')[0]!) as Record<string, unknown>;
      const body = (kind === 'json' ? doc : doc['body']) as { text: string };
      assert.equal(body.text, EVIL, `${argv.join(' ')}: the value is exact`);
    }
    // Piped, -q is the bare value: the same JSON text.
    const piped = await runCli(['get', sent.message_id, '-q'], testDeps({ home, env: { MRP_RELAY_URL: relay.url } }));
    assert.equal(JSON.parse(piped.stdout).text, EVIL);
  });

  it('doctor and --debug traces escape what a hostile relay says', async (t) => {
    // Answers every request with raw bytes: a health document and an error whose strings carry
    // escapes, a latin-1 request id carrying C1 CSI (0x9b), and a text body with ESC in it.
    const server = createServer((socket) => {
      socket.on('error', () => {});
      socket.once('data', (chunk) => {
        const health = chunk.toString('latin1').startsWith('GET /v1/health');
        const body = Buffer.from(
          health
            ? JSON.stringify({ status: `ok${EVIL}`, version: `1${EVIL}` })
            : JSON.stringify({ error: { code: 'bad_request', message: `no${EVIL}` } }),
        );
        const head = Buffer.from(
          `HTTP/1.1 ${health ? '200 OK' : '400 Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\ndate: ${new Date().toUTCString()}\r\nx-request-id: rq\u009b31m\r\n\r\n`,
          'latin1',
        );
        socket.end(Buffer.concat([head, body]));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const home = await tempDir(t);
    const deps = testDeps({ home, env: { MRP_RELAY_URL: url }, tty: true });
    assert.equal((await runCli(['keygen', '-q'], deps)).code, 0);
    const doctor = await runCli(['doctor', '--timeout', '2s'], deps);
    const traced = await runCli(['--debug', '--log-payloads', 'status', 'msg_1'], deps);
    for (const res of [doctor, traced]) {
      assert.doesNotMatch(res.stdout + res.stderr, /[\u0000-\u0008\u000b-\u001a\u001c-\u001f\u007f-\u009f\u202e]/);
      // ESC only as the start of colour codes (ESC [ digits m), never anything else.
      assert.doesNotMatch(res.stdout + res.stderr, /\u001b(?!\[[0-9;]*m)/);
    }
    assert.match(doctor.stdout, /version 1Bob\\x1b\]0;pwned\\x07/, doctor.stdout);
    assert.match(traced.stderr, /rq\\x9b31m/, 'the request id in the trace line');
    assert.match(traced.stderr, /RelayError: noBob\\x1b\]0;pwned/, 'the stack --debug prints');
  });

  it('mrp run shows the id and reason of a message it cannot handle escaped', async (t) => {
    const { scriptedWsRelay } = await import('../helpers/scripted.js');
    // Malformed (no sender, a wrong status) with an id chosen by the relay: reported, never handled.
    const relay = await scriptedWsRelay(t, () => [
      JSON.stringify({ type: 'message', message: { message_id: `m_${EVIL}`, body: 'x', status: 9 } }),
    ]);
    const home = await tempDir(t);
    const deps = testDeps({ home, env: { MRP_RELAY_URL: relay.url } });
    assert.equal((await runCli(['keygen', '-q'], deps)).code, 0);
    const run = runCli(
      ['run', '--handler', join(import.meta.dirname, '../../handlers/echo.ts'), '--log-format', 'pretty'],
      deps,
    );
    await deps.stdout.waitFor('cannot be handled');
    deps.raise('SIGINT');
    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    assert.doesNotMatch(res.stdout + res.stderr, /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202e]/, res.stdout);
    assert.match(res.stdout, /message m_Bob\\x1b\]0;pwned\\x07\\x1b\[2J\\r\\x9b31m\\u202eevil cannot be handled/);
  });

  it("send shows the relay's message id escaped (before and while --wait waits)", async (t) => {
    const server = createHttpServer((req, res) => {
      req.resume();
      req.on('end', () => {
        const now = new Date().toISOString();
        const sent = req.method === 'POST';
        res.writeHead(sent ? 201 : 404, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify(
            sent
              ? { message_id: `msg_${EVIL}`, status: 'sent', created_at: now, expires_at: now }
              : { error: { code: 'not_found', message: 'no' } },
          ),
        );
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const home = await tempDir(t);
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const tty = testDeps({ home, env: { MRP_RELAY_URL: url }, tty: true });
    assert.equal((await runCli(['keygen', '-q'], tty)).code, 0);
    const peer = Keypair.generate().publicKey;
    const sent = await runCli(['send', peer, 'hi'], tty);
    const waited = await runCli(['send', peer, 'hi', '--wait', '1s'], tty);
    assert.equal(sent.code, 0, sent.stderr);
    for (const res of [sent, waited]) {
      assert.doesNotMatch(res.stdout + res.stderr, /[\u0000-\u0008\u000b-\u001a\u001c-\u001f\u007f-\u009f\u202e]/);
      assert.doesNotMatch(res.stdout + res.stderr, /\u001b(?!\[[0-9;]*m)/);
      assert.match(res.stdout + res.stderr, /msg_Bob\\x1b\]0;pwned/);
    }
  });

  it('warnings are escaped too (they quote blob ids and errors from a message or the relay)', async (t) => {
    const { Output } = await import('../../src/cli/output.js');
    const deps = testDeps({ home: await tempDir(t), tty: true });
    const out = await Output.create(deps, { json: false, quiet: false, debug: false, noColor: true });
    out.warn(`blob_${EVIL}: sent by you encrypted`);
    assert.equal(
      deps.stderr.text,
      'warning: blob_Bob\\x1b]0;pwned\\x07\\x1b[2J\\r\\x9b31m\\u202eevil: sent by you encrypted\n',
    );
  });

  it('relay error messages are escaped too', async () => {
    const { formatErrorLine } = await import('../../src/cli/output.js');
    const { RelayError } = await import('../../src/core/errors.js');
    assert.equal(
      formatErrorLine(new RelayError('bad_request', 'no\u001b[2Jway\r')),
      'error: bad_request: no\\x1b[2Jway\\r',
    );
  });
});

describe('global flags, help and exit codes', () => {
  it('global flags are accepted between a group and its subcommand', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    const key = join(home, 'k');
    await runCli(['keygen', '--key', key], deps);
    const res = await runCli(['contacts', '--key', key, '--json', 'ls'], deps);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(JSON.parse(res.stdout), []);
    const config = await runCli(['config', '--relay', 'http://127.0.0.1:5', 'get', 'relay'], deps);
    assert.equal(config.stdout, 'http://127.0.0.1:5\n');
    const acl = await runCli(['acl', '--relay', await closedPort(), '--key', key, 'ls', '--json'], deps);
    assert.equal(JSON.parse(acl.stderr).error.code, 'connection_refused', 'parsed, then failed only on the network');
  });

  it('commands load on demand: the table names exactly the words each module registers, in help order', async () => {
    const deps = testDeps({ home: '/nonexistent' });
    const words: string[] = [];
    for (const [expected, load] of COMMANDS) {
      const alone = buildProgram(deps, [await load()]);
      assert.deepEqual(
        alone.commands.map((c) => c.name()),
        [...expected],
        `the module for ${expected.join('/')} registers exactly those commands`,
      );
      words.push(...expected);
    }
    const all = buildProgram(deps, await loadCommands());
    assert.deepEqual(
      all.commands.map((c) => c.name()),
      words,
    );
  });

  it('one command loaded or all: root help lists them all; a command help and parsing are unchanged', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    const names = COMMANDS.flatMap(([w]) => w);
    for (const argv of [['--help'], ['--help', 'whoami'], ['-h', 'send'], ['-qh', 'whoami'], ['help'], []]) {
      const res = await runCli(argv, deps);
      assert.equal(res.code, 0, res.stderr);
      for (const name of names)
        assert.match(res.stdout, new RegExp(`^  ${name}\\b`, 'm'), `${argv.join(' ')} lists ${name}`);
    }
    const sendHelp = await runCli(['send', '--help'], deps);
    assert.match(sendHelp.stdout, /^Usage: mrp send /m);
    // A root option's value is not taken for the command word.
    const key = join(home, 'k');
    await runCli(['keygen', '--key', key], deps);
    const who = await runCli(['--relay', 'http://127.0.0.1:5', '--key', key, '--json', 'whoami'], deps);
    assert.equal(who.code, 0, who.stderr);
    assert.equal(JSON.parse(who.stdout).relay, 'http://127.0.0.1:5');
    // `status` is --relay's value here (whoami runs and judges it), not the command `status`.
    const status = await runCli(['--relay', 'status', 'whoami', '--key', key, '--json'], deps);
    assert.equal(JSON.parse(status.stderr).error.code, 'invalid_relay_url', status.stderr);
    // A relay URL with a password is refused, and the password is never echoed.
    const creds = await runCli(['--relay', 'http://me:hunter2@127.0.0.1:5', '--key', key, 'whoami'], deps);
    assert.equal(creds.code, 2);
    assert.match(creds.stderr, /--relay: "http:\/\/…@127\.0\.0\.1:5" must not contain a user name or password/);
    assert.ok(!`${creds.stdout}${creds.stderr}`.includes('hunter2'), creds.stderr);
    assert.throws(() => new RelayClient({ relayUrl: 'https://u:pw@relay.example', keypair: Keypair.generate() }), {
      code: 'invalid_relay_url',
      message: /^relayUrl: "https:\/\/…@relay\.example" must not contain/,
    });
    // Nor when the URL is refused for something else (its scheme, or no URL at all).
    for (const bad of ['ws://me:hunter2@127.0.0.1:5', 'http://me:hunter2@[::1']) {
      const res = await runCli(['--relay', bad, '--key', key, 'whoami'], deps);
      assert.equal(res.code, 2, res.stderr);
      assert.ok(!`${res.stdout}${res.stderr}`.includes('hunter2'), res.stderr);
      assert.throws(
        () => new RelayClient({ relayUrl: bad, keypair: Keypair.generate() }),
        (e: unknown) =>
          (e as { code?: string }).code === 'invalid_relay_url' && !String((e as Error).message).includes('hunter2'),
      );
    }
    // A word that is no command still gets the nearest one suggested; the help hint names no
    // command from an option's value.
    const typo = await runCli(['--key', key, 'whoamj'], deps);
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /whoami/);
    const hint = await runCli(['--context', 'acl', 'whoamj', '--json'], deps);
    assert.equal(hint.code, 2);
    assert.match(JSON.parse(hint.stderr).error.hint, /see `mrp --help`/);
  });

  it('every leaf command has examples in --help; flags mean one thing everywhere', async () => {
    const program = buildProgram(testDeps({ home: '/nonexistent' }), await loadCommands());
    const leaves = (cmd: Command, path: string[] = []): Array<[string, Command]> =>
      cmd.commands.flatMap((c) =>
        c.commands.length ? leaves(c, [...path, c.name()]) : [[[...path, c.name()].join(' '), c] as [string, Command]],
      );
    for (const [name, cmd] of leaves(program)) {
      let help = '';
      cmd.configureOutput({ writeOut: (s) => void (help += s) });
      cmd.outputHelp();
      assert.match(help, /Examples:\n {2}[^\n]*\bmrp\b/, `mrp ${name} --help has examples`);
      assert.match(help, /Global Options:/, `mrp ${name} takes the global options`);
    }
    const meaning = new Map<string, string>();
    for (const node of completionTree(program)) {
      for (const o of node.options) {
        const sig = `${o.flags.join(',')} ${o.value === null ? 'switch' : 'value'}`;
        for (const f of o.flags) {
          if (f === '--json') continue; // send --json [value]: documented double role
          const other = meaning.get(f);
          assert.ok(
            other === undefined || other === sig,
            `${f} means "${other}" and "${sig}" (mrp ${node.path.join(' ')})`,
          );
          meaning.set(f, sig);
        }
      }
    }
    assert.equal(meaning.get('-m'), '--mode,-m value');
  });

  it('--wait takes a duration like --ttl', async (t) => {
    const relay = await startRelay(t);
    const { deps } = await user(t, relay);
    const recv = await runCli(['recv', '--wait', '1s', '--json'], deps);
    assert.equal(recv.code, 0, recv.stderr);
    const send = await runCli(['send', Keypair.generate().publicKey, 'x', '--wait', '1s'], deps);
    assert.equal(send.code, 3, 'a timeout, not a usage error');
    assert.match(send.stderr, /within 1s/);
    const bad = await runCli(['recv', '--wait', 'soon'], deps);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--wait: "soon" is not a duration/);
  });

  it('the help and the README list the same exit codes; journal_locked is 1, not 2', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
    const table = readme.slice(readme.indexOf('## Exit codes'), readme.indexOf('## Error codes'));
    const documented = [...table.matchAll(/^\| (\d+) \|/gm)].map((m) => m[1]);
    const deps = testDeps({ home: '/nonexistent' });
    await main(['--help'], deps);
    const help = deps.stdout.text.slice(deps.stdout.text.indexOf('Exit codes:'));
    const inHelp = [...help.matchAll(/(?:^|· |: )(\d+) /gm)].map((m) => m[1]);
    assert.deepEqual(inHelp, documented);
    const { exitCodeFor } = await import('../../src/cli/exit.js');
    const { ConfigError } = await import('../../src/core/errors.js');
    assert.equal(exitCodeFor(new ConfigError('journal_locked', 'x')), 1);
    assert.equal(exitCodeFor(new ConfigError('manifest_invalid', 'x')), 2);
  });

  it('Ctrl-C while send --wait waits: exit 130 at once, naming the message that was sent', async (t) => {
    const relay = await startRelay(t);
    const { home } = await user(t, relay);
    const deps = testDeps({ home, env: { MRP_RELAY_URL: relay.url }, tty: true });
    const waiting = runCli(['send', Keypair.generate().publicKey, 'anyone?', '--wait', '30s'], deps);
    await deps.stderr.waitFor('waiting up to 30s for a reply');
    deps.raise('SIGINT');
    const res = await waiting;
    assert.equal(res.code, 130);
    const id = /Sent (msg_\S+);/.exec(res.stderr)![1]!;
    assert.match(
      res.stderr,
      new RegExp(
        `error: interrupted while waiting for the reply to ${id} \\(the message was sent\\) — check on it later with \`mrp status ${id}\``,
      ),
    );
  });
});

describe('mrp completion', () => {
  const complete = (script: string, line: string): string => {
    const words = line.split(' ');
    const arr = words.map((w) => `'${w}'`).join(' ');
    return execFileSync('bash', [
      '-c',
      `${script}\nmrp() { case "$1" in contacts) printf 'alice\\nbob\\n' ;; context) printf 'dev\\nprod\\n' ;; esac; }\nCOMP_WORDS=(${arr}); COMP_CWORD=${words.length - 1}; _mrp; echo "\${COMPREPLY[*]}"`,
    ])
      .toString()
      .trim();
  };
  it('bash completes contact and context names, modes, statuses and policies; flags only after "-"', async (t) => {
    const deps = testDeps({ home: await tempDir(t) });
    const bash = (await runCli(['completion', 'bash'], deps)).stdout;
    execFileSync('bash', ['-n'], { input: bash });
    assert.equal(complete(bash, 'mrp send '), 'alice bob');
    assert.equal(complete(bash, 'mrp send alice '), '', 'the text: nothing, certainly not "-"');
    assert.equal(complete(bash, 'mrp tail --from a'), 'alice');
    assert.equal(complete(bash, 'mrp run --mode '), 'websocket poll webhook');
    assert.equal(complete(bash, 'mrp run -m '), 'websocket poll webhook');
    assert.equal(complete(bash, 'mrp run -m p'), 'poll');
    assert.equal(complete(bash, 'mrp dev -m '), 'websocket poll', 'dev has no webhook mode');
    assert.equal(complete(bash, 'mrp --context '), 'dev prod', 'saved contexts, from mrp context ls -q');
    assert.equal(complete(bash, 'mrp send --context p'), 'prod');
    assert.equal(complete(bash, 'mrp context use '), 'dev prod');
    assert.equal(complete(bash, 'mrp context rm d'), 'dev');
    assert.equal(complete(bash, 'mrp recv --status '), 'sent delivered expired');
    assert.equal(complete(bash, 'mrp acl policy '), 'open closed allowlist blocklist');
    assert.equal(complete(bash, 'mrp --key K acl '), 'allow block rm remove ls list policy');
    assert.equal(complete(bash, 'mrp acl --key K ls --t'), '--type');
    assert.equal(complete(bash, 'mrp discover --tag '), '', 'free text: no flags offered');
    assert.equal(
      complete(bash, 'mrp profile --name x '),
      'alice bob',
      'after a flag and its value: the [key] argument',
    );
  });

  it('bash reads contact names as data: a name with $(…) or backquotes is never run, a space is quoted', async (t) => {
    const dir = await tempDir(t);
    const deps = testDeps({ home: dir });
    const bash = (await runCli(['completion', 'bash'], deps)).stdout;
    const marker = join(dir, 'ran');
    const names = [`$(touch ${marker})`, `\`touch ${marker}\``, 'bo b', 'alice'];
    await writeFile(join(dir, 'names'), `${names.join('\n')}\n`);
    const out = execFileSync('bash', [
      '-c',
      `${bash}\nmrp() { cat ${JSON.stringify(join(dir, 'names'))}; }\nCOMP_WORDS=(mrp send --to ''); COMP_CWORD=3; _mrp; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ]).toString();
    assert.equal(existsSync(marker), false, 'nothing in a name was executed');
    assert.deepEqual(out.trim().split('\n'), [
      `\\$\\(touch\\ ${marker}\\)`,
      `\\\`touch\\ ${marker}\\\``,
      'bo\\ b',
      'alice',
    ]);
  });

  it('--json prints the command tree the scripts are made from', async (t) => {
    const res = await runCli(['completion', '--json'], testDeps({ home: await tempDir(t) }));
    assert.equal(res.code, 0, res.stderr);
    const tree = JSON.parse(res.stdout).commands as Array<{
      path: string[];
      options: Array<{ flags: string[]; value: unknown }>;
    }>;
    const run = tree.find((n) => n.path.join(' ') === 'run')!;
    assert.deepEqual(run.options.find((o) => o.flags.includes('--mode'))!.value, ['websocket', 'poll', 'webhook']);
    const dev = tree.find((n) => n.path.join(' ') === 'dev')!;
    assert.deepEqual(dev.options.find((o) => o.flags.includes('--mode'))!.value, ['websocket', 'poll']);
    assert.equal(run.options.find((o) => o.flags.includes('--context'))!.value, 'context');
    assert.ok(tree.some((n) => n.path.join(' ') === 'acl allow'));
  });

  it('--json with a shell named checks the name: a typo is a usage error, not the tree', async (t) => {
    const deps = testDeps({ home: await tempDir(t) });
    assert.equal((await runCli(['completion', 'bash', '--json'], deps)).code, 0);
    const res = await runCli(['completion', 'bsh', '--json'], deps);
    assert.equal(res.code, 2, res.stdout);
    assert.equal(res.stdout, '');
    assert.equal(JSON.parse(res.stderr).error.code, 'invalid_argument');
  });
});
