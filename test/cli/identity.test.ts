import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { chmod, mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { promisify } from 'node:util';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/mrp.js', import.meta.url).pathname;

/** Public key derived by node:crypto, independent of the code under test. */
function independentPublicKey(seed: Uint8Array): string {
  const der = Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]);
  return createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' })).export({ format: 'jwk' }).x!;
}

describe('mrp keygen / whoami', () => {
  it('writes a 32-byte 0600 seed in a 0700 directory; whoami shows its public key', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home: join(home, 'mrp-home') });
    const keygen = await runCli(['keygen', '--json'], deps);
    assert.equal(keygen.code, 0, keygen.stderr);
    const created = JSON.parse(keygen.stdout);
    const keyPath = join(home, 'mrp-home', 'agent.key');
    assert.equal(created.key_file, keyPath);
    const bytes = await readFile(keyPath);
    assert.equal(bytes.length, 32);
    assert.equal((await stat(keyPath)).mode & 0o777, 0o600);
    assert.equal((await stat(join(home, 'mrp-home'))).mode & 0o777, 0o700);
    assert.equal(created.public_key, independentPublicKey(bytes));

    const whoami = await runCli(['whoami', '--json'], deps);
    assert.equal(whoami.code, 0, whoami.stderr);
    const who = JSON.parse(whoami.stdout);
    assert.deepEqual(
      { public_key: who.public_key, key_file: who.key_file, relay: who.relay, context: who.context },
      { public_key: created.public_key, key_file: keyPath, relay: 'https://relay.mrphub.io', context: null },
    );
    assert.deepEqual(who.sources.relay, { source: 'default', origin: 'default' });
  });

  it('refuses to overwrite without --force and leaves the file unchanged', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    const key = join(home, 'k', 'agent.key');
    assert.equal((await runCli(['keygen', '--key', key], deps)).code, 0);
    const before = await readFile(key);
    const again = await runCli(['keygen', '--key', key], deps);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /already exists/);
    assert.match(again.stderr, /--force/);
    assert.equal(again.stderr.trim().split('\n').length, 1, 'one line');
    assert.deepEqual(await readFile(key), before);

    const forced = await runCli(['keygen', '--key', key, '--force', '--json'], deps);
    assert.equal(forced.code, 0, forced.stderr);
    const after = await readFile(key);
    assert.notDeepEqual(after, before);
    assert.equal(JSON.parse(forced.stdout).public_key, independentPublicKey(after));
    assert.equal((await stat(key)).mode & 0o777, 0o600);
  });

  it('accepts global options before or after the command name', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    const key = join(home, 'other.key');
    await runCli(['keygen', '--key', key], deps);
    const before = await runCli(['--key', key, '--relay', 'http://127.0.0.1:1', 'whoami', '--json'], deps);
    const after = await runCli(['whoami', '--key', key, '--json', '--relay', 'http://127.0.0.1:1'], deps);
    const mixed = await runCli(['--json', 'whoami', '--key', key, '--relay=http://127.0.0.1:1'], deps);
    assert.equal(before.code, 0, before.stderr);
    assert.equal(before.stdout, after.stdout);
    assert.equal(before.stdout, mixed.stdout);
    assert.equal(JSON.parse(before.stdout).key_file, key);
    assert.equal(JSON.parse(before.stdout).relay, 'http://127.0.0.1:1');
  });

  it('a missing key says to run mrp keygen', async (t) => {
    const home = await tempDir(t);
    const res = await runCli(['whoami'], testDeps({ home }));
    assert.equal(res.code, 2);
    assert.match(res.stderr, /mrp keygen/);
    const custom = await runCli(['whoami', '--key', join(home, 'x.key')], testDeps({ home }));
    assert.match(custom.stderr, /mrp keygen --key .*x\.key/);
    const json = await runCli(['whoami', '--json'], testDeps({ home }));
    assert.equal(JSON.parse(json.stderr).error.code, 'key_not_found');
    assert.equal(json.stdout, '');
  });

  it('refuses a key file other users can read, saying how to fix it', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    await runCli(['keygen'], deps);
    const key = join(home, 'agent.key');
    await chmod(key, 0o644);
    const res = await runCli(['whoami'], deps);
    assert.equal(res.code, 2);
    assert.match(res.stderr, new RegExp(`chmod 600 ${key}`));
    assert.match(res.stderr, /0644/);
    await chmod(key, 0o600);
    assert.equal((await runCli(['whoami'], deps)).code, 0);
  });

  it('reads keys written by other tools (hex, base64url, seed‖public)', async (t) => {
    const home = await tempDir(t);
    const seed = Buffer.from('0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20', 'hex');
    const forms = [seed.toString('hex'), `${seed.toString('base64url')}\n`, seed.toString('base64')];
    for (const [i, form] of forms.entries()) {
      const key = join(home, `k${i}`);
      await writeFile(key, form, { mode: 0o600 });
      const res = await runCli(['whoami', '--json', '--key', key], testDeps({ home }));
      assert.equal(JSON.parse(res.stdout).public_key, 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ');
    }
  });

  it('never prints the seed', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    await runCli(['keygen', '--debug'], deps);
    await runCli(['whoami', '--debug'], deps);
    await runCli(['whoami', '--json', '--debug'], deps);
    const seed = await readFile(join(home, 'agent.key'));
    const all = deps.stdout.text + deps.stderr.text;
    for (const form of [
      seed.toString('hex'),
      seed.toString('base64url'),
      seed.toString('base64'),
      seed.toString('latin1'),
    ]) {
      assert.ok(!all.includes(form));
    }
  });
});

