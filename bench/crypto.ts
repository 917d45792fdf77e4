/**
 * Crypto costs of end-to-end encryption, in process: seal+open of one ~200-byte JSON body (µs,
 * median of batches), the one-time lazy import of the HPKE and curve packages, and blob
 * encrypt/decrypt throughput streaming 100 MiB in 64 KiB chunks (MB/s, decimal megabytes).
 *
 *   node --import tsx bench/crypto.ts [--json]
 *
 * Also run by `npm run bench` (bench/index.ts calls `cryptoBench`), in process before the relay
 * scenarios: it needs no relay and no child processes. The per-message figure is measured twice:
 * through the protocol functions (`sealBody`/`openBody`) and through the codec the runner and the
 * CLI use (`client/e2e-codec.ts`: seed copy and wipe, envelope serialisation and bounds included).
 */

import { pathToFileURL } from 'node:url';
import { e2eCodec } from '../src/client/e2e-codec.js';
import { decryptBlobStream, encryptBlobStream, encryptedBlobSize, newDek } from '../src/protocol/blob-crypto.js';
import { hpkeSuite, openBody, sealBody } from '../src/protocol/e2e.js';
import { Keypair } from '../src/protocol/signing.js';
import type { Message } from '../src/protocol/types.js';
import { median } from './lib.js';

const SENDER = Keypair.fromSeed(Uint8Array.from({ length: 32 }, (_, i) => i + 1));
const RECIPIENT = Keypair.fromSeed(Uint8Array.from({ length: 32 }, (_, i) => i + 0x21));
/** A typical request body: 200 bytes of JSON (checked in main). */
const BODY = {
  action: 'translate',
  params: { text: 'The quick brown fox jumps over the lazy dog, twice over, in a JSON body.', target_language: 'es' },
  response_format: 'json',
  tags: ['bench', 'e2e', 'seal', 'open'],
};

async function lazyImportMs(): Promise<number> {
  const t0 = performance.now();
  await hpkeSuite();
  await sealBody({
    body: 1,
    contentType: 'application/json',
    senderSeed: SENDER.exportSeed(),
    recipientPublicKey: RECIPIENT.publicKey,
  });
  return performance.now() - t0;
}

async function sealOpenMicros(batches: number, perBatch: number): Promise<{ seal: number; open: number }> {
  const senderSeed = SENDER.exportSeed();
  const recipientSeed = RECIPIENT.exportSeed();
  const seals: number[] = [];
  const opens: number[] = [];
  for (let b = 0; b < batches; b++) {
    const envelopes = [];
    let t0 = performance.now();
    for (let i = 0; i < perBatch; i++) {
      envelopes.push(
        await sealBody({
          body: BODY,
          contentType: 'application/json',
          senderSeed,
          recipientPublicKey: RECIPIENT.publicKey,
        }),
      );
    }
    seals.push(((performance.now() - t0) * 1000) / perBatch);
    t0 = performance.now();
    for (const envelope of envelopes) await openBody({ envelope, recipientSeed, senderPublicKey: SENDER.publicKey });
    opens.push(((performance.now() - t0) * 1000) / perBatch);
  }
  return { seal: median(seals), open: median(opens) };
}

/** Seal+open of one message through the codec (what a runner pays per encrypted request + reply), µs. */
async function codecMicros(batches: number, perBatch: number): Promise<number> {
  const sender = e2eCodec(SENDER);
  const recipient = e2eCodec(RECIPIENT);
  const bodyJson = JSON.stringify(BODY);
  const rounds: number[] = [];
  for (let b = 0; b < batches; b++) {
    const t0 = performance.now();
    for (let i = 0; i < perBatch; i++) {
      const sealed = await sender.seal(
        { bodyJson, contentType: 'application/json' },
        { to: RECIPIENT.publicKey, encrypt: true },
      );
      const message: Message = {
        message_id: `msg_1_${i}`,
        sender_key: SENDER.publicKey,
        recipient_key: RECIPIENT.publicKey,
        content_type: sealed.contentType,
        body: JSON.parse(sealed.bodyJson),
        attachments: [],
        thread_id: null,
        in_reply_to: null,
        metadata: {},
        status: 'sent',
        created_at: '2026-03-05T12:00:00Z',
        expires_at: '2026-03-12T12:00:00Z',
        delivered_at: null,
      };
      const opened = await recipient.open(message);
      if (!opened.encrypted) throw new Error('the codec did not open the message');
    }
    rounds.push(((performance.now() - t0) * 1000) / perBatch);
  }
  return median(rounds);
}

