import assert from 'node:assert/strict';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

describe('mrp context', () => {
  it('add, ls, show, use, rm; files are 0600 JSON; the selection lives in config.json', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    const add = await runCli(
      [
        'context',
        'add',
        'prod',
        '--relay',
        'https://relay.example/',
        '--key',
        '~/prod.key',
        '--description',
        'production',
        '--json',
      ],
      deps,
    );
    assert.equal(add.code, 0, add.stderr);
    const file = join(home, 'contexts', 'prod.json');
    assert.equal(JSON.parse(add.stdout).file, file);
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), {
      description: 'production',
      relay: 'https://relay.example',
      key_file: join(home, 'prod.key'),
    });
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await stat(join(home, 'contexts'))).mode & 0o777, 0o700);

    const again = await runCli(['context', 'add', 'prod', '--relay', 'http://other:1'], deps);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists — pass --force/);
    assert.equal(
      (await runCli(['context', 'add', 'local', '--relay', 'http://127.0.0.1:8080', '--use'], deps)).code,
      0,
    );
    const bad = await runCli(['context', 'add', '../evil', '--relay', 'http://x:1', '--json'], deps);
    assert.equal(bad.code, 2);
    assert.equal(JSON.parse(bad.stderr).error.code, 'invalid_argument');
    assert.equal((await runCli(['context', 'add', 'empty'], deps)).code, 2, 'a context needs a relay or a key');

    const ls = JSON.parse((await runCli(['context', 'ls', '--json'], deps)).stdout);
    assert.deepEqual(
      ls.contexts.map((c: { name: string; selected: boolean }) => [c.name, c.selected]),
      [
        ['local', true],
        ['prod', false],
      ],
    );
    assert.equal(ls.selected, 'local');
    assert.equal(JSON.parse(await readFile(join(home, 'config.json'), 'utf8')).context, 'local');
    // The global options go before the subcommand too, as on every other command group.
    assert.deepEqual(JSON.parse((await runCli(['context', '--json', 'ls'], deps)).stdout), ls);
    const before = await runCli(['context', '--relay', 'http://10.0.0.9:8080', '--json', 'add', 'early'], deps);
    assert.equal(before.code, 0, before.stderr);
    assert.equal(
      JSON.parse(await readFile(join(home, 'contexts', 'early.json'), 'utf8')).relay,
      'http://10.0.0.9:8080',
    );
    assert.equal((await runCli(['context', 'rm', 'early'], deps)).code, 0);
    const table = await runCli(['context', 'ls'], deps);
    assert.match(table.stdout, /^\*\s+local\s+http:\/\/127\.0\.0\.1:8080/m);

    const show = JSON.parse((await runCli(['context', 'show', '--json'], deps)).stdout);
    assert.deepEqual([show.name, show.selected, show.relay], ['local', true, 'http://127.0.0.1:8080']);
    assert.equal((await runCli(['context', 'use', 'prod'], deps)).code, 0);
    assert.equal(JSON.parse((await runCli(['context', 'show', '--json'], deps)).stdout).name, 'prod');
    const missing = await runCli(['context', 'use', 'nope', '--json'], deps);
    assert.equal(missing.code, 2);
    assert.equal(JSON.parse(missing.stderr).error.code, 'context_not_found');

    const rm = JSON.parse((await runCli(['context', 'rm', 'prod', '--json'], deps)).stdout);
    assert.deepEqual(rm, { name: 'prod', removed: true, unselected: true });
    assert.equal(JSON.parse(await readFile(join(home, 'config.json'), 'utf8')).context, undefined);
    assert.equal((await runCli(['context', 'rm', 'prod'], deps)).code, 2);
    assert.equal((await runCli(['context', 'use', '--none'], deps)).code, 0);
  });

  it('a context file or contacts.json written by something else cannot put raw escapes on a terminal', async (t) => {
    const home = await tempDir(t);
    const tty = testDeps({ home, tty: true });
    const EVIL = 'x\u001b]0;pwned\u0007\u001b[2J\u009b31m\u202e';
    assert.equal((await runCli(['context', 'add', 'odd', '--relay', 'http://127.0.0.1:1'], tty)).code, 0);
    await writeFile(
      join(home, 'contexts', 'odd.json'),
      JSON.stringify({ relay: 'http://127.0.0.1:1', key_file: `/tmp/k${EVIL}`, description: EVIL }),
    );
    const peer = 'wptgKQthWcsf9cReRaXGyUZSkcL3RxH6SBCYu4f2KnY';
    await writeFile(
      join(home, 'contacts.json'),
      JSON.stringify({ contacts: [{ name: `bob${EVIL}`, public_key: peer }] }),
    );
    const runs = [
      await runCli(['context', 'ls'], tty),
      await runCli(['context', 'show', 'odd'], tty),
      await runCli(['contacts', 'rm', `bob${EVIL}`], tty),
    ];
    // A new name with control characters is refused (exit 2), and the refusal is clean too.
    const add = await runCli(['contacts', 'add', `eve${EVIL}`, peer], tty);
    assert.equal(add.code, 2, add.stderr);
    assert.match(add.stderr, /must not contain control characters/);
    for (const res of [...runs, add]) {
      // ESC only as the start of a colour code; no other control, C1 or bidi character.
      assert.doesNotMatch(res.stdout + res.stderr, /[\u0000-\u0008\u000b-\u001a\u001c-\u001f\u007f-\u009f\u202e]/);
      assert.doesNotMatch(res.stdout + res.stderr, /\u001b(?!\[[0-9;]*m)/);
    }
    for (const res of runs) {
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /\\x1b\]0;pwned/);
    }
  });

  it('precedence: flag > env > context > config > default, and whoami says where each came from', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    const keyA = join(home, 'a.key');
    assert.equal((await runCli(['keygen', '--key', keyA], deps)).code, 0);
    assert.equal((await runCli(['config', 'set', 'relay', 'http://config.example:1'], deps)).code, 0);
    assert.equal((await runCli(['context', 'add', 'a', '--relay', 'http://context-a:2', '--key', keyA], deps)).code, 0);
    assert.equal((await runCli(['context', 'add', 'b', '--relay', 'http://context-b:3'], deps)).code, 0);

    const who = async (argv: string[], env: Record<string, string> = {}) => {
      const res = await runCli(['whoami', '--json', ...argv], testDeps({ home, env }));
      assert.equal(res.code, 0, res.stderr);
      return JSON.parse(res.stdout);
    };
    // No context selected: config wins over the default.
    let w = await who(['--key', keyA]);
    assert.deepEqual([w.relay, w.sources.relay.source, w.context], ['http://config.example:1', 'config', null]);
    // --context: context over config; the key comes from the context too.
    w = await who(['--context', 'a']);
    assert.deepEqual(
      [w.relay, w.sources.relay.source, w.key_file, w.sources.key_file.source],
      ['http://context-a:2', 'context', keyA, 'context'],
    );
    assert.match(w.sources.relay.origin, /^context a \(.*contexts\/a\.json\)$/);
    assert.deepEqual(w.sources.context, { source: 'flag', origin: '--context' });
    // The environment beats the context; the flag beats the environment.
    w = await who(['--context', 'a'], { MRP_RELAY_URL: 'http://env.example:4' });
    assert.deepEqual([w.relay, w.sources.relay.source], ['http://env.example:4', 'env']);
    w = await who(['--context', 'a', '--relay', 'http://flag.example:5'], { MRP_RELAY_URL: 'http://env.example:4' });
    assert.deepEqual([w.relay, w.sources.relay.source], ['http://flag.example:5', 'flag']);
    // MRP_CONTEXT selects; --context beats it; `context use` is the fallback.
    w = await who(['--key', keyA], { MRP_CONTEXT: 'b' });
    assert.deepEqual([w.relay, w.context, w.sources.context.source], ['http://context-b:3', 'b', 'env']);
    w = await who(['--context', 'a'], { MRP_CONTEXT: 'b' });
    assert.equal(w.context, 'a');
    assert.equal((await runCli(['context', 'use', 'b'], deps)).code, 0);
    w = await who(['--key', keyA]);
    assert.deepEqual([w.relay, w.context, w.sources.context.source], ['http://context-b:3', 'b', 'config']);
    // A context without a key leaves the key to config/default.
    assert.equal(w.sources.key_file.source, 'flag');

    const human = await runCli(['whoami', '--context', 'a'], testDeps({ home }));
    assert.match(human.stdout, /^relay {7}http:\/\/context-a:2 {2}\(from context a\)$/m);
    assert.match(human.stdout, /^context {5}a {2}\(from --context\)$/m);
    const unknown = await runCli(['whoami', '--context', 'zzz'], testDeps({ home }));
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no context named "zzz" — list them with `mrp context ls`/);
  });

  it('a context drives real commands against its relay', async (t) => {
    const relay = await startRelay(t);
    const home = await tempDir(t);
    const deps = testDeps({ home });
    const key = join(home, 'k.key');
    assert.equal(
      (await runCli(['context', 'add', 'local', '--relay', relay.url, '--key', key, '--use'], deps)).code,
      0,
    );
    const gen = await runCli(['keygen', '--json'], deps);
    assert.equal(gen.code, 0, gen.stderr);
    assert.equal(JSON.parse(gen.stdout).key_file, key, 'keygen writes the context key');
    const me = JSON.parse(gen.stdout).public_key;
    const sent = await runCli(['send', me, 'note to self', '--json'], deps);
    assert.equal(sent.code, 0, sent.stderr);
    const recv = await runCli(['recv', '--json'], deps);
    assert.match(recv.stdout, /note to self/);
  });
});
