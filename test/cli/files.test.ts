import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import { Keypair } from '../../src/protocol/signing.js';
import { Scene } from '../e2e/_support.js';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

const PEER = Keypair.generate().publicKey;

describe('config.json', () => {
  it('is written atomically with mode 0600 and read back; a wrong shape fails with config_invalid naming the field', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    assert.equal((await runCli(['config', 'set', 'relay', 'http://127.0.0.1:9'], deps)).code, 0);
    const file = join(home, 'config.json');
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), { relay: 'http://127.0.0.1:9' });
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await runCli(['config', 'get', 'relay'], deps)).stdout, 'http://127.0.0.1:9\n');

    const cases: Array<[string, RegExp]> = [
      ['["http://x"]', /must be a JSON object .* not an array/],
      ['"http://x"', /must be a JSON object/],
      ['{"relay": 8080}', /\(relay\): must be a non-empty string .* not 8080/],
      ['{"relay": ""}', /\(relay\): must be a non-empty string/],
      [
        '{"rleay": "http://127.0.0.1:1"}',
        /\(rleay\): unknown key "rleay" \(did you mean "relay"\?\); known keys: relay, key_file/,
      ],
      ['{"relay": "ftp://x"}', /must start with http/],
      ['{"relay": ', /not valid JSON/],
      [`${'['.repeat(5000)}${']'.repeat(5000)}`, /nested deeper than/],
    ];
    for (const [text, message] of cases) {
      await writeFile(file, text);
      const res = await runCli(['whoami', '--json'], deps);
      assert.equal(res.code, 2, `${text.slice(0, 30)}: ${res.stderr}`);
      const err = JSON.parse(res.stderr).error;
      assert.equal(err.code, 'config_invalid', text.slice(0, 30));
      assert.match(err.message, message);
      assert.ok(err.message.includes(file), 'names the file');
      assert.ok(err.hint, 'says how to fix it');
    }
    await writeFile(file, '\uFEFF{"relay": "http://127.0.0.1:7"}\n');
    assert.equal((await runCli(['config', 'get', 'relay'], deps)).stdout, 'http://127.0.0.1:7\n', 'a BOM is accepted');
  });

  it('a directory in its place is config_invalid, not internal_error', async (t) => {
    const home = await tempDir(t);
    await mkdir(join(home, 'config.json'), { recursive: true });
    const res = await runCli(['whoami', '--json'], testDeps({ home }));
    assert.equal(res.code, 2);
    const err = JSON.parse(res.stderr).error;
    assert.equal(err.code, 'config_invalid');
    assert.match(err.message, /is a directory/);
  });
});

describe('contacts.json', () => {
  it('accepts a UTF-8 BOM; deep nesting, a directory or non-UTF-8 give contacts_invalid', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home });
    const file = join(home, 'contacts.json');
    await writeFile(file, `\uFEFF${JSON.stringify({ contacts: [{ name: 'bob', public_key: PEER }] })}`);
    const ls = await runCli(['contacts', 'ls', '--json'], deps);
    assert.equal(ls.code, 0, ls.stderr);
    assert.equal(JSON.parse(ls.stdout)[0].name, 'bob');

    for (const [content, message] of [
      [`{"contacts":[${'['.repeat(100_000)}${']'.repeat(100_000)}]}`, /nested deeper than/],
      [Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), /not UTF-8/],
    ] as const) {
      await writeFile(file, content);
      const res = await runCli(['send', 'bob', 'hi', '--json'], deps);
      assert.equal(res.code, 2, res.stderr);
      const err = JSON.parse(res.stderr).error;
      assert.equal(err.code, 'contacts_invalid');
      assert.match(err.message, message);
    }
    await import('node:fs/promises').then((fs) => fs.rm(file));
    await mkdir(file);
    const dir = await runCli(['contacts', 'ls', '--json'], deps);
    assert.equal(dir.code, 2);
    assert.equal(JSON.parse(dir.stderr).error.code, 'contacts_invalid');
    assert.match(JSON.parse(dir.stderr).error.message, /is a directory/);
  });
});

describe('mrp run with a config.json (the README set-up)', () => {
  it('one SIGTERM drains within --grace and exits 0', async (t) => {
    const relay = await startRelay(t);
    const scene = await Scene.create(t, 'drain');
    assert.equal((await scene.mrp(['keygen'])).exit.code, 0);
    assert.equal((await scene.mrp(['config', 'set', 'relay', relay.url])).exit.code, 0);
    await writeFile(
      join(scene.dir, 'handler.mjs'),
      `export default async (msg, ctx) => { ctx.log.info('started'); await new Promise((r) => setTimeout(r, 400)); return { done: true }; };\n`,
    );
    const runner = scene.spawn('mrp run', [
      'run',
      '--handler',
      './handler.mjs',
      '--grace',
      '10s',
      '--log-format',
      'json',
    ]);
    const ready = await runner.waitEvent('ready', {}, 'ready', 15_000);
    const peer = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const sent = await peer.send({ recipient_key: ready['agent'] as string, body: { n: 1 } });
    await runner.waitEvent('log', { msg: 'started' }, 'the handler started', 10_000);
    runner.kill('SIGTERM');
    const exit = await runner.waitExit('after one SIGTERM', 15_000);
    assert.equal(exit.code, 0, runner.tail());
    const handled = runner.events('handled');
    assert.equal(handled.length, 1, 'the running handler finished');
    assert.equal(handled[0]!['outcome'], 'replied');
    const reply = await peer.poll({ in_reply_to: sent.message_id });
    assert.equal(reply.messages.length, 1, 'its reply was sent before exiting');
    assert.equal(runner.events('stopped').length, 1);
  });

  it('one SIGTERM exits 0 even when the handler module left a timer and a server open', async (t) => {
    const relay = await startRelay(t);
    const scene = await Scene.create(t, 'leaky');
    assert.equal((await scene.mrp(['keygen'])).exit.code, 0);
    assert.equal((await scene.mrp(['config', 'set', 'relay', relay.url])).exit.code, 0);
    // What a handler module with a database pool or a metrics server does: handles nobody closes.
    await writeFile(
      join(scene.dir, 'handler.mjs'),
      `import { createServer } from 'node:net';\nsetInterval(() => {}, 1000);\ncreateServer().listen(0, '127.0.0.1');\nexport default async () => ({ done: true });\n`,
    );
    const runner = scene.spawn('mrp run', [
      'run',
      '--handler',
      './handler.mjs',
      '--grace',
      '2s',
      '--log-format',
      'json',
    ]);
    await runner.waitEvent('ready', {}, 'ready', 15_000);
    runner.kill('SIGTERM');
    const exit = await runner.waitExit('after one SIGTERM, with handles the handler left open', 10_000);
    assert.equal(exit.code, 0, runner.tail());
    assert.equal(runner.events('stopped').length, 1);
  });
});
