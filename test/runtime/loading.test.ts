import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../src/core/errors.js';
import { normalizeMessage } from '../../src/protocol/frames.js';
import type { Message } from '../../src/protocol/types.js';
import { loadHandler } from '../../src/runtime/handler.js';
import { Journal } from '../../src/runtime/journal.js';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/handlers/', import.meta.url));
const ctx = {} as never;
const msg = { message_id: 'msg_1_abc', body: { text: 'hi' } } as unknown as Message;

describe('loading handlers', () => {
  it('TypeScript importing TypeScript and an npm package', async () => {
    const { handler, exportName } = await loadHandler('ts-imports/handler.ts', { cwd: FIXTURES });
    assert.equal(exportName, 'default');
    assert.deepEqual(await handler(msg, ctx), { text: 'HI', yaml: 'said: hi' });
  });

  for (const [file, kind, exportName] of [
    ['esm.mjs', 'mjs', 'default'],
    ['common.cjs', 'cjs', 'default'],
    ['named.js', 'js', 'handler'],
    ['module.mts', 'mts', 'default'],
    ['commonts.cts', 'cts', 'default'],
    ['object.ts', 'object', 'default.handler'],
  ] as const) {
    it(`${file}`, async () => {
      const loaded = await loadHandler(join(FIXTURES, file));
      assert.equal(loaded.exportName, exportName);
      assert.deepEqual(await loaded.handler(msg, ctx), { kind, id: 'msg_1_abc' });
    });
  }

  const failures: Array<[string, string, RegExp]> = [
    ['nope.ts', 'handler_not_found', /nope\.ts does not exist/],
    ['.', 'handler_not_found', /is a directory/],
    ['notes.txt', 'handler_unsupported', /extension "\.txt"/],
    ['bad-syntax.ts', 'handler_syntax', /syntax error in handler bad-syntax\.ts:2:\d+/],
    ['no-function.ts', 'handler_invalid', /exports no handler function \(found name \(string\), version \(number\)\)/],
    ['missing-package.ts', 'handler_import', /"definitely-not-installed-pkg"/],
    ['throws-on-load.ts', 'handler_load', /cannot start without DATABASE_URL/],
  ];
  for (const [file, code, pattern] of failures) {
    it(`fails fast and clearly: ${code} (${file})`, async () => {
      await assert.rejects(loadHandler(file, { cwd: FIXTURES }), (e: unknown) => {
        assert.ok(e instanceof ConfigError, String(e));
        assert.equal(e.code, code);
        assert.match(e.message, pattern);
        assert.ok(!e.message.includes('\n'), 'one line');
        return true;
      });
    });
  }

  it('mrp run with a bad handler exits 2 naming the file, before connecting anywhere', async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home, cwd: FIXTURES });
    await runCli(['keygen'], deps);
    const res = await runCli(['run', '--handler', 'bad-syntax.ts', '--relay', 'http://127.0.0.1:9'], deps);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /syntax error in handler bad-syntax\.ts:2/);
    const missing = await runCli(['run', '--handler', 'missing.ts', '--relay', 'http://127.0.0.1:9'], deps);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing\.ts does not exist/);
    const none = await runCli(['run'], deps);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /--handler/);
  });
  it("mrp run refuses a journal holding another relay's unfinished messages: exit 2, naming both relays and the file, before connecting", async (t) => {
    const home = await tempDir(t);
    const deps = testDeps({ home, cwd: FIXTURES });
    const { public_key: me } = JSON.parse((await runCli(['keygen', '--json'], deps)).stdout);
    const dir = join(home, 'state', me);
    const journal = Journal.open(dir, { relay: 'https://relay-a.example' });
    const now = Date.now();
    await journal.received(
      normalizeMessage({
        message_id: 'msg_1_000000000001',
        sender_key: me,
        body: { n: 1 },
        created_at: new Date(now).toISOString(),
        expires_at: new Date(now + 86_400_000).toISOString(),
      }),
    );
    journal.close();
    const res = await runCli(['run', '--handler', 'esm.mjs', '--relay', 'http://127.0.0.1:9'], deps);
    assert.equal(res.code, 2, res.stderr);
    const first = res.stderr.split('\n')[0]!;
    assert.match(first, /1 unfinished message from relay https:\/\/relay-a\.example, not http:\/\/127\.0\.0\.1:9/);
    assert.ok(first.includes(join(dir, 'journal.jsonl')), first);
    assert.match(res.stderr, /mrp run --relay https:\/\/relay-a\.example/);
    const back = Journal.open(dir, { relay: 'https://relay-a.example' });
    t.after(() => back.close());
    assert.deepEqual(
      back.takeRecovered().map((e) => e.id),
      ['msg_1_000000000001'],
      'nothing lost',
    );
  });
});
