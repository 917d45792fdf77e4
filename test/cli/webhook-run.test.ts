/**
 * `mrp run --mode webhook` flags: `--listen` forms, when `--public-url` is required, and the
 * one-line errors (code, exit 2) for the bad cases — in process, before any handler loads.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { webhookListen } from '../../src/cli/commands/run.js';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

describe('mrp run --mode webhook: flags', () => {
  it('--listen: host:port, :port, port, [v6]:port; loopback infers the URL, anything else needs --public-url', () => {
    assert.deepEqual(webhookListen(undefined, undefined), { host: '127.0.0.1', port: 8787 });
    assert.deepEqual(webhookListen('127.0.0.1:0', undefined), { host: '127.0.0.1', port: 0 });
    assert.deepEqual(webhookListen(':9000', undefined), { host: '127.0.0.1', port: 9000 });
    assert.deepEqual(webhookListen('9000', undefined), { host: '127.0.0.1', port: 9000 });
    assert.deepEqual(webhookListen('[::1]:9000', undefined), { host: '::1', port: 9000 });
    assert.deepEqual(webhookListen('localhost:1', undefined), { host: 'localhost', port: 1 });
    assert.deepEqual(webhookListen('0.0.0.0:8787', 'https://agent.example.com/hook'), {
      host: '0.0.0.0',
      port: 8787,
      publicUrl: 'https://agent.example.com/hook',
    });
    for (const host of ['0.0.0.0:8787', '[::]:8787', '10.1.2.3:8787', 'agent.internal:80']) {
      assert.throws(() => webhookListen(host, undefined), { code: 'public_url_required' }, host);
    }
    for (const bad of ['', 'x', '1.2.3.4:', ':99999', '1.2.3.4:80:80', 'host :80']) {
      assert.throws(() => webhookListen(bad, undefined), { code: 'invalid_argument' }, bad);
    }
    for (const url of ['ftp://x/hook', 'not a url', 'https://x/hook?token=1', '/hook']) {
      assert.throws(() => webhookListen('0.0.0.0:1', url), { code: 'invalid_argument' }, url);
    }
    // Credentials in the URL: the relay refuses them, and the password is never echoed.
    for (const url of ['https://bob:hunter2pw@agent.example.com/hook', 'ftp://bob:hunter2pw@x/hook']) {
      assert.throws(
        () => webhookListen('0.0.0.0:1', url),
        (err: Error & { code?: string }) =>
          err.code === 'invalid_argument' && /--public-url/.test(err.message) && !/hunter2pw/.test(err.message),
        url,
      );
    }
  });

  it('bad flags end the command with one line naming the flag, exit 2', async (t) => {
    const home = await tempDir(t);
    const cases: Array<[string[], RegExp]> = [
      [['--mode', 'webhook', '--listen', '0.0.0.0:8787'], /--public-url/],
      [['--mode', 'webhooks'], /--mode: "webhooks" must be websocket \(ws\), poll or webhook/],
      [['--listen', '127.0.0.1:0'], /--listen only applies to --mode webhook/],
      [['--mode', 'poll', '--public-url', 'https://x/hook'], /--public-url only applies to --mode webhook/],
      [['--catch-up', '1m'], /--catch-up only applies to --mode webhook/],
      [['--mode', 'webhook', '--catch-up', 'soon'], /--catch-up: "soon" is not a duration; use e\.g\. 30s, 5m/],
      [['--mode', 'webhook', '--catch-up', '-1s'], /--catch-up: "-1s" is not a duration/],
    ];
    for (const [flags, message] of cases) {
      const r = await runCli(['run', '--handler', './handler.ts', ...flags], testDeps({ home }));
      assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });

  it('a relay refusing the loopback URL stops the run with one fatal event, carrying the hint', async (t) => {
    const relay = await startRelay(t);
    const home = await tempDir(t);
    const deps = () => testDeps({ home, cwd: home, env: { MRP_RELAY_URL: relay.url } });
    assert.equal((await runCli(['keygen'], deps())).code, 0);
    await writeFile(join(home, 'h.mjs'), 'export default async () => ({ ok: true });\n');
    const res = await runCli(['run', '-H', './h.mjs', '--mode', 'webhook', '--listen', '127.0.0.1:0'], deps());
    assert.equal(res.code, 1, res.stderr);
    const fatal = res.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((e) => e['event'] === 'fatal');
    assert.equal(fatal.length, 1, res.stdout);
    assert.equal(fatal[0]!['code'], 'webhook_url_refused');
    assert.match(String(fatal[0]!['hint']), /--allow-private-webhooks/);
  });
});
