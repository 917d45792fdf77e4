import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import { Keypair } from '../../src/protocol/signing.js';
import { connected, startAgent } from '../helpers/agent.js';
import { ndjson, runCli, type TestDeps, tempDir, testDeps } from '../helpers/cli.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';

async function user(
  t: import('node:test').TestContext,
  relay: TestRelay,
  extra: Parameters<typeof testDeps>[0] extends infer O ? Partial<O> : never = {},
): Promise<{ deps: TestDeps; key: string }> {
  const home = await tempDir(t);
  const deps = testDeps({ home, env: { MRP_RELAY_URL: relay.url }, ...extra });
  const res = await runCli(['keygen', '--json'], deps);
  return { deps, key: JSON.parse(res.stdout).public_key };
}

describe('mrp send', () => {
  it('--to KEY --text delivers {"text": …}; prints the message id when piped', async (t) => {
    const relay = await startRelay(t);
    const { deps } = await user(t, relay);
    const peer = Keypair.generate();
    const res = await runCli(['send', '--to', peer.publicKey, '--text', 'hello there'], deps);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout.trim(), /^msg_\d+_[0-9a-f]{12}$/);
    const inbox = await new RelayClient({ relayUrl: relay.url, keypair: peer }).poll();
    assert.equal(inbox.messages.length, 1);
    assert.equal(inbox.messages[0]!.message_id, res.stdout.trim());
    assert.deepEqual(inbox.messages[0]!.body, { text: 'hello there' });
    assert.equal(inbox.messages[0]!.content_type, 'application/json');
  });

  it('positional recipient (a contact) and text, --json output, metadata, thread and ttl', async (t) => {
    const relay = await startRelay(t);
    const { deps } = await user(t, relay);
    const peer = Keypair.generate();
    await runCli(['contacts', 'add', 'bob', peer.publicKey], deps);
    const res = await runCli(
      ['send', 'bob', 'hi', 'bob!', '--json', '--thread', 'conv-1', '--meta', 'prio=high', '--ttl', '1h'],
      deps,
    );
    assert.equal(res.code, 0, res.stderr);
    const sent = JSON.parse(res.stdout);
    assert.equal(sent.status, 'sent');
    const m = (await new RelayClient({ relayUrl: relay.url, keypair: peer }).poll()).messages[0]!;
    assert.equal(m.message_id, sent.message_id);
    assert.deepEqual(m.body, { text: 'hi bob!' });
    assert.equal(m.thread_id, 'conv-1');
    assert.deepEqual(m.metadata, { prio: 'high' });
    assert.equal(Date.parse(m.expires_at) - Date.parse(m.created_at), 3_600_000);
  });

  it('a key that starts with "-" is an argument, not an option', async (t) => {
    const relay = await startRelay(t);
    const { deps } = await user(t, relay);
    let peer = Keypair.generate();
    while (!peer.publicKey.startsWith('-')) peer = Keypair.generate();
    const res = await runCli(['send', peer.publicKey, 'dash', '--json'], deps);
    assert.equal(res.code, 0, res.stderr);
    assert.equal((await runCli(['contacts', 'add', 'dashy', peer.publicKey], deps)).code, 0);
    assert.equal((await runCli(['send', '--to', peer.publicKey, '--text', 'again'], deps)).code, 0);
    const inbox = await new RelayClient({ relayUrl: relay.url, keypair: peer }).poll();
    assert.deepEqual(
      inbox.messages.map((m) => m.body),
      [{ text: 'dash' }, { text: 'again' }],
    );
    const unknown = await runCli(['send', peer.publicKey, 'x', '--nope'], deps);
    assert.equal(unknown.code, 2, 'real unknown options are still refused');
  });

  it('--json <value>, stdin and --file bodies; exactly one body source', async (t) => {
    const relay = await startRelay(t);
    const peer = Keypair.generate();
    const { deps } = await user(t, relay, { stdin: '{"from":"stdin"}' });
    assert.equal((await runCli(['send', peer.publicKey, '--json', '{"n":1}'], deps)).code, 0);
    assert.equal((await runCli(['send', peer.publicKey, '-'], deps)).code, 0);
    const both = await runCli(['send', peer.publicKey, 'text', '--text', 'more'], deps);
    assert.equal(both.code, 2);
    assert.match(both.stderr, /one body/);
    const none = await runCli(['send', peer.publicKey], deps);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /nothing to send/);
    const bad = await runCli(['send', peer.publicKey, '--json', '{nope'], deps);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--json value is not valid JSON/);
    const bodies = (await new RelayClient({ relayUrl: relay.url, keypair: peer }).poll()).messages.map((m) => m.body);
    assert.deepEqual(bodies, [{ n: 1 }, { from: 'stdin' }]);
  });

  it('--json … --wait prints the reply of a running handler', async (t) => {
    const relay = await startRelay(t);
    const agent = await startAgent(t, relay, (msg) => ({ status: 'ok', result: { got: msg.body } }));
    agent.runtime.start();
    await connected(agent.runtime);
    const { deps } = await user(t, relay);
    const res = await runCli(
      [
        'send',
        agent.keypair.publicKey,
        '--content-type',
        'application/x-mrp-request+json',
        '--body',
        '{"action":"ping"}',
        '--wait',
        '10',
        '--json',
      ],
      deps,
    );
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout);
    assert.equal(out.reply.in_reply_to, out.message_id);
    assert.deepEqual(out.reply.body, { status: 'ok', result: { got: { action: 'ping' } } });
    const plain = await runCli(['send', agent.keypair.publicKey, 'again', '--wait'], deps);
    assert.equal(plain.code, 0, plain.stderr);
    assert.deepEqual(
      JSON.parse(plain.stdout),
      { status: 'ok', result: { got: { text: 'again' } } },
      'piped: the reply body',
    );
  });

  it('--wait times out with exit 3 and says why', async (t) => {
    const relay = await startRelay(t);
    const { deps } = await user(t, relay);
    const res = await runCli(['send', Keypair.generate().publicKey, 'anyone?', '--wait', '1'], deps);
    assert.equal(res.code, 3, res.stderr);
    assert.match(res.stderr, /no reply to msg_\S+ within 1s \(the recipient has not picked it up yet\)/);
  });

  it('relay errors come out as one line with the code and a hint', async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 1 });
    const { deps } = await user(t, relay);
    const closed = await user(t, relay);
    await runCli(['acl', 'policy', 'closed'], closed.deps);
    const denied = await runCli(['send', closed.key, 'hi'], deps);
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /^error: acl_denied: .* — .*mrp acl allow/);
    assert.equal(denied.stderr.trim().split('\n').length, 1);
    const ok = await runCli(['send', Keypair.generate().publicKey, 'one'], deps);
    assert.equal(ok.code, 0, ok.stderr);
    const limited = await runCli(['send', Keypair.generate().publicKey, 'two', '--json'], deps);
    assert.equal(limited.code, 1);
    const err = JSON.parse(limited.stderr).error;
    assert.equal(err.code, 'rate_limit_exceeded');
    assert.match(err.hint, /retry in \d+ s; the relay allows 1 per minute/);
  });
});

