/**
 * Webhooks from the library (`import … from 'mrp'`): a runtime built around the exported
 * `WebhookSource`, and a receiver of one's own checking deliveries with the exported helpers —
 * both against a real relay that really delivers (loopback allowed, as `mrp dev` allows it).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as mrp from '../../src/index.js';
import { Peer } from '../helpers/agent.js';
import { startRelay } from '../helpers/relay.js';

describe('webhooks from the library', () => {
  it('a runtime around the exported WebhookSource answers what the relay delivers', async (t) => {
    const relay = await startRelay(t, { allowPrivateWebhooks: true });
    const peer = await Peer.connect(t, relay);
    const keypair = mrp.Keypair.generate();
    const client = new mrp.RelayClient({ relayUrl: relay.url, keypair });
    const dir = mkdtempSync(join(tmpdir(), 'mrp-webhook-lib-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    const source = new mrp.WebhookSource({
      client,
      secret: mrp.newWebhookSecret(),
      port: 0,
      register: async (url, secret) => {
        await client.setWebhook(url, secret);
      },
    });
    const { runtime } = mrp.assembleRuntime({
      client,
      mode: 'webhook',
      source,
      journalDir: dir,
      codec: mrp.plainCodec,
      handler: (m) => ({ echoed: m.body }),
    });
    await source.listen();
    const connected = runtime.next('connected');
    runtime.start();
    await connected;
    t.after(() => runtime.stop());
    const { message_id } = await peer.send(keypair.publicKey, { n: 1 });
    const [reply] = await peer.waitForReplies(1);
    assert.equal(reply!.in_reply_to, message_id);
    assert.deepEqual(reply!.body, { echoed: { n: 1 } });
  });

  it("a receiver of one's own checks a real delivery with the exported helpers, and refuses a forged one", async (t) => {
    const relay = await startRelay(t, { allowPrivateWebhooks: true });
    const peer = await Peer.connect(t, relay);
    const keypair = mrp.Keypair.generate();
    const client = new mrp.RelayClient({ relayUrl: relay.url, keypair });
    const secret = mrp.newWebhookSecret();
    assert.equal(mrp.isWebhookSecret(secret), true);
    const checked: Array<{ signed: boolean; fresh: mrp.WebhookTimestampCheck; forged: boolean; id: string }> = [];
    const server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks);
        const signature = req.headers[mrp.WEBHOOK_HEADERS.signature] as string | undefined;
        const timestamp = req.headers[mrp.WEBHOOK_HEADERS.timestamp] as string | undefined;
        const delivery = JSON.parse(raw.toString('utf8')) as { delivery_id: string; message: mrp.Message };
        checked.push({
          signed: mrp.verifyWebhookSignature(secret, raw, signature),
          fresh: mrp.checkWebhookTimestamp(timestamp, Date.now()),
          forged: mrp.verifyWebhookSignature(secret, Buffer.concat([raw, Buffer.from(' ')]), signature),
          id: delivery.message.message_id,
        });
        assert.equal(signature, mrp.webhookSignature(secret, raw));
        assert.equal(req.headers[mrp.WEBHOOK_HEADERS.deliveryId], delivery.delivery_id);
        res.writeHead(200).end();
        server.emit('checked');
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(() => server.close());
    const { port } = server.address() as AddressInfo;
    await client.setWebhook(`http://127.0.0.1:${port}/hook`, secret);
    const arrived = once(server, 'checked');
    const { message_id } = await peer.send(keypair.publicKey, { hello: 'hook' });
    await arrived;
    assert.deepEqual(checked, [{ signed: true, fresh: 'ok', forged: false, id: message_id }]);
    assert.equal(mrp.checkWebhookTimestamp(mrp.formatTimestamp(Date.now() - 3_600_000), Date.now()), 'too_old');
    assert.equal(mrp.WEBHOOK_SOURCE_DEFAULTS.maxInFlight > 0, true);
  });
});
