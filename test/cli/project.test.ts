import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import { Keypair } from '../../src/protocol/signing.js';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

async function project(t: import('node:test').TestContext, relayUrl?: string) {
  const root = await tempDir(t);
  const cwd = join(root, 'translator-bot');
  await mkdir(cwd);
  const deps = testDeps({ home: join(root, 'home'), cwd, env: relayUrl ? { MRP_RELAY_URL: relayUrl } : {} });
  return { cwd, deps };
}

describe('mrp announce', () => {
  const bad: Array<[string, string, RegExp]> = [
    [
      'name: Bot\ncapabilities:\n  - name: x\n    tags: [ok-tag, "bad tag"]\n',
      'tag',
      /^error: mrp\.yaml:4: capabilities\[0\]\.tags\[1\]: tags are 3-64 characters/,
    ],
    [
      'name: Bot\nvisibilty: public\n',
      'typo',
      /^error: mrp\.yaml:2: visibilty: unknown key \(did you mean "visibility"\?\); the manifest knows name, visibility/,
    ],
    [
      'name: Bot\nmetadata:\n  version: 1.0\n',
      'number',
      /^error: mrp\.yaml:3: metadata\.version: values must be strings — quote it: version: "1"/,
    ],
    ['name: [oops\nvisibility: public\n', 'yaml', /^error: mrp\.yaml:\d+:\d+: /],
    [
      'inbox_policy: sometimes\n',
      'enum',
      /^error: mrp\.yaml:1: inbox_policy: must be one of open, closed, allowlist, blocklist/,
    ],
    [
      'acl:\n  allow: [nobody-we-know]\n',
      'acl',
      /^error: mrp\.yaml:2: acl\.allow\[0\]: "nobody-we-know" is neither a public key nor a contact/,
    ],
  ];
  for (const [yaml, name, pattern] of bad) {
    it(`an error points at the line (${name})`, async (t) => {
      const { cwd, deps } = await project(t, 'http://127.0.0.1:1');
      await runCli(['keygen'], deps);
      await writeFile(join(cwd, 'mrp.yaml'), yaml);
      const res = await runCli(['announce'], deps);
      assert.equal(res.code, 2, res.stderr);
      assert.match(res.stderr, pattern);
      assert.equal(res.stderr.trim().split('\n').length, 1);
    });
  }

  it('reports every error with its line, unknown keys inside a capability included', async (t) => {
    const { cwd, deps } = await project(t, 'http://127.0.0.1:1');
    await runCli(['keygen'], deps);
    await writeFile(
      join(cwd, 'mrp.yaml'),
      'name: Bot\nvisibilty: public\ncapabilities:\n  - name: translate\n    descripton: Translate text\n    tag: [text]\ninbox_policy: sometimes\n',
    );
    const res = await runCli(['announce'], deps);
    assert.equal(res.code, 2, res.stderr);
    assert.deepEqual(res.stderr.trimEnd().split('\n'), [
      'error: mrp.yaml: 4 errors',
      '  mrp.yaml:2: visibilty: unknown key (did you mean "visibility"?); the manifest knows name, visibility, inbox_policy, capabilities, metadata, acl',
      '  mrp.yaml:5: capabilities[0].descripton: unknown key (did you mean "description"?); a capability has name, description, tags, input_schema, version',
      '  mrp.yaml:6: capabilities[0].tag: unknown key (did you mean "tags"?); a capability has name, description, tags, input_schema, version',
      '  mrp.yaml:7: inbox_policy: must be one of open, closed, allowlist, blocklist',
    ]);
    const json = await runCli(['announce', '--json'], deps);
    const err = JSON.parse(json.stderr).error;
    assert.equal(err.code, 'manifest_invalid');
    assert.deepEqual(
      err.details.errors.map((e: { line: number; field: string }) => [e.line, e.field]),
      [
        [2, 'visibilty'],
        [5, 'capabilities[0].descripton'],
        [6, 'capabilities[0].tag'],
        [7, 'inbox_policy'],
      ],
    );
  });

  it('reports every error inside one capability too: each bad tag, a missing name and a bad field after it', async (t) => {
    const { cwd, deps } = await project(t, 'http://127.0.0.1:1');
    await runCli(['keygen'], deps);
    await writeFile(
      join(cwd, 'mrp.yaml'),
      'name: Bot\ncapabilities:\n  - name: a\n    tags:\n      - UPPER CASE\n      - ab\n      - fine\n    version: 3\n  - tags: [ok-tag]\n    description: 5\n  - x\n',
    );
    const json = await runCli(['announce', '--dry-run', '--json'], deps);
    assert.equal(json.code, 2, json.stderr);
    const err = JSON.parse(json.stderr).error;
    assert.deepEqual(
      err.details.errors.map((e: { line: number; field: string }) => [e.line, e.field]),
      [
        [5, 'capabilities[0].tags[0]'],
        [6, 'capabilities[0].tags[1]'],
        [8, 'capabilities[0].version'],
        [9, 'capabilities[1].name'],
        [10, 'capabilities[1].description'],
        [11, 'capabilities[2]'],
      ],
    );
  });

  it('an alias bomb, absurd nesting or a directory is manifest_invalid, not internal_error', async (t) => {
    const { cwd, deps } = await project(t, 'http://127.0.0.1:1');
    await runCli(['keygen'], deps);
    const bomb = ['a: &a ["x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 9; i++)
      bomb.push(
        `${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9)
          .fill(`*${String.fromCharCode(96 + i)}`)
          .join(',')}]`,
      );
    const cases: Array<[string, RegExp]> = [
      [`metadata:\n  x: y\n${bomb.join('\n')}\n`, /too many alias references/],
      [`name: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`, /nested too deeply/],
      [`capabilities:\n  - name: x\n    input_schema: ${'{a: '.repeat(100)}1${'}'.repeat(100)}\n`, /nested too deeply/],
    ];
    for (const [yaml, pattern] of cases) {
      await writeFile(join(cwd, 'mrp.yaml'), yaml);
      const res = await runCli(['announce', '--json'], deps);
      assert.equal(res.code, 2, res.stderr.slice(0, 300));
      const err = JSON.parse(res.stderr).error;
      assert.equal(err.code, 'manifest_invalid');
      assert.match(err.message, pattern);
    }
    await import('node:fs/promises').then((fs) => fs.rm(join(cwd, 'mrp.yaml')));
    await mkdir(join(cwd, 'mrp.yaml'));
    const dir = await runCli(['announce', '--json'], deps);
    assert.equal(dir.code, 2);
    assert.equal(JSON.parse(dir.stderr).error.code, 'manifest_invalid');
  });

  it('shows ACL entries missing from the manifest as drift; --prune removes them', async (t) => {
    const relay = await startRelay(t);
    const { cwd, deps } = await project(t, relay.url);
    await runCli(['keygen'], deps);
    const [kept, stale] = [Keypair.generate().publicKey, Keypair.generate().publicKey];
    await runCli(['acl', 'allow', stale], deps);
    await writeFile(join(cwd, 'mrp.yaml'), `name: Bot\nacl:\n  allow: [${kept}]\n`);
    const first = await runCli(['announce'], deps);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, new RegExp(`- acl\\.allow +${stale} \\(on the relay, not in the manifest\\)`));
    assert.match(first.stdout, /1 ACL entry is not in mrp\.yaml; `mrp announce --prune` removes it/);
    const again = await runCli(['announce'], deps);
    assert.doesNotMatch(again.stdout, /already matches/, 'not while the relay has entries the manifest does not list');
    assert.match(again.stdout, /the profile matches mrp\.yaml, the ACL on the relay does not/);
    assert.match(again.stdout, /not in the manifest/, 'drift is shown even when nothing else changes');
    const dry = JSON.parse((await runCli(['announce', '--prune', '--dry-run', '--json'], deps)).stdout);
    assert.deepEqual(dry.drift, [{ peer_key: stale, entry_type: 'allow' }]);
    assert.equal(dry.applied, false);
    const pruned = JSON.parse((await runCli(['announce', '--prune', '--json'], deps)).stdout);
    assert.equal(pruned.pruned, 1);
    const acl = JSON.parse((await runCli(['acl', 'ls', '--json'], deps)).stdout);
    assert.deepEqual(
      acl.entries.map((e: { peer_key: string }) => e.peer_key),
      [kept],
    );
    assert.deepEqual(JSON.parse((await runCli(['announce', '--json'], deps)).stdout).drift, []);
  });

  it('shows the changes, applies them, then reports nothing to do', async (t) => {
    const relay = await startRelay(t);
    const { cwd, deps } = await project(t, relay.url);
    await runCli(['keygen'], deps);
    const friend = Keypair.generate().publicKey;
    await runCli(['contacts', 'add', 'friend', friend], deps);
    await writeFile(
      join(cwd, 'mrp.yaml'),
      'name: TranslatorBot\nvisibility: public\ninbox_policy: allowlist\ncapabilities:\n  - name: translate\n    description: Translate text\n    tags: [text, i18n]\n  - chat\nmetadata:\n  role: translator\nacl:\n  allow: [friend]\n',
    );
    const dry = await runCli(['announce', '--dry-run', '--json'], deps);
    assert.equal(dry.code, 0, dry.stderr);
    const plan = JSON.parse(dry.stdout);
    assert.equal(plan.applied, false);
    assert.deepEqual(plan.changes.map((c: { field: string }) => c.field).sort(), [
      'acl.allow',
      'capabilities',
      'inbox_policy',
      'metadata',
      'name',
      'visibility',
    ]);
    const client = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const { public_key } = JSON.parse((await runCli(['whoami', '--json'], deps)).stdout);
    assert.equal((await client.getAgent(public_key)).display_name, null, 'dry run sent nothing');

    const applied = await runCli(['announce'], deps);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /Announced mrp\.yaml: 6 changes/);
    const profile = await client.getAgent(public_key);
    assert.equal(profile.display_name, 'TranslatorBot');
    assert.equal(profile.inbox_policy, 'allowlist');
    assert.deepEqual(profile.capabilities[1], { name: 'chat', description: '', tags: ['chat'] });
    const acl = JSON.parse((await runCli(['acl', 'ls', '--json'], deps)).stdout);
    assert.deepEqual(
      acl.entries.map((e: { peer_key: string; entry_type: string }) => [e.peer_key, e.entry_type]),
      [[friend, 'allow']],
    );
    const again = await runCli(['announce', '--json'], deps);
    assert.deepEqual(JSON.parse(again.stdout).changes, []);
    const discover = await runCli(['discover', '--tag', 'i18n', '--json'], deps);
    assert.deepEqual(
      discover.stdout
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l).public_key),
      [public_key],
      'NDJSON: one agent per line',
    );
    const caps = await runCli(['capabilities', '--json'], deps);
    assert.deepEqual(
      JSON.parse(caps.stdout)
        .capabilities.map((c: { tag: string }) => c.tag)
        .sort(),
      ['chat', 'i18n', 'text'],
    );
  });
});

