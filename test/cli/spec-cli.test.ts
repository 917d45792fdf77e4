/**
 * The CLI surface PROTOCOL.md §9.2 promises, read from the spec's words (not from our code): every
 * documented command and flag against a real relay, the contacts file of §1.3, and the exit code of
 * each failure class (0 ok, 1 relay error, 2 usage, 3 network, 4 auth, 130 interrupted). Other CLI
 * tests go deeper into each command; this file keeps the whole list honest in one place.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { readKeyFile } from '../../src/cli/keys.js';
import { RelayClient } from '../../src/client/http.js';
import { type Clock, ManualClock, systemClock } from '../../src/core/clock.js';
import type { Keypair } from '../../src/protocol/signing.js';
import { ndjson, runCli, type TestDeps, tempDir, testDeps } from '../helpers/cli.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';

const ENCRYPTED = 'application/x-m2m-encrypted';
const MSG_ID = /^msg_\d+_[0-9a-f]{12}$/;

interface User {
  home: string;
  deps: TestDeps;
  keypair: Keypair;
  key: string;
  /** The same identity as a library client, to look at what reached the relay. */
  api: RelayClient;
}

async function user(
  t: TestContext,
  relay: TestRelay,
  extra: { tty?: boolean; clock?: Clock; cwd?: string } = {},
): Promise<User> {
  const home = await tempDir(t);
  const deps = testDeps({ home, env: { MRP_RELAY_URL: relay.url }, ...extra });
  const res = await runCli(['keygen', '--json'], deps);
  assert.equal(res.code, 0, res.stderr);
  const { keypair } = await readKeyFile(join(home, 'agent.key'));
  return { home, deps, keypair, key: keypair.publicKey, api: new RelayClient({ relayUrl: relay.url, keypair }) };
}

async function ok(argv: string[], deps: TestDeps): Promise<string> {
  const res = await runCli(argv, deps);
  assert.equal(res.code, 0, `mrp ${argv.join(' ')}: ${res.stderr}`);
  return res.stdout;
}