async function* zeros(total: number, chunk: number): AsyncGenerator<Uint8Array> {
  const block = new Uint8Array(chunk).fill(7);
  for (let sent = 0; sent < total; sent += chunk) yield block.subarray(0, Math.min(chunk, total - sent));
}

/** Passes a source through, adding the time spent producing each item to `spent.ms`. */
async function* timed(source: AsyncIterable<Uint8Array>, spent: { ms: number }): AsyncGenerator<Uint8Array> {
  const it = source[Symbol.asyncIterator]();
  for (;;) {
    const t0 = performance.now();
    const next = await it.next();
    spent.ms += performance.now() - t0;
    if (next.done) return;
    yield next.value;
  }
}

/**
 * Streams `total` bytes through encryption, then through encryption + decryption; the time spent
 * upstream of the decryptor (producing ciphertext) is subtracted so each figure is one direction.
 */
async function blobThroughput(total: number, chunk: number) {
  const dek = newDek();
  const rss0 = process.memoryUsage().rss;
  const source = { ms: 0 };
  let t0 = performance.now();
  let sealed = 0;
  for await (const part of encryptBlobStream(dek, timed(zeros(total, chunk), source))) sealed += part.length;
  const encryptMs = performance.now() - t0 - source.ms;
  if (sealed !== encryptedBlobSize(total)) throw new Error(`encrypted ${sealed} bytes for ${total}`);
  const upstream = { ms: 0 };
  t0 = performance.now();
  let opened = 0;
  for await (const part of decryptBlobStream(dek, timed(encryptBlobStream(dek, zeros(total, chunk)), upstream))) {
    opened += part.length;
  }
  const decryptMs = performance.now() - t0 - upstream.ms;
  if (opened !== total) throw new Error(`decrypted ${opened} of ${total} bytes`);
  const mb = total / 1e6;
  return {
    encryptMBs: mb / (encryptMs / 1000),
    decryptMBs: mb / (decryptMs / 1000),
    rssGrowthMb: (process.memoryUsage().rss - rss0) / 2 ** 20,
  };
}

export interface CryptoBenchResult {
  first_use_ms: number;
  body_bytes: number;
  seal_us: number;
  open_us: number;
  seal_open_us: number;
  codec_seal_open_us: number;
  blob_mib: number;
  blob_encrypt_mb_s: number;
  blob_decrypt_mb_s: number;
  blob_rss_growth_mb: number;
}

/** All the figures; `quick` measures fewer messages and a 16 MiB blob instead of 100 MiB. */
export async function cryptoBench(options: { quick?: boolean } = {}): Promise<CryptoBenchResult> {
  const quick = options.quick === true;
  const importMs = await lazyImportMs();
  await sealOpenMicros(2, 50); // warm-up
  const { seal, open } = await sealOpenMicros(quick ? 5 : 15, 100);
  const codec = await codecMicros(quick ? 5 : 15, 100);
  const blobMib = quick ? 16 : 100;
  await blobThroughput(8 * 2 ** 20, 64 * 1024); // warm-up
  const blob = await blobThroughput(blobMib * 2 ** 20, 64 * 1024);
  const bodyBytes = JSON.stringify(BODY).length;
  if (Math.abs(bodyBytes - 200) > 5) throw new Error(`benchmark body is ${bodyBytes} bytes, expected ~200`);
  return {
    first_use_ms: Math.round(importMs),
    body_bytes: bodyBytes,
    seal_us: Math.round(seal),
    open_us: Math.round(open),
    seal_open_us: Math.round(seal + open),
    codec_seal_open_us: Math.round(codec),
    blob_mib: blobMib,
    blob_encrypt_mb_s: Math.round(blob.encryptMBs),
    blob_decrypt_mb_s: Math.round(blob.decryptMBs),
    blob_rss_growth_mb: Math.round(blob.rssGrowthMb),
  };
}

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const result = await cryptoBench({ quick: process.argv.includes('--quick') });
  if (json) {
    console.log(JSON.stringify(result));
    return;
  }
  console.log(`first use (lazy import of @hpke/*, @noble/curves + first seal): ${result.first_use_ms} ms`);
  console.log(
    `seal ${result.seal_us} µs + open ${result.open_us} µs = ${result.seal_open_us} µs per ${result.body_bytes}-byte JSON body (through the codec: ${result.codec_seal_open_us} µs)`,
  );
  console.log(
    `blob, ${result.blob_mib} MiB streamed in 64 KiB chunks: encrypt ${result.blob_encrypt_mb_s} MB/s, decrypt ${result.blob_decrypt_mb_s} MB/s, RSS +${result.blob_rss_growth_mb} MiB`,
  );
}

// Standalone: `node --import tsx bench/crypto.ts [--json] [--quick]`.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main();