describe('mrp init', () => {
  it('then mrp run works with no edits: the manifest is announced and messages are answered', async (t) => {
    const relay = await startRelay(t);
    const { cwd, deps } = await project(t, relay.url);
    const init = await runCli(['init', '--json'], deps);
    assert.equal(init.code, 0, init.stderr);
    const out = JSON.parse(init.stdout);
    assert.equal(out.key_created, true);
    assert.equal(out.next, 'mrp run --handler ./handler.ts');
    assert.match(
      await readFile(join(cwd, 'mrp.yaml'), 'utf8'),
      /# yaml-language-server: \$schema=.*schema\/mrp\.schema\.json/,
    );

    await writeFile(join(cwd, 'handler.ts'), '// mine\n');
    const second = await runCli(['init', '--json'], deps);
    assert.deepEqual(JSON.parse(second.stdout).created, [], 'never overwrites');
    assert.equal(await readFile(join(cwd, 'handler.ts'), 'utf8'), '// mine\n');
    await writeFile(join(cwd, 'handler.ts'), '');
    await runCli(['init'], testDeps({ home: join(cwd, '..', 'home'), cwd, env: { MRP_RELAY_URL: relay.url } }));

    const fresh = await project(t, relay.url);
    await runCli(['init'], fresh.deps);
    const run = runCli(['run', '--handler', './handler.ts'], fresh.deps);
    await fresh.deps.stdout.waitFor('"event":"announced"');
    const peer = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const { public_key } = JSON.parse((await runCli(['whoami', '--json'], fresh.deps)).stdout);
    assert.equal((await peer.getAgent(public_key)).display_name, 'translator-bot');
    const sent = await peer.send({ recipient_key: public_key, body: { text: 'hi' } });
    const reply = await peer.poll({ in_reply_to: sent.message_id, wait: 10 });
    assert.deepEqual(reply.messages[0]?.body, { echo: { text: 'hi' } });
    fresh.deps.raise('SIGTERM');
    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /"event":"stopped"/);
  });
});