describe('settings precedence: flag > env > config > default', () => {
  it('resolves the relay and key file and says where they came from', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    const get = async (argv: string[], env: Record<string, string> = {}) => {
      const d = testDeps({ home, env });
      const res = await runCli(['config', 'get', 'relay', '--json', ...argv], d);
      assert.equal(res.code, 0, res.stderr);
      return JSON.parse(res.stdout) as { value: string; source: string };
    };
    assert.deepEqual(await get([]), {
      key: 'relay',
      value: 'https://relay.mrphub.io',
      source: 'default',
      origin: 'default',
    });
    assert.equal((await runCli(['config', 'set', 'relay', 'http://config.example:1/'], deps)).code, 0);
    assert.equal((await get([])).value, 'http://config.example:1');
    assert.equal((await get([])).source, 'config');
    assert.equal((await get([], { MRP_RELAY_URL: 'http://env.example:2' })).source, 'env');
    const flag = await get(['--relay', 'http://flag.example:3'], { MRP_RELAY_URL: 'http://env.example:2' });
    assert.deepEqual([flag.value, flag.source], ['http://flag.example:3', 'flag']);
    assert.equal((await stat(join(home, 'config.json'))).mode & 0o777, 0o600);

    const ls = await runCli(['config', 'ls', '--json'], deps);
    assert.deepEqual(
      JSON.parse(ls.stdout).map((r: { key: string; source: string }) => [r.key, r.source]),
      [
        ['relay', 'config'],
        ['key_file', 'default'],
      ],
    );
    assert.equal((await runCli(['config', 'unset', 'relay'], deps)).code, 0);
    assert.equal((await get([])).source, 'default');

    const keyEnv = testDeps({ home, env: { MRP_KEY_FILE: '~/env.key' } });
    const key = await runCli(['config', 'get', 'key_file', '--json'], keyEnv);
    assert.equal(JSON.parse(key.stdout).value, join(home, 'env.key'), '~ expands to the home directory');
  });

  it('bad values name the flag, variable or key, with exit code 2', async (t) => {
    const home = await tempDir(t);
    const flag = await runCli(['whoami', '--relay', 'ftp://x'], testDeps({ home }));
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /--relay/);
    const env = await runCli(['config', 'get', 'relay'], testDeps({ home, env: { MRP_RELAY_URL: 'nope' } }));
    assert.equal(env.code, 2);
    assert.match(env.stderr, /MRP_RELAY_URL/);
    const key = await runCli(['config', 'set', 'colour', 'x'], testDeps({ home }));
    assert.equal(key.code, 2);
    assert.match(key.stderr, /unknown config key "colour".*relay, key_file/);
    await mkdir(home, { recursive: true });
    await writeFile(join(home, 'config.json'), '{ broken', { mode: 0o600 });
    const broken = await runCli(['config', 'ls'], testDeps({ home }));
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /config\.json/);
  });
});