describe('mrp tail', () => {
  it('--json prints one parseable line per arriving message and leaves them unacked', async (t) => {
    const relay = await startRelay(t);
    const { deps, key } = await user(t, relay);
    const tail = runCli(['tail', '--json', '--count', '3'], deps);
    const sender = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    // Wait until tail is connected (it says so on stderr) before sending.
    await deps.stderr.waitFor('connected');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) ids.push((await sender.send({ recipient_key: key, body: { i } })).message_id);
    const res = await tail;
    assert.equal(res.code, 0, res.stderr);
    const lines = res.stdout.trim().split('\n');
    assert.equal(lines.length, 3);
    assert.deepEqual(
      lines.map((l) => JSON.parse(l).message_id),
      ids,
    );
    for (const id of ids) assert.equal((await sender.messageStatus(id)).status, 'sent', 'not acknowledged');
  });
});

describe('mrp recv / thread / status / get', () => {
  it('recv fetches once and marks delivered; thread shows the conversation', async (t) => {
    const relay = await startRelay(t);
    const { deps, key } = await user(t, relay);
    const other = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const first = await other.send({ recipient_key: key, body: { text: 'question' } });
    const peek = await runCli(['recv', '--no-ack', '--json'], deps);
    assert.equal(ndjson(peek.stdout).length, 1);
    assert.equal((await other.messageStatus(first.message_id)).status, 'sent', '--no-ack leaves it');
    const got = await runCli(['recv', '--json'], deps);
    assert.equal(got.code, 0, got.stderr);
    assert.deepEqual(
      ndjson(got.stdout).map((m) => m['message_id']),
      [first.message_id],
    );
    assert.equal((await other.messageStatus(first.message_id)).status, 'delivered');
    const answer = await runCli(['send', other.publicKey, 'answer', '--in-reply-to', first.message_id], deps);
    assert.equal(answer.code, 0, answer.stderr);
    const thread = await runCli(['thread', first.message_id, '--json'], deps);
    assert.deepEqual(
      ndjson(thread.stdout).map((m) => m['body']),
      [{ text: 'question' }, { text: 'answer' }],
    );
    const status = await runCli(['status', first.message_id, '--json'], deps);
    assert.equal(JSON.parse(status.stdout).status, 'delivered');
    const get = await runCli(['get', first.message_id], deps);
    assert.match(get.stdout, /question/);
    const missing = await runCli(['get', 'msg_1_000000000000'], deps);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /message_not_found/);
  });
});

describe('health', () => {
  it('needs no key', async (t) => {
    const relay = await startRelay(t);
    const res = await runCli(['health', '--json', '--relay', relay.url], testDeps({ home: await tempDir(t) }));
    assert.equal(res.code, 0, res.stderr);
    assert.equal(JSON.parse(res.stdout).status, 'ok');
    const down = await runCli(['health', '--relay', 'http://127.0.0.1:1'], testDeps({ home: await tempDir(t) }));
    assert.equal(down.code, 3);
    assert.match(down.stderr, /cannot reach the relay/);
  });
});

describe('mrp delete-agent', () => {
  it('needs --yes (exit 2, nothing sent); with it the agent is gone from the relay and the key file stays', async (t) => {
    const relay = await startRelay(t);
    const { deps, key } = await user(t, relay);
    assert.equal((await runCli(['profile', '--name', 'Doomed'], deps)).code, 0);
    const other = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    assert.equal((await other.getAgent(key)).display_name, 'Doomed');

    const refused = await runCli(['delete-agent'], deps);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, new RegExp(`deletes agent ${key} on ${relay.url.replace(/[.:/]/g, '\\$&')}`));
    assert.match(refused.stderr, /add --yes/);
    assert.equal((await other.getAgent(key)).display_name, 'Doomed', 'nothing was sent');

    const res = await runCli(['delete-agent', '--yes', '--json'], deps);
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout);
    assert.equal(out.deleted, true);
    assert.equal(out.public_key, key);
    await assert.rejects(other.getAgent(key), { status: 404 });
    assert.equal((await runCli(['whoami', '-q'], deps)).stdout.trim(), key, 'the key file is kept');
  });
});
