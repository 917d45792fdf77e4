/**
 * `mrp run --mode webhook` flags: `--listen` forms, when `--public-url` is required, and the
 * one-line errors (code, exit 2) for the bad cases — in process, before any handler loads.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { webhookListen } from '../../src/cli/commands/run.js';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';

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
  });

  it('bad flags end the command with one line naming the flag, exit 2', async (t) => {
    const home = await tempDir(t);
    const cases: Array<[string[], RegExp]> = [
      [['--mode', 'webhook', '--listen', '0.0.0.0:8787'], /--public-url/],
      [['--mode', 'webhooks'], /--mode: "webhooks" must be websocket \(ws\), poll or webhook/],
      [['--listen', '127.0.0.1:0'], /--listen only applies to --mode webhook/],
      [['--mode', 'poll', '--public-url', 'https://x/hook'], /--public-url only applies to --mode webhook/],
    ];
    for (const [flags, message] of cases) {
      const r = await runCli(['run', '--handler', './handler.ts', ...flags], testDeps({ home }));
      assert.equal(r.code, 2, `${flags.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message);
    }
  });
});