describe('mrp dev', () => {
  it('shows a message answered end to end, offline, with the bundled echo handler', async (t) => {
    const { deps } = await project(t);
    const res = await runCli(['dev', '--once', '--port', '0'], deps);
    assert.equal(res.code, 0, res.stderr);
    const events = res.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const dev = events.find((e) => e.event === 'dev');
    assert.match(dev.send, /^mrp send --relay http:\/\/127\.0\.0\.1:\d+ --key .*user\.key \S{43} "hello" --wait$/);
    const demo = events.find((e) => e.event === 'demo');
    assert.equal(demo.reply.in_reply_to, demo.sent);
    assert.deepEqual(demo.reply.body.echo, { text: 'hello from mrp dev' });
  });

  it("prints its send command with the package's own bin/mrp.js when npx launched it (works from any directory)", async (t) => {
    const { deps } = await project(t);
    deps.env['npm_command'] = 'exec';
    const res = await runCli(['dev', '--once', '--port', '0'], deps);
    assert.equal(res.code, 0, res.stderr);
    const dev = res.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l))
      .find((e) => e.event === 'dev');
    assert.match(dev.send, /^node \S+\/bin\/mrp\.js send --relay http:\/\/127\.0\.0\.1:\d+ /);
  });
});

describe('mrp completion', () => {
  it('bash, zsh and fish scripts that know the commands', async (t) => {
    const deps = testDeps({ home: await tempDir(t) });
    for (const shell of ['bash', 'zsh', 'fish']) {
      const res = await runCli(['completion', shell], deps);
      assert.equal(res.code, 0);
      for (const word of ['send', 'tail', 'announce', shell === 'fish' ? '-l wait' : '--wait', 'allow'])
        assert.ok(res.stdout.includes(word), `${shell}: ${word}`);
    }
    const bash = (await runCli(['completion', 'bash'], deps)).stdout;
    execFileSync('bash', ['-n'], { input: bash });
    const completions = execFileSync('bash', [
      '-c',
      `${bash}\nCOMP_WORDS=(mrp acl a); COMP_CWORD=2; _mrp; echo "\${COMPREPLY[@]}"`,
    ]).toString();
    assert.equal(completions.trim(), 'allow');
    const deep = execFileSync('bash', [
      '-c',
      `${bash}\nCOMP_WORDS=(mrp send bob --wa); COMP_CWORD=3; _mrp; echo "\${COMPREPLY[@]}"`,
    ]).toString();
    assert.equal(deep.trim(), '--wait');
    assert.equal((await runCli(['completion', 'tcsh'], deps)).code, 2);
  });
});
