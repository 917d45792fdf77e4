/**
 * `mrp/testing`: `invoke` (a handler once, a real ctx, no network) and `createTestRelay`.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { describe, it } from 'node:test';
import { Agent, withAttachments } from '../../src/index.js';
import type { Handler } from '../../src/runtime/handler.js';
import { createTestRelay, invoke } from '../../src/testing.js';

describe('invoke', () => {
  it('a return value is the reply: body, content type, threading', async () => {
    const result = await invoke(async (msg) => ({ translation: 'Hola', got: msg.body }), {
      message_id: 'm-1',
      body: { text: 'Hello' },
    });
    assert.equal(result.outcome, 'ok');
    assert.deepEqual(result.reply?.body, { translation: 'Hola', got: { text: 'Hello' } });
    assert.equal(result.reply?.contentType, 'application/json');
    assert.equal(result.reply?.inReplyTo, 'm-1');
    assert.equal(result.reply?.threadId, 'm-1');
    assert.deepEqual((await invoke(() => 'hi')).reply?.body, { text: 'hi' });
    const none = await invoke(() => undefined);
    assert.equal(none.outcome, 'no_reply');
    assert.equal(none.reply, null);
  });

  it('refuses what it cannot mean, naming it: a body passed as the message, a misspelt option', async () => {
    const handler: Handler = (msg) => ({ got: msg.body });
    await assert.rejects(invoke(handler, { text: 'Hello' } as never), {
      code: 'invalid_argument',
      message: /^invoke: message field "text" is not a message field; the body goes in \{ body: … \}/,
    });
    await assert.rejects(invoke(handler, { boddy: 1 } as never), { message: /did you mean "body"\?/ });
    await assert.rejects(invoke(handler, 'Hello' as never), {
      code: 'invalid_argument',
      message: /invoke: message must be an object/,
    });
    await assert.rejects(invoke(handler, {}, { timeout: 50 } as never), {
      code: 'invalid_argument',
      message: /invoke: option "timeout" is unknown \(did you mean "timeoutMs"\?\)/,
    });
    await assert.rejects(invoke(handler, {}, { timeoutMs: Number.POSITIVE_INFINITY }), { message: /timeoutMs/ });
    await assert.rejects(invoke('handler.ts' as never), { message: /invoke: handler must be a function/ });
    // Every real field is taken.
    const full = await invoke(handler, { body: 1, thread_id: 't', in_reply_to: null, metadata: {}, attachments: [] });
    assert.deepEqual(full.reply?.body, { got: 1 });
  });

  it('a thrown error is the error reply mrp run sends', async () => {
    const coded = await invoke(() => {
      throw Object.assign(new Error('no such language'), { code: 'unsupported_language' });
    });
    assert.equal(coded.outcome, 'error');
    assert.deepEqual(coded.reply?.body, {
      status: 'error',
      error: { code: 'unsupported_language', message: 'no such language' },
    });
    assert.deepEqual(coded.error, { code: 'unsupported_language', message: 'no such language' });
    assert.equal(coded.thrown?.message, 'no such language');
    const plain = await invoke(async () => Promise.reject(new TypeError('bad')));
    assert.deepEqual(plain.reply?.body, { status: 'error', error: { code: 'handler_error', message: 'bad' } });
    const unsendable = await invoke(() => ({ n: 1n }) as never);
    assert.equal(unsendable.error?.code, 'invalid_reply');
  });

  it('the deadline is enforced like --timeout, and ctx.signal aborts', async () => {
    let aborted = false;
    const result = await invoke(
      (_msg, ctx) =>
        new Promise((resolve) => {
          ctx.signal.addEventListener('abort', () => {
            aborted = true;
            resolve({ late: true });
          });
        }),
      {},
      { timeoutMs: 20 },
    );
    assert.equal(result.outcome, 'timeout');
    assert.equal(result.error?.code, 'timeout');
    assert.ok(aborted);
  });

  it('captures ctx.reply progress, ctx.send and ctx.log; gives ctx what it asks for', async () => {
    const self = 'A'.repeat(43);
    const handler: Handler = async (msg, ctx) => {
      await ctx.reply({ progress: 50 });
      await ctx.reply({ progress: 100 }, { contentType: 'application/x-progress+json' });
      const sent = await ctx.send('bob', { hello: 1 }, { threadId: 't-9', ttl: 60 });
      ctx.log.info('sent', { id: sent.message_id });
      return { self: ctx.self, redelivered: ctx.redelivered, encrypted: ctx.encrypted, from: msg.sender_key };
    };
    const result = await invoke(
      handler,
      { sender_key: 'B'.repeat(43) },
      {
        self,
        redelivered: true,
        encrypted: true,
        resolveRecipient: (to) => (to === 'bob' ? 'C'.repeat(43) : to),
      },
    );
    assert.deepEqual(
      result.replies.map((r) => [r.body, r.contentType, r.to, r.encrypted]),
      [
        [{ progress: 50 }, 'application/json', 'B'.repeat(43), true],
        [{ progress: 100 }, 'application/x-progress+json', 'B'.repeat(43), true],
      ],
    );
    assert.equal(result.sent.length, 1);
    assert.deepEqual(
      {
        to: result.sent[0]!.to,
        body: result.sent[0]!.body,
        threadId: result.sent[0]!.threadId,
        ttl: result.sent[0]!.ttl,
        encrypted: result.sent[0]!.encrypted,
      },
      { to: 'C'.repeat(43), body: { hello: 1 }, threadId: 't-9', ttl: 60, encrypted: false },
    );
    assert.deepEqual(result.logs, [{ level: 'info', message: 'sent', fields: { id: result.sent[0]!.messageId } }]);
    assert.deepEqual(result.reply?.body, { self, redelivered: true, encrypted: true, from: 'B'.repeat(43) });
  });

  it('attachments offline: ctx.download reads the blobs option, ctx.upload is recorded, the reply carries attachments', async () => {
    const result = await invoke(
      async (msg, ctx) => {
        const text = (await ctx.download(msg.attachments[0]!)).toString();
        const out = await ctx.upload(text.toUpperCase(), { filename: 'up.txt', contentType: 'text/plain' });
        await ctx.reply({ progress: 1 }, { attachments: [out] });
        const again = await ctx.download(out);
        return withAttachments({ done: again.toString() }, [out]);
      },
      { attachments: [{ blob_id: 'blob_000000000001', filename: 'in.txt', encrypted: true }] },
      { encrypted: true, blobs: { blob_000000000001: 'hello' } },
    );
    assert.equal(result.outcome, 'ok', JSON.stringify(result.error));
    assert.deepEqual(result.reply?.body, { done: 'HELLO' });
    const [upload] = result.uploads;
    assert.equal(upload?.data.toString(), 'HELLO');
    assert.equal(upload?.encrypt, true, 'encrypt defaults to ctx.encrypted');
    assert.equal(
      upload?.attachment.blob_id,
      'blob_3733cd977ff8',
      'deterministic: the first 12 hex digits of the SHA-256',
    );
    assert.deepEqual(result.reply?.attachments, [upload!.attachment]);
    assert.deepEqual(result.replies[0]?.attachments, [upload!.attachment]);
    const missing = await invoke(async (msg, ctx) => ctx.download(msg.attachments[0]!).then(() => 'found'), {
      attachments: [{ blob_id: 'blob_00000000000f' }],
    });
    assert.equal(missing.error?.code, 'blob_not_found');
    const bad = await invoke(() => withAttachments({ a: 1 }, [{ nope: 1 } as never]));
    assert.equal(bad.error?.code, 'invalid_reply');
    // Understood from another copy of the module too (a handler with its own node_modules/mrp): the mark is a registered symbol.
    const foreign = {
      body: { a: 1 },
      attachments: [{ blob_id: 'blob_000000000002' }],
      [Symbol.for('mrp.replyWithAttachments')]: true,
    };
    const other = await invoke(() => foreign as never);
    assert.deepEqual(other.reply?.body, { a: 1 });
    assert.deepEqual(other.reply?.attachments, [{ blob_id: 'blob_000000000002' }]);
    // A plain object that merely looks like one is a JSON body.
    const plain = await invoke(() => ({ body: { a: 1 }, attachments: [] }));
    assert.deepEqual(plain.reply?.body, { body: { a: 1 }, attachments: [] });
  });

  it('the handler gets a copy: what it changes does not change the reply target', async () => {
    const result = await invoke(
      (msg) => {
        msg.sender_key = 'someone else';
        return { ok: true };
      },
      { sender_key: 'B'.repeat(43) },
    );
    assert.equal(result.reply?.to, 'B'.repeat(43));
  });
});

describe('createTestRelay', () => {
  it('a real relay on a free port in a temporary directory, gone after close()', async () => {
    const relay = await createTestRelay();
    try {
      assert.match(relay.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.ok(existsSync(relay.dataDir));
      const health = await fetch(`${relay.url}/v1/health`);
      assert.equal(health.status, 200);
      const agent = new Agent(relay.url, {
        keypair: (await import('../../src/protocol/signing.js')).Keypair.generate(),
        name: 'T',
      });
      assert.equal((await agent.announce()).display_name, 'T');
    } finally {
      await relay.close();
      await relay.close();
    }
    assert.ok(!existsSync(relay.dataDir));
    await assert.rejects(fetch(`${relay.url}/v1/health`));
  });
});

describe('createTestRelay options', () => {
  it("refuses a misspelt option or one it sets itself, naming it; takes the relay's own", async () => {
    await assert.rejects(createTestRelay({ sendRate: 0 } as never), {
      code: 'invalid_option',
      message: /^createTestRelay: unknown option sendRate/,
    });
    await assert.rejects(createTestRelay({ sendRatePerMinut: 0 } as never), {
      message: /did you mean "sendRatePerMinute"\?/,
    });
    await assert.rejects(createTestRelay({ port: 1234 } as never), {
      code: 'invalid_option',
      message: /^createTestRelay: option port is not taken/,
    });
    const relay = await createTestRelay({ sendRatePerMinute: 0, logLevel: 'error' });
    await relay.close();
  });
});
