/**
 * End-to-end encryption on the command line (docs/protocol.md §8): `mrp send -e` seals, and
 * `recv`, `recv --ws`, `tail`, `thread`, `get` and `send --wait` open what arrives encrypted and say
 * so. The other side is either another CLI user, a runner with the real codec, or an independent
 * agent built from the reference HPKE (`test/helpers/hpke-reference.ts`), so the byte layout is
 * checked against a second reading of the spec, not only against itself.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { readKeyFile } from '../../src/cli/keys.js';
import { e2eCodec } from '../../src/client/e2e-codec.js';
import { RelayClient } from '../../src/client/http.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { JsonValue, Message } from '../../src/protocol/types.js';
import { connected, startAgent } from '../helpers/agent.js';
import { ndjson, runCli, type TestDeps, tempDir, testDeps } from '../helpers/cli.js';
import { edSeedToX25519, refAuthOpen, refAuthSeal, x25519Public } from '../helpers/hpke-reference.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';

const ENCRYPTED = 'application/x-m2m-encrypted';
const EMPTY = new Uint8Array(0);

interface User {
  deps: TestDeps;
  keypair: Keypair;
  key: string;
}

async function user(t: TestContext, relay: TestRelay, tty = false): Promise<User> {
  const home = await tempDir(t);
  const deps = testDeps({ home, env: { MRP_RELAY_URL: relay.url }, tty });
  const res = await runCli(['keygen', '--json'], deps);
  assert.equal(res.code, 0, res.stderr);
  const { keypair } = await readKeyFile(join(home, 'agent.key'));
  return { deps, keypair, key: keypair.publicKey };
}

/** The reference implementation's v2 envelope, from `from` to `to`. */
function refSeal(from: Keypair, to: Keypair, body: JsonValue): JsonValue {
  const { enc, ct } = refAuthSeal(
    edSeedToX25519(from.exportSeed()),
    x25519Public(edSeedToX25519(to.exportSeed())),
    Buffer.from(JSON.stringify(body)),
    EMPTY,
    EMPTY,
  );
  return { v: 2, enc: enc.toString('base64url'), ct: ct.toString('base64url'), ct_content_type: 'application/json' };
}

/** Opens with the reference implementation. */
function refOpen(message: Message, to: Keypair, from: Keypair): JsonValue {
  const env = message.body as { enc: string; ct: string };
  const plain = refAuthOpen(
    edSeedToX25519(to.exportSeed()),
    x25519Public(edSeedToX25519(from.exportSeed())),
    Buffer.from(env.enc, 'base64url'),
    Buffer.from(env.ct, 'base64url'),
    EMPTY,
    EMPTY,
  );
  return JSON.parse(plain.toString('utf8')) as JsonValue;
}