describe('mrp contacts', () => {
  const B = '5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA';
  it('add, ls, rm; canonical file, mode 0600, unknown fields kept', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    await writeFile(
      join(home, 'contacts.json'),
      JSON.stringify({ old: { public_key: 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ', color: 'red' } }),
    );
    const add = await runCli(
      ['contacts', 'add', 'TranslateBot', B, '--alias', 'tr', '--note', 'fast translator'],
      deps,
    );
    assert.equal(add.code, 0, add.stderr);
    const file = JSON.parse(await readFile(join(home, 'contacts.json'), 'utf8'));
    assert.equal(file.contacts.length, 2);
    assert.equal(file.contacts[0].color, 'red');
    assert.equal(file.contacts[1].alias, 'tr');
    assert.match(file.contacts[1].added_at, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/);
    assert.equal((await stat(join(home, 'contacts.json'))).mode & 0o777, 0o600);

    const dup = await runCli(['contacts', 'add', 'translatebot', B], deps);
    assert.equal(dup.code, 2);
    assert.match(dup.stderr, /already exists/);

    const ls = await runCli(['contacts', 'ls', '--json'], deps);
    assert.deepEqual(
      JSON.parse(ls.stdout).map((c: { name: string }) => c.name),
      ['old', 'TranslateBot'],
    );
    const human = await runCli(['contacts', 'ls'], deps);
    assert.match(human.stdout, /NAME\s+ALIAS\s+PUBLIC KEY/);
    assert.match(human.stdout, /TranslateBot\s+tr\s+5_FioQ/);

    assert.equal((await runCli(['contacts', 'rm', 'translatebot'], deps)).code, 0);
    assert.equal((await runCli(['contacts', 'rm', 'nobody'], deps)).code, 2);
    const bad = await runCli(['contacts', 'add', 'x', 'not-a-key'], deps);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /not a public key/);
  });
});

describe('usage errors', () => {
  it('unknown options and commands exit 2 with one line', async (t) => {
    const home = await tempDir(t);
    const res = await runCli(['whoami', '--bogus'], testDeps({ home }));
    assert.equal(res.code, 2);
    assert.match(res.stderr, /unknown option '--bogus'/);
    assert.equal((await runCli(['frobnicate'], testDeps({ home }))).code, 2);
  });
  it('--help and no arguments print help and exit 0', async (t) => {
    const home = await tempDir(t);
    const help = await runCli(['--help'], testDeps({ home }));
    assert.equal(help.code, 0);
    assert.match(help.stdout, /keygen/);
    assert.match(help.stdout, /Exit codes/);
    const bare = await runCli([], testDeps({ home }));
    assert.equal(bare.code, 0);
    assert.match(bare.stdout, /Usage: mrp/);
    const sub = await runCli(['keygen', '--help'], testDeps({ home }));
    assert.match(sub.stdout, /Global Options:/);
    assert.match(sub.stdout, /Examples:/);
  });
});

describe('the installed binary', () => {
  it('keygen --key K then whoami --json, as a user would', async (t) => {
    const home = await tempDir(t);
    const key = join(home, 'K');
    const env = { ...process.env, MRP_HOME: join(home, 'h') };
    const gen = await run(process.execPath, [BIN, 'keygen', '--key', key], { env });
    assert.match(gen.stdout, /public key/);
    const who = await run(process.execPath, [BIN, 'whoami', '--json', '--key', key], { env });
    const seed = await readFile(key);
    assert.equal(seed.length, 32);
    assert.equal((await stat(key)).mode & 0o777, 0o600);
    assert.equal(JSON.parse(who.stdout).public_key, independentPublicKey(seed));
    await assert.rejects(
      run(process.execPath, [BIN, 'keygen', '--key', key], { env }),
      (e: { code?: number }) => e.code === 2,
    );
    assert.deepEqual(await readFile(key), seed);
  });

  it('--version prints the package version', async () => {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8'));
    const { stdout } = await run(process.execPath, [BIN, '--version']);
    assert.equal(stdout.trim(), pkg.version);
  });
});