/** A local port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('PROTOCOL §9.2: mrp send', () => {
  it('--to/--text, --json <body>, --content-type, --thread, --reply-to, --ttl reach the relay as written', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const first = (await ok(['send', '--to', bob.key, '--text', 'hello'], alice.deps)).trim();
    assert.match(first, MSG_ID, 'piped: the bare message id');
    const second = JSON.parse(
      await ok(
        [
          'send',
          '--to',
          bob.key,
          '--json',
          '{"q":1}',
          '--content-type',
          'application/vnd.test+json',
          '--thread',
          't-1',
          '--reply-to',
          first,
          '--ttl',
          '60',
          '--json',
        ],
        alice.deps,
      ),
    );
    assert.equal(second.status, 'sent');
    const [m1, m2] = (await bob.api.poll()).messages;
    assert.deepEqual(m1!.body, { text: 'hello' });
    assert.equal(m1!.content_type, 'application/json');
    assert.equal(m2!.message_id, second.message_id);
    assert.deepEqual(m2!.body, { q: 1 });
    assert.equal(m2!.content_type, 'application/vnd.test+json');
    assert.equal(m2!.thread_id, 't-1');
    assert.equal(m2!.in_reply_to, first);
    assert.equal(Date.parse(m2!.expires_at) - Date.parse(m2!.created_at), 60_000);
    // A bare --json before the body works the same; with --body too, two bodies are refused.
    const before = JSON.parse(await ok(['send', '--json', '--to', bob.key, '--json', '[1]'], alice.deps));
    assert.equal((await alice.api.getMessage(before.message_id)).body?.toString(), '1');
    for (const argv of [
      ['--json', '{"a":1}', '--json', '--body', '{"b":2}'],
      ['--json', '{"a":1}', '--body', '{"b":2}', '--json'],
    ]) {
      const two = await runCli(['send', bob.key, ...argv], alice.deps);
      assert.equal(two.code, 2, two.stderr);
      assert.match(two.stderr, /give one body, not several/);
    }
    // --reply-to is the spec's name: offered in help, not hidden.
    assert.match(await ok(['send', '--help'], alice.deps), /--reply-to <message-id>/);
  });

  it('-e/--encrypt, --attach and --attach-file; recv and thread open them (auto-decrypt)', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    await ok(['contacts', 'add', 'bob', bob.key], alice.deps);
    const file = join(alice.home, 'note.txt');
    await writeFile(file, 'file body\n');
    const blob = (await ok(['blob', 'upload', file], alice.deps)).trim();
    assert.match(blob, /^blob_/);
    const plainAttach = (await ok(['send', '--to', 'bob', '--attach', blob, '--text', 'see file'], alice.deps)).trim();
    const sealed = (await ok(['send', '-e', '--to', 'bob', '--text', 'secret', '--thread', 'sec'], alice.deps)).trim();
    const sealedFile = JSON.parse(await ok(['send', '--encrypt', 'bob', '--attach-file', file, '--json'], alice.deps));
    assert.equal(sealedFile.encrypted, true);
    // On the relay: ciphertext.
    for (const id of [sealed, sealedFile.message_id]) {
      assert.equal((await alice.api.getMessage(id)).content_type, ENCRYPTED);
    }
    assert.deepEqual(
      (await alice.api.getMessage(plainAttach)).attachments.map((a) => a.blob_id),
      [blob],
    );
    // recv opens them (NDJSON when piped).
    const got = ndjson(await ok(['recv'], bob.deps));
    assert.deepEqual(
      got.map((m) => m['message_id']),
      [plainAttach, sealed, sealedFile.message_id],
    );
    assert.deepEqual(got[1]!['body'], { text: 'secret' });
    assert.equal(got[1]!['content_type'], 'application/json');
    assert.equal(got[1]!['encrypted'], true);
    assert.equal(got[0]!['encrypted'], undefined, 'a plaintext message is printed unchanged');
    // thread opens them too.
    const thread = ndjson(await ok(['thread', 'sec'], bob.deps));
    assert.deepEqual(thread[0]!['body'], { text: 'secret' });
    assert.equal(thread[0]!['encrypted'], true);
    // The encrypted attachment downloads (as ciphertext) and is listed with its name.
    const attachment = (got[2]!['attachments'] as Array<{ blob_id: string; filename: string; encrypted: boolean }>)[0]!;
    assert.equal(attachment.filename, 'note.txt');
    assert.equal(attachment.encrypted, true);
  });

  it('a flag value the relay would refuse is a usage error naming the flag, and nothing is sent', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const cases: Array<[string[], RegExp]> = [
      [['--thread', 'not a thread!'], /^error: --thread: must be at most 128 characters/],
      [['--ttl', '31d'], /^error: --ttl "31d" is too long: at most 30d/],
      [['--content-type', 'x'.repeat(300)], /^error: --content-type: /],
      [['--in-reply-to', 'x'.repeat(200)], /^error: --in-reply-to: /],
      [['--in-reply-to', 'msg_1_aaaaaaaaaaaa', '--reply-to', 'msg_2_bbbbbbbbbbbb'], /name different messages/],
    ];
    for (const [flags, message] of cases) {
      const res = await runCli(['send', bob.key, 'hi', ...flags], alice.deps);
      assert.equal(res.code, 2, `${flags[0]}: ${res.stderr}`);
      assert.match(res.stderr, message);
      assert.equal(res.stderr.trim().split('\n').length, 1, 'one line');
    }
    const json = await runCli(['send', bob.key, 'hi', '--thread', 'bad thread', '--json'], alice.deps);
    assert.equal(JSON.parse(json.stderr).error.code, 'bad_request', 'the code stays the contract');
    assert.equal((await ok(['send', bob.key, 'hi', '--ttl', '30d', '-q'], alice.deps)).trim().length > 0, true);
    assert.equal((await bob.api.poll()).messages.length, 1, 'only the valid one was sent');
  });
});

describe('PROTOCOL §9.2: mrp recv', () => {
  it('--status, --limit, --from, --no-ack, --wait', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const carol = await user(t, relay);
    const bob = await user(t, relay);
    await ok(['send', bob.key, 'a1'], alice.deps);
    await ok(['send', bob.key, 'c1'], carol.deps);
    await ok(['send', bob.key, 'a2'], alice.deps);
    // --no-ack peeks: shown, still new.
    const peeked = ndjson(await ok(['recv', '--no-ack'], bob.deps));
    assert.equal(peeked.length, 3);
    assert.ok(peeked.every((m) => m['status'] === 'sent'));
    // --from and --limit: only alice's, one at a time; "more" on stderr only.
    const one = await runCli(['recv', '--from', alice.key, '--limit', '1'], bob.deps);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(
      ndjson(one.stdout).map((m) => m['body']),
      [{ text: 'a1' }],
    );
    assert.match(one.stderr, /More are waiting/);
    // -q: bodies, one per line.
    assert.equal(await ok(['recv', '-q'], bob.deps), '{"text":"c1"}\n{"text":"a2"}\n');
    assert.equal(await ok(['recv'], bob.deps), '', 'fetched messages are delivered');
    // --status delivered: history.
    const history = ndjson(await ok(['recv', '--status', 'delivered', '--json'], bob.deps));
    assert.equal(history.length, 3);
    // --wait: a long poll that returns as soon as something arrives.
    const waiting = runCli(['recv', '--wait', '20s'], bob.deps);
    await ok(['send', bob.key, 'late'], alice.deps);
    const late = await waiting;
    assert.equal(late.code, 0, late.stderr);
    assert.deepEqual(ndjson(late.stdout)[0]!['body'], { text: 'late' });
    // Bad values: usage errors naming the flag.
    for (const [argv, flag] of [
      [['recv', '--status', 'queued'], '--status'],
      [['recv', '--limit', '0'], '--limit'],
      [['recv', '--wait', '31s'], '--wait'],
    ] as const) {
      const res = await runCli([...argv], bob.deps);
      assert.equal(res.code, 2, res.stderr);
      assert.match(res.stderr, new RegExp(flag));
    }
  });

  it('--no-ack --wait watches an empty inbox for the first message, and leaves it new', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    // A manual clock: the peek's timers (its quiet window, the --wait deadline) move only when told.
    const clock = new ManualClock(Date.now());
    const deps = testDeps({ home: bob.home, env: { MRP_RELAY_URL: relay.url, MRP_DEBUG: 'ws' }, clock });
    const peeking = runCli(['recv', '--no-ack', '--wait', '20s'], deps);
    await deps.stderr.waitFor('← auth_result');
    // Longer than the peek's quiet window, far shorter than --wait: still watching.
    await clock.advanceAsync(1_000);
    await ok(['send', bob.key, 'worth the wait'], alice.deps);
    await Promise.race([deps.stderr.waitFor('← message'), peeking]);
    await clock.advanceAsync(1_000);
    const res = await peeking;
    assert.equal(res.code, 0, res.stderr);
    const [m] = ndjson(res.stdout);
    assert.deepEqual(m?.['body'], { text: 'worth the wait' });
    assert.equal((await bob.api.poll()).messages.length, 1, 'not acknowledged: still new');
    // Nothing arrives: it ends at the deadline, empty.
    const again = testDeps({ home: bob.home, env: { MRP_RELAY_URL: relay.url, MRP_DEBUG: 'ws' }, clock });
    await ok(['recv'], bob.deps);
    const empty = runCli(['recv', '--no-ack', '--wait', '5s'], again);
    await again.stderr.waitFor('← auth_result');
    await clock.advanceAsync(5_000);
    assert.equal((await empty).stdout, '');
  });

  it('--ws streams what arrives, opened, and Ctrl-C ends it', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const stream = runCli(['recv', '--ws', '--json'], bob.deps);
    await bob.deps.stderr.waitFor('"event":"connected"');
    await ok(['send', '-e', bob.key, 'live'], alice.deps);
    await bob.deps.stdout.waitFor('"live"');
    bob.deps.raise('SIGINT');
    const res = await stream;
    assert.equal(res.code, 0, 'a stream stopped by Ctrl-C stops cleanly, as tail does');
    const [m] = ndjson(res.stdout);
    assert.deepEqual(m!['body'], { text: 'live' });
    assert.equal(m!['encrypted'], true);
  });

  it('--ws --limit N stops after N; one-time flags it cannot honour are refused, not ignored', {
    timeout: 20_000,
  }, async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const stream = runCli(['recv', '--ws', '--limit', '2', '--json'], bob.deps);
    await bob.deps.stderr.waitFor('"event":"connected"');
    for (const text of ['one', 'two', 'three']) await ok(['send', bob.key, text], alice.deps);
    const res = await stream;
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(
      ndjson(res.stdout).map((m) => m['body']),
      [{ text: 'one' }, { text: 'two' }],
    );
    assert.deepEqual(
      (await bob.api.poll()).messages.map((m) => m.body),
      [{ text: 'three' }],
      'the third is still new',
    );
    for (const [flags, message] of [
      [['--status', 'delivered'], /^error: --status delivered with --ws: /],
      [['--wait', '10s'], /^error: --wait with --ws: /],
    ] as const) {
      const refused = await runCli(['recv', '--ws', ...flags], bob.deps);
      assert.equal(refused.code, 2, refused.stderr);
      assert.match(refused.stderr, message);
    }
  });
});

describe('PROTOCOL §9.2: blob, status, get, thread', () => {
  it('blob upload | download -o | info | delete; status and get of a message', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const file = join(alice.home, 'data.bin');
    await writeFile(file, 'some bytes');
    const id = (await ok(['blob', 'upload', file], alice.deps)).trim();
    const info = JSON.parse(await ok(['blob', 'info', id, '--json'], alice.deps));
    assert.equal(info.size, 10);
    assert.match(info.hash, /^[0-9a-f]{64}$/);
    const out = join(alice.home, 'copy.bin');
    await ok(['blob', 'download', id, '-o', out], alice.deps);
    assert.equal(await readFile(out, 'utf8'), 'some bytes');
    assert.equal(await ok(['blob', 'download', id, '-o', '-'], alice.deps), 'some bytes');
    // Global options between the group and its subcommand, as README "Global options" says.
    const other = join(bob.home, 'agent.key');
    assert.equal(JSON.parse(await ok(['blob', '--json', 'info', id], alice.deps)).size, 10);
    const notBobs = await runCli(['blob', '--key', other, '-q', 'info', id], alice.deps);
    assert.equal(notBobs.code, 1, 'asked as bob, who cannot see it');
    assert.match(notBobs.stderr, /blob_not_found/);
    assert.equal(await ok(['blob', 'delete', id, '-q'], alice.deps), '', '-q: a change prints nothing');
    const gone = await runCli(['blob', 'info', id], alice.deps);
    assert.equal(gone.code, 1, 'the relay says no: exit 1');
    assert.match(gone.stderr, /^error: blob_not_found: /);

    const sent = (await ok(['send', bob.key, 'hi'], alice.deps)).trim();
    assert.equal((await ok(['status', sent, '-q'], alice.deps)).trim(), 'sent');
    const full = JSON.parse(await ok(['get', sent, '--json'], alice.deps));
    assert.deepEqual(full.body, { text: 'hi' });
    assert.equal((await ok(['get', sent, '-q'], alice.deps)).trim(), '{"text":"hi"}');
    await ok(['recv'], bob.deps);
    assert.equal(JSON.parse(await ok(['status', sent, '--json'], alice.deps)).status, 'delivered');
    const missing = await runCli(['get', 'msg_1_000000000000'], alice.deps);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /message_not_found/);
    // A reply threads onto its parent (§4.4) and thread shows both, oldest first.
    await ok(['send', alice.key, 'hello back', '--reply-to', sent], bob.deps);
    const thread = ndjson(await ok(['thread', sent], alice.deps));
    assert.deepEqual(
      thread.map((m) => m['body']),
      [{ text: 'hi' }, { text: 'hello back' }],
    );
  });
});

describe('PROTOCOL §9.2: identity, profile, discovery', () => {
  it('init prints the address; -q prints only the address', async (t) => {
    const relay = await startRelay(t);
    const home = await tempDir(t);
    const cwd = await tempDir(t);
    const deps = testDeps({ home, cwd, env: { MRP_RELAY_URL: relay.url } });
    const res = await runCli(['init', '-q'], deps);
    assert.equal(res.code, 0, res.stderr);
    const { keypair } = await readKeyFile(join(home, 'agent.key'));
    assert.equal(res.stdout, `${keypair.publicKey}\n`);
    await readFile(join(cwd, 'mrp.yaml'), 'utf8');
    const again = await runCli(['init'], deps);
    assert.match(again.stdout, new RegExp(keypair.publicKey), 'never overwrites, still prints the address');
    assert.equal((await ok(['whoami', '-q'], deps)).trim(), keypair.publicKey);
    assert.equal(JSON.parse(await ok(['whoami', '--json'], deps)).public_key, keypair.publicKey);
  });

  it('profile --name --public/--private --policy --capability <json> --meta k=v; discover --tag --q --name; capabilities', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const profile = JSON.parse(
      await ok(
        [
          'profile',
          '--name',
          'PolyglotBot',
          '--public',
          '--policy',
          'open',
          '--capability',
          '{"name":"translate","description":"Translate text","tags":["translate","text"]}',
          // A JSON string is <json> too: the plain tag form (§3.4).
          '--capability',
          '"chat"',
          '--meta',
          'role=translator',
          '--json',
        ],
        alice.deps,
      ),
    );
    assert.equal(profile.display_name, 'PolyglotBot');
    assert.equal(profile.visibility, 'public');
    assert.equal(profile.inbox_policy, 'open');
    assert.deepEqual(profile.metadata, { role: 'translator' });
    assert.deepEqual(
      profile.capabilities.map((c: { name: string; tags: string[] }) => [c.name, c.tags]),
      [
        ['translate', ['translate', 'text']],
        ['chat', ['chat']],
      ],
    );
    const keysOf = async (...args: string[]): Promise<string[]> =>
      (await ok(['discover', '-q', ...args], bob.deps)).split('\n').filter(Boolean);
    assert.deepEqual(await keysOf('--tag', 'translate', '--tag', 'text'), [alice.key]);
    assert.deepEqual(await keysOf('--tag', 'translate', '--tag', 'nope'), []);
    assert.deepEqual(await keysOf('--q', 'Translate'), [alice.key]);
    assert.deepEqual(await keysOf('--name', 'polyglot'), [alice.key]);
    const tags = JSON.parse(await ok(['capabilities', '--json'], bob.deps)).capabilities;
    assert.deepEqual(
      tags.map((c: { tag: string }) => c.tag),
      ['chat', 'text', 'translate'],
    );
    await ok(['profile', '--private'], alice.deps);
    assert.deepEqual(await keysOf('--tag', 'translate'), [], 'private agents are not discovered');
    assert.equal(JSON.parse(await ok(['profile', alice.key, '--json'], bob.deps)).display_name, 'PolyglotBot');
    const bad = await runCli(['profile', '--capability', '{"name":'], alice.deps);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^error: --capability #1 is not valid JSON/);
  });
});

describe('PROTOCOL §1.3 and §9.2: contacts', () => {
  it('add <name> <key> --alias --note | ls | rm; the file layout; name resolution order', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const carol = await user(t, relay);
    await ok(['contacts', 'add', 'Bob', bob.key, '--alias', 'b', '--note', 'a friend'], alice.deps);
    const file = join(alice.home, 'contacts.json');
    const stored = JSON.parse(await readFile(file, 'utf8'));
    assert.equal(stored.contacts[0].name, 'Bob');
    assert.equal(stored.contacts[0].public_key, bob.key);
    assert.equal(stored.contacts[0].alias, 'b');
    assert.equal(stored.contacts[0].note, 'a friend');
    assert.match(stored.contacts[0].added_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.deepEqual(
      JSON.parse(await ok(['contacts', 'ls', '--json'], alice.deps)).map((c: { name: string }) => c.name),
      ['Bob'],
    );
    // Tolerant reading: a name → key map; unknown fields preserved on rewrite.
    await writeFile(file, JSON.stringify({ Bob: { public_key: bob.key, alias: 'bob', x: 1 }, carol: carol.key }));
    assert.equal(await ok(['contacts', 'ls', '-q'], alice.deps), 'Bob\ncarol\n');
    // Resolution: exact name, then exact alias, then case-insensitive name.
    await writeFile(
      file,
      JSON.stringify({
        contacts: [
          { name: 'bob', public_key: bob.key, extra: true },
          { name: 'x', alias: 'Bob', public_key: carol.key },
        ],
      }),
    );
    const recipientOf = async (to: string): Promise<string> => {
      const id = (await ok(['send', '--to', to, '--text', to], alice.deps)).trim();
      return (await alice.api.getMessage(id)).recipient_key;
    };
    assert.equal(await recipientOf('bob'), bob.key, 'exact name');
    assert.equal(await recipientOf('Bob'), carol.key, 'an exact alias before a case-insensitive name');
    assert.equal(await recipientOf('BOB'), bob.key, 'case-insensitive name');
    await ok(['contacts', 'rm', 'x'], alice.deps);
    assert.equal(JSON.parse(await readFile(file, 'utf8')).contacts[0].extra, true, 'unknown fields kept');
    const unknown = await runCli(['send', '--to', 'nobody', '--text', 'x'], alice.deps);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /"nobody" is neither a public key nor a contact/);
    const dupe = await runCli(['contacts', 'add', 'BOB', carol.key], alice.deps);
    assert.equal(dupe.code, 2, 'names are unique, case-insensitively');
    // An alias shaped like a key could never be used (it resolves as the key); a name with a line
    // break cannot be typed back. Both refused, nothing written.
    const before = await readFile(file, 'utf8');
    for (const argv of [
      ['contacts', 'add', 'carol', carol.key, '--alias', bob.key],
      ['contacts', 'add', 'two\nlines', carol.key],
      ['contacts', 'add', 'carol', carol.key, '--alias', 'x\x1b[2J'],
    ]) {
      const refused = await runCli(argv, alice.deps);
      assert.equal(refused.code, 2, `${argv.join(' ')}: ${refused.stderr}`);
    }
    assert.equal(await readFile(file, 'utf8'), before);
  });
});

describe('PROTOCOL §9.2: acl, webhook, health, delete-agent', () => {
  it('acl allow|block <peer> | rm <peer> | ls [--type] | policy <p>', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const carol = await user(t, relay);
    await ok(['contacts', 'add', 'bob', bob.key], alice.deps);
    await ok(['acl', 'allow', 'bob'], alice.deps);
    await ok(['acl', 'block', carol.key], alice.deps);
    const all = JSON.parse(await ok(['acl', 'ls', '--json'], alice.deps));
    assert.deepEqual(
      all.entries.map((e: { peer_key: string; entry_type: string }) => [e.entry_type, e.peer_key]).sort(),
      [
        ['allow', bob.key],
        ['block', carol.key],
      ],
    );
    assert.equal(await ok(['acl', 'ls', '--type', 'block', '-q'], alice.deps), `${carol.key}\n`);
    await ok(['acl', 'policy', 'allowlist'], alice.deps);
    assert.equal((await alice.api.getAgent(alice.key)).inbox_policy, 'allowlist');
    const refused = await runCli(['send', alice.key, 'let me in'], carol.deps);
    assert.equal(refused.code, 1, 'the relay refuses: exit 1, with code and message');
    assert.match(refused.stderr, /^error: [a-z_]+: /);
    await ok(['acl', 'rm', carol.key], alice.deps);
    assert.equal(await ok(['acl', 'ls', '--type', 'block', '-q'], alice.deps), '');
    const bad = await runCli(['acl', 'policy', 'everyone'], alice.deps);
    assert.equal(bad.code, 2);
  });

  it('webhook set <url> [--secret] | get | rm; health; delete-agent --yes', async (t) => {
    const relay = await startRelay(t, { allowPrivateWebhooks: true });
    const alice = await user(t, relay);
    const secret = (await ok(['webhook', 'set', 'https://example.com/in', '-q'], alice.deps)).trim();
    assert.ok(secret.length >= 32, 'a generated secret is printed once');
    const hook = JSON.parse(await ok(['webhook', 'get', '--json'], alice.deps));
    assert.equal(hook.url, 'https://example.com/in');
    assert.equal(JSON.stringify(hook).includes(secret), false, 'never shown again');
    const set = await ok(['webhook', 'set', 'https://example.com/two', '--secret', 's'.repeat(32)], alice.deps);
    assert.equal(set.includes('s'.repeat(32)), false, 'a given secret is not echoed');
    await ok(['webhook', 'rm'], alice.deps);
    assert.equal((await runCli(['webhook', 'get'], alice.deps)).code, 1);

    // health needs no key.
    const nobody = testDeps({ home: await tempDir(t), env: { MRP_RELAY_URL: relay.url } });
    assert.equal((await ok(['health', '-q'], nobody)).trim(), 'ok');

    // delete-agent: refused without --yes (nothing sent), done with it; the key file is kept.
    await ok(['profile', '--name', 'Doomed'], alice.deps);
    const no = await runCli(['delete-agent'], alice.deps);
    assert.equal(no.code, 2);
    assert.match(no.stderr, /--yes/);
    assert.equal((await alice.api.getAgent(alice.key)).display_name, 'Doomed');
    const done = JSON.parse(await ok(['delete-agent', '--yes', '--json'], alice.deps));
    assert.equal(done.deleted, true);
    assert.equal(await ok(['delete-agent', '--yes', '-q'], alice.deps), '', '-q: a change prints nothing');
    assert.equal((await alice.api.getAgent(alice.key)).display_name, null, 'a fresh, empty agent');
    await readFile(join(alice.home, 'agent.key'));
  });
});

describe('PROTOCOL §9.2: global flags and exit codes', () => {
  it('--relay and --key override the environment; --json errors; --quiet', async (t) => {
    const relay = await startRelay(t);
    const other = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    // --key: another identity's file; --relay: another relay.
    const whoami = JSON.parse(
      await ok(['whoami', '--key', join(bob.home, 'agent.key'), '--relay', other.url, '--json'], alice.deps),
    );
    assert.equal(whoami.public_key, bob.key);
    assert.equal(whoami.relay, other.url);
    const id = (await ok(['--relay', other.url, 'send', bob.key, 'via other'], alice.deps)).trim();
    const onOther = new RelayClient({ relayUrl: other.url, keypair: alice.keypair });
    assert.equal((await onOther.getMessage(id)).message_id, id);
    // --json: a failure is one JSON document on stderr.
    const fail = await runCli(['send', '--json', '--to', 'nobody', '--text', 'x'], alice.deps);
    assert.equal(fail.code, 2);
    assert.equal(JSON.parse(fail.stderr).error.code, 'unknown_contact');
    // --quiet: commands that change something print nothing.
    assert.equal(await ok(['--quiet', 'contacts', 'add', 'bob', bob.key], alice.deps), '');
    assert.equal(await ok(['acl', 'allow', 'bob', '--quiet'], alice.deps), '');
  });

  it('exit codes: 1 relay error, 2 usage, 3 network, 4 authentication, 130 interrupted', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    // 1: the relay answered with an error.
    const relayError = await runCli(['status', 'msg_1_000000000000'], alice.deps);
    assert.equal(relayError.code, 1);
    assert.match(relayError.stderr, /^error: message_not_found: /);
    // 2: usage — an unknown flag, a missing argument, a bad key file.
    assert.equal((await runCli(['recv', '--nope'], alice.deps)).code, 2);
    assert.equal((await runCli(['blob', 'download'], alice.deps)).code, 2);
    const badKey = join(alice.home, 'bad.key');
    await writeFile(badKey, 'not a key');
    assert.equal((await runCli(['whoami', '--key', badKey], alice.deps)).code, 2);
    // 3: nothing listens there.
    const port = await closedPort();
    const down = await runCli(['recv', '--relay', `http://127.0.0.1:${port}`], alice.deps);
    assert.equal(down.code, 3, down.stderr);
    assert.match(down.stderr, new RegExp(`127\\.0\\.0\\.1:${port}`));
    // 4: the relay refuses the signature (our clock is 10 minutes ahead of the 5-minute tolerance).
    const skewed: Clock = { ...systemClock, now: () => Date.now() + 10 * 60_000 };
    const skewedDeps = testDeps({ home: alice.home, env: { MRP_RELAY_URL: relay.url }, clock: skewed });
    const auth = await runCli(['profile'], skewedDeps);
    assert.equal(auth.code, 4, auth.stderr);
    // 130: Ctrl-C while send --wait waits.
    const tty = testDeps({ home: alice.home, env: { MRP_RELAY_URL: relay.url }, tty: true });
    const waiting = runCli(['send', alice.key, 'anyone?', '--wait', '30s'], tty);
    await tty.stderr.waitFor('waiting up to 30s');
    tty.raise('SIGINT');
    assert.equal((await waiting).code, 130);
  });
});