describe('mrp send -e and the readers', () => {
  it('send -e puts only ciphertext on the relay; get, recv and thread show the plaintext and say it was encrypted', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const sent = await runCli(
      ['send', '-e', bob.key, 'meet at noon', '--thread', 'plan', '--meta', 'k=v', '--json'],
      alice.deps,
    );
    assert.equal(sent.code, 0, sent.stderr);
    const { message_id: id, encrypted } = JSON.parse(sent.stdout);
    assert.equal(encrypted, true);

    // What the relay holds: an envelope the reference implementation opens; threading and metadata in clear.
    const raw = await new RelayClient({ relayUrl: relay.url, keypair: bob.keypair }).getMessage(id);
    assert.equal(raw.content_type, ENCRYPTED);
    assert.equal(JSON.stringify(raw.body).includes('noon'), false, 'no plaintext on the relay');
    assert.deepEqual(Object.keys(raw.body as object).sort(), ['ct', 'ct_content_type', 'enc', 'v']);
    assert.deepEqual(refOpen(raw, bob.keypair, alice.keypair), { text: 'meet at noon' });
    assert.equal(raw.thread_id, 'plan');
    assert.deepEqual(raw.metadata, { k: 'v' });

    const get = await runCli(['get', id, '--json'], bob.deps);
    assert.equal(get.code, 0, get.stderr);
    const got = JSON.parse(get.stdout);
    assert.deepEqual([got.body, got.content_type, got.encrypted], [{ text: 'meet at noon' }, 'application/json', true]);

    const recv = await runCli(['recv', '--json'], bob.deps);
    assert.equal(recv.code, 0, recv.stderr);
    const [r] = ndjson(recv.stdout);
    assert.deepEqual(
      [r!['message_id'], r!['body'], r!['encrypted'], r!['decryption_error']],
      [id, { text: 'meet at noon' }, true, undefined],
    );

    const quiet = await runCli(['thread', 'plan', '-q'], bob.deps);
    assert.equal(quiet.stdout.trim(), JSON.stringify({ text: 'meet at noon' }));

    // The sender cannot read back what it sealed for someone else, and says so (no failure).
    const own = await runCli(['thread', 'plan', '--json'], alice.deps);
    assert.equal(own.code, 0, own.stderr);
    const [mine] = ndjson(own.stdout);
    assert.equal(mine!['encrypted'], true);
    assert.equal((mine!['decryption_error'] as { reason: string }).reason, 'sealed_for_recipient');
  });

  it('on a terminal: a 🔒 marker on opened messages and a clear note on one that cannot be opened', async (t) => {
    const relay = await startRelay(t);
    const bob = await user(t, relay, true);
    const stranger = Keypair.generate();
    const other = new RelayClient({ relayUrl: relay.url, keypair: stranger });
    await other.send({
      recipient_key: bob.key,
      content_type: ENCRYPTED,
      body: refSeal(stranger, bob.keypair, { text: 'psst' }),
    });
    const broken = refSeal(stranger, bob.keypair, { text: 'lost' }) as Record<string, unknown>;
    await other.send({ recipient_key: bob.key, content_type: ENCRYPTED, body: { ...broken, v: 3 } });
    const res = await runCli(['recv'], bob.deps);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /🔒 encrypted/);
    assert.match(res.stdout, /psst/);
    assert.match(res.stdout, /🔒 cannot open the encrypted message: unsupported encryption version 3/);
  });

  it('an independent agent (reference HPKE) and the streams: tail opens each, notes the one it cannot open, and goes on', async (t) => {
    const relay = await startRelay(t);
    const bob = await user(t, relay);
    const ref = Keypair.generate();
    const refClient = new RelayClient({ relayUrl: relay.url, keypair: ref });
    const tail = runCli(['tail', '--json', '-n', '3'], bob.deps);
    await bob.deps.stderr.waitFor('connected');
    const good = refSeal(ref, bob.keypair, { n: 1 }) as Record<string, string>;
    const ct = Buffer.from(good['ct']!, 'base64url');
    ct[ct.length - 1]! ^= 0x80;
    const ids = [
      (await refClient.send({ recipient_key: bob.key, content_type: ENCRYPTED, body: good })).message_id,
      (
        await refClient.send({
          recipient_key: bob.key,
          content_type: ENCRYPTED,
          body: { ...good, ct: ct.toString('base64url') },
        })
      ).message_id,
      (await refClient.send({ recipient_key: bob.key, body: { n: 3 } })).message_id,
    ];
    const res = await tail;
    assert.equal(res.code, 0, res.stderr);
    const lines = ndjson(res.stdout);
    assert.deepEqual(
      lines.map((l) => l['message_id']),
      ids,
      'in order, none dropped',
    );
    assert.deepEqual(
      [lines[0]!['body'], lines[0]!['content_type'], lines[0]!['encrypted']],
      [{ n: 1 }, 'application/json', true],
    );
    const failed = lines[1]!['decryption_error'] as { code: string; reason: string; message: string };
    assert.equal(lines[1]!['content_type'], ENCRYPTED);
    assert.deepEqual([failed.code, failed.reason], ['decryption_failed', 'decryption_failed']);
    assert.match(failed.message, /wrong keys, a different sender, or tampered data/);
    assert.deepEqual([lines[2]!['body'], lines[2]!['encrypted']], [{ n: 3 }, undefined]);

    // recv --ws (the same stream code), bare: bodies on stdout, the note on stderr.
    bob.deps.stdout.text = '';
    const ws = runCli(['recv', '--ws', '-q'], bob.deps);
    await bob.deps.stdout.waitFor('{"n":3}');
    bob.deps.raise('SIGINT');
    const streamed = await ws;
    assert.deepEqual(streamed.stdout.trim().split('\n'), [
      JSON.stringify({ n: 1 }),
      JSON.stringify(JSON.parse(JSON.stringify({ ...good, ct: ct.toString('base64url') }))),
      JSON.stringify({ n: 3 }),
    ]);
    assert.match(streamed.stderr, new RegExp(`${ids[1]}: cannot open the encrypted message`));
  });

  it('send -e --wait to a runner: the runner opens it, its reply comes back sealed, and the CLI opens that', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const agentKeys = Keypair.generate();
    const agent = await startAgent(t, relay, (msg, ctx) => ({ saw: msg.body, encrypted: ctx.encrypted }), {
      keypair: agentKeys,
      options: { codec: e2eCodec(agentKeys) },
    });
    agent.runtime.start();
    await connected(agent.runtime);
    const res = await runCli(
      ['send', '-e', agentKeys.publicKey, '--body', '{"q":"ping"}', '--wait', '10s', '--json'],
      alice.deps,
    );
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout);
    assert.equal(out.encrypted, true);
    assert.deepEqual(out.reply.body, { saw: { q: 'ping' }, encrypted: true });
    assert.equal(out.reply.encrypted, true);
    // And on the relay the reply is ciphertext the reference implementation opens.
    const raw = await new RelayClient({ relayUrl: relay.url, keypair: alice.keypair }).getMessage(out.reply.message_id);
    assert.equal(raw.content_type, ENCRYPTED);
    assert.deepEqual(refOpen(raw, alice.keypair, agentKeys), { saw: { q: 'ping' }, encrypted: true });
  });

  it('send -e refuses a body too large to seal, with a one-line error', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const big = JSON.stringify({ blob: 'x'.repeat(900 * 1024) });
    const res = await runCli(['send', '-e', Keypair.generate().publicKey, '--body', big, '--json'], alice.deps);
    assert.equal(res.code, 2, res.stderr);
    assert.equal(res.stderr.trim().split('\n').length, 1);
    assert.equal(JSON.parse(res.stderr).error.code, 'payload_too_large');
    const human = await runCli(['send', '-e', Keypair.generate().publicKey, '--body', big], alice.deps);
    assert.match(
      human.stderr,
      /^error: the body is \d+ bytes, \d+ once encrypted \(base64 adds a third\): more than a message body may be \(1048576 bytes, 1 MiB\) encrypted; send it as an encrypted attachment instead \(mrp send -e --attach-file; agent.upload with encryptFor\)\n$/,
    );
  });
});
