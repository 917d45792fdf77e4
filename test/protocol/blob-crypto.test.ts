import assert from 'node:assert/strict';
import { createDecipheriv, createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import {
  BLOB_OVERHEAD,
  decryptBlobStream,
  encryptBlobStream,
  encryptedBlobSize,
  newDek,
  openBlob,
  sealBlob,
} from '../../src/protocol/blob-crypto.js';

const DEK = Uint8Array.from({ length: 32 }, (_, i) => 0xa0 + i);
const NONCE = Uint8Array.from({ length: 12 }, (_, i) => i + 1);
const fixedRandom = (n: number) => NONCE.subarray(0, n);
const data = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 255);

async function collect(source: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const chunk of source) parts.push(chunk);
  return Buffer.concat(parts);
}

function chunks(bytes: Uint8Array, sizes: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let at = 0;
  for (let i = 0; at < bytes.length; i++) {
    const size = sizes[i % sizes.length]!;
    out.push(bytes.subarray(at, at + size));
    at += size;
  }
  return out;
}

function flip(bytes: Uint8Array, at: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[at]! ^= 0x80;
  return copy;
}

describe('blob contents (§8.4)', () => {
  it('layout: nonce ‖ ChaCha20-Poly1305(DEK, nonce, bytes, aad empty) ‖ tag', () => {
    const plaintext = data(1000);
    const sealed = sealBlob(DEK, plaintext, fixedRandom);
    assert.equal(sealed.length, encryptedBlobSize(1000));
    assert.equal(BLOB_OVERHEAD, 28);
    assert.deepEqual(sealed.subarray(0, 12), NONCE);
    // Decrypted independently with node:crypto, as the spec describes it.
    const decipher = createDecipheriv('chacha20-poly1305', DEK, sealed.subarray(0, 12), { authTagLength: 16 });
    decipher.setAuthTag(sealed.subarray(sealed.length - 16));
    const opened = Buffer.concat([decipher.update(sealed.subarray(12, sealed.length - 16)), decipher.final()]);
    assert.deepEqual(new Uint8Array(opened), plaintext);
    assert.deepEqual(openBlob(DEK, sealed), plaintext);
  });

  it('empty files work, fresh DEKs and nonces differ', () => {
    assert.deepEqual(openBlob(DEK, sealBlob(DEK, new Uint8Array(0))), new Uint8Array(0));
    assert.notDeepEqual(newDek(), newDek());
    assert.equal(newDek().length, 32);
    assert.notDeepEqual(sealBlob(DEK, data(10)).subarray(0, 12), sealBlob(DEK, data(10)).subarray(0, 12));
  });

  it('detects tampering anywhere, truncation and the wrong key', () => {
    const sealed = sealBlob(DEK, data(100));
    for (const at of [0, 11, 12, 60, sealed.length - 17, sealed.length - 16, sealed.length - 1]) {
      assert.throws(() => openBlob(DEK, flip(sealed, at)), { code: 'decryption_failed' }, `byte ${at}`);
    }
    assert.throws(() => openBlob(DEK, sealed.subarray(0, sealed.length - 1)), { code: 'decryption_failed' });
    assert.throws(() => openBlob(DEK, sealed.subarray(0, 27)), { code: 'decryption_failed' });
    assert.throws(() => openBlob(newDek(), sealed), { code: 'decryption_failed' });
    assert.throws(() => openBlob(new Uint8Array(16), sealed), { code: 'invalid_key' });
    assert.throws(() => sealBlob(new Uint8Array(31), data(1)), { code: 'invalid_key' });
  });

  it('streaming encryption gives the same bytes as the buffer form', async () => {
    const plaintext = data(100_003);
    const streamed = await collect(encryptBlobStream(DEK, chunks(plaintext, [1, 4096, 65536, 0, 13]), fixedRandom));
    assert.deepEqual(new Uint8Array(streamed), sealBlob(DEK, plaintext, fixedRandom));
  });

  it('streaming decryption works for any chunking', async () => {
    const plaintext = data(5000);
    const sealed = sealBlob(DEK, plaintext);
    for (const sizes of [[1], [7], [11, 1], [12], [13], [16], [17], [5, 29, 3], [sealed.length]]) {
      const opened = await collect(decryptBlobStream(DEK, chunks(sealed, sizes)));
      assert.deepEqual(new Uint8Array(opened), plaintext, `chunks of ${sizes}`);
    }
    assert.deepEqual(
      new Uint8Array(await collect(decryptBlobStream(DEK, [sealBlob(DEK, new Uint8Array(0))]))),
      new Uint8Array(0),
    );
  });

  it('streaming decryption throws at the end on tampering, truncation or the wrong key', async () => {
    const sealed = sealBlob(DEK, data(3000));
    for (const bad of [flip(sealed, 100), flip(sealed, sealed.length - 1), flip(sealed, 3), sealed.subarray(0, 2000)]) {
      await assert.rejects(collect(decryptBlobStream(DEK, chunks(bad, [64]))), { code: 'decryption_failed' });
    }
    await assert.rejects(collect(decryptBlobStream(newDek(), [sealed])), { code: 'decryption_failed' });
    await assert.rejects(collect(decryptBlobStream(DEK, [sealed.subarray(0, 20)])), { code: 'decryption_failed' });
    await assert.rejects(collect(decryptBlobStream(DEK, [])), { code: 'decryption_failed' });
  });

  it('streams 10 MiB through both directions without collecting it', async () => {
    const size = 10 * 1024 * 1024;
    const chunk = 64 * 1024;
    async function* source() {
      for (let at = 0; at < size; at += chunk) yield data(chunk);
    }
    const plainHash = createHash('sha256');
    for await (const part of source()) plainHash.update(part);
    const openedHash = createHash('sha256');
    let opened = 0;
    let largest = 0;
    for await (const part of decryptBlobStream(DEK, encryptBlobStream(DEK, source()))) {
      openedHash.update(part);
      opened += part.length;
      largest = Math.max(largest, part.length);
    }
    assert.equal(opened, size);
    assert.ok(largest <= chunk + 16, `chunks stay chunk-sized (${largest})`);
    assert.equal(openedHash.digest('hex'), plainHash.digest('hex'));
  });
});
