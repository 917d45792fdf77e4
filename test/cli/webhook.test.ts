/**
 * `mrp webhook set|get|rm` against a real relay: a generated secret is printed once (and is the
 * one the relay signs with), never by `get`, never in --debug --log-payloads output; a given
 * secret is never echoed; private targets are refused by a default relay with a hint.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, it, type TestContext } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import { Keypair } from '../../src/protocol/signing.js';
import { verifyWebhookSignature } from '../../src/protocol/webhook.js';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

async function user(t: TestContext, relayUrl: string) {
  const home = await tempDir(t);
  const deps = () => testDeps({ home, env: { MRP_RELAY_URL: relayUrl } });
  const res = await runCli(['keygen', '--json'], deps());
  assert.equal(res.code, 0, res.stderr);
  return { deps, key: JSON.parse(res.stdout).public_key as string };
}

describe('mrp webhook', () => {
  it('set generates a secret and prints it once; the relay signs with it; get never shows it; rm removes', async (t) => {
    const bodies: Array<{ body: string; signature: string }> = [];
    const server = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (d: string) => (body += d));
      req.on('end', () => {
        bodies.push({ body, signature: String(req.headers['x-m2m-webhook-signature']) });
        res.writeHead(200).end();
        server.emit('hit');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const hookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/in`;
    const relay = await startRelay(t, { allowPrivateWebhooks: true });
    const { deps, key } = await user(t, relay.url);

    const set = await runCli(['webhook', 'set', hookUrl, '--json'], deps());
    assert.equal(set.code, 0, set.stderr);
    const out = JSON.parse(set.stdout);
    assert.equal(out.url, hookUrl);
    assert.equal(out.enabled, true);
    assert.match(out.secret, /^[A-Za-z0-9_-]{43}$/);

    const hit = once(server, 'hit');
    await new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() }).send({
      recipient_key: key,
      body: { text: 'hi' },
    });
    await hit;
    assert.ok(
      verifyWebhookSignature(out.secret, bodies[0]!.body, bodies[0]!.signature),
      'signed with the printed secret',
    );

    const get = await runCli(['webhook', 'get', '--json'], deps());
    assert.equal(get.code, 0, get.stderr);
    assert.deepEqual(Object.keys(JSON.parse(get.stdout)).sort(), [
      'consecutive_failures',
      'created_at',
      'enabled',
      'url',
    ]);
    const human = await runCli(['webhook', 'get'], deps());
    assert.ok(!human.stdout.includes(out.secret) && !human.stderr.includes(out.secret));

    const rm = await runCli(['webhook', 'rm', '--json'], deps());
    assert.equal(rm.code, 0, rm.stderr);
    const gone = await runCli(['webhook', 'get', '--json'], deps());
    assert.equal(gone.code, 1);
    assert.equal(JSON.parse(gone.stderr).error.code, 'not_found');
  });

  it('a given --secret is never printed, not even by --debug --log-payloads; --quiet prints a generated one alone', async (t) => {
    const relay = await startRelay(t, { allowPrivateWebhooks: true });
    const { deps } = await user(t, relay.url);
    const secret = 'my-very-own-webhook-secret-1234';
    for (const extra of [['--json'], [], ['--debug', '--log-payloads'], ['--debug', '--log-payloads', '--json']]) {
      const res = await runCli(['webhook', 'set', 'https://example.com/in', '--secret', secret, ...extra], deps());
      assert.equal(res.code, 0, res.stderr);
      assert.ok(!res.stdout.includes(secret) && !res.stderr.includes(secret), `secret leaked with ${extra.join(' ')}`);
    }
    const debug = await runCli(['webhook', 'set', 'https://example.com/in', '--debug', '--log-payloads'], deps());
    assert.equal(debug.code, 0, debug.stderr);
    assert.ok(debug.stderr.includes('redacted'), 'the request body is shown redacted');
    const quiet = await runCli(['webhook', 'set', 'https://example.com/in', '--quiet'], deps());
    assert.match(quiet.stdout.trim(), /^[A-Za-z0-9_-]{43}$/);
  });

  it('bad input is a usage error naming it; a private target on a default relay is webhook_url_refused with a hint', async (t) => {
    const relay = await startRelay(t);
    const { deps } = await user(t, relay.url);
    const notUrl = await runCli(['webhook', 'set', 'example.com/in', '--json'], deps());
    assert.equal(notUrl.code, 2);
    assert.match(JSON.parse(notUrl.stderr).error.message, /<url>/);
    const short = await runCli(['webhook', 'set', 'https://example.com/in', '--secret', 'short', '--json'], deps());
    assert.equal(short.code, 2);
    assert.match(JSON.parse(short.stderr).error.message, /--secret/);
    // A URL with a user name and password: refused here (the relay would refuse it), never echoed.
    for (const args of [['https://bob:hunter2pw@example.com/in'], ['ftp://bob:hunter2pw@example.com/in']]) {
      const creds = await runCli(['webhook', 'set', ...args, '--json'], deps());
      assert.equal(creds.code, 2, creds.stderr);
      assert.equal(JSON.parse(creds.stderr).error.code, 'invalid_argument');
      assert.match(JSON.parse(creds.stderr).error.message, /<url>/);
      assert.doesNotMatch(creds.stderr + creds.stdout, /hunter2pw/);
    }
    const refused = await runCli(['webhook', 'set', 'http://127.0.0.1:9/in', '--json'], deps());
    assert.equal(refused.code, 1);
    const err = JSON.parse(refused.stderr).error;
    assert.equal(err.code, 'webhook_url_refused');
    assert.match(err.hint ?? '', /--allow-private-webhooks/);
  });
});
