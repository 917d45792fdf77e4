/**
 * Crypto costs of end-to-end encryption, in process: seal+open of one ~200-byte JSON body (µs,
 * median of batches), the one-time lazy import of the HPKE and curve packages, and blob
 * encrypt/decrypt throughput streaming 100 MiB in 64 KiB chunks (MB/s, decimal megabytes).
 *
 *   node --import tsx bench/crypto.ts [--json]
 *
 * Standalone on purpose (not in bench/index.ts yet): it needs no relay and no child processes.
 */
import { decryptBlobStream, encryptBlobStream, encryptedBlobSize, newDek } from '../src/protocol/blob-crypto.js';
import { hpkeSuite, openBody, sealBody } from '../src/protocol/e2e.js';
import { Keypair } from '../src/protocol/signing.js';
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

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const importMs = await lazyImportMs();
  await sealOpenMicros(2, 50); // warm-up
  const { seal, open } = await sealOpenMicros(15, 100);
  await blobThroughput(8 * 2 ** 20, 64 * 1024); // warm-up
  const blob = await blobThroughput(100 * 2 ** 20, 64 * 1024);
  const bodyBytes = JSON.stringify(BODY).length;
  if (Math.abs(bodyBytes - 200) > 5) throw new Error(`benchmark body is ${bodyBytes} bytes, expected ~200`);
  const result = {
    first_use_ms: Math.round(importMs),
    body_bytes: bodyBytes,
    seal_us: Math.round(seal),
    open_us: Math.round(open),
    seal_open_us: Math.round(seal + open),
    blob_encrypt_mb_s: Math.round(blob.encryptMBs),
    blob_decrypt_mb_s: Math.round(blob.decryptMBs),
    blob_rss_growth_mb: Math.round(blob.rssGrowthMb),
  };
  if (json) {
    console.log(JSON.stringify(result));
    return;
  }
  console.log(`first use (lazy import of @hpke/*, @noble/curves + first seal): ${result.first_use_ms} ms`);
  console.log(
    `seal ${result.seal_us} µs + open ${result.open_us} µs = ${result.seal_open_us} µs per ${bodyBytes}-byte JSON body`,
  );
  console.log(
    `blob, 100 MiB streamed in 64 KiB chunks: encrypt ${result.blob_encrypt_mb_s} MB/s, decrypt ${result.blob_decrypt_mb_s} MB/s, RSS +${result.blob_rss_growth_mb} MiB`,
  );
}

await main();
