/**
 * Contents of encrypted blobs (docs/protocol.md §8.4, our layout): 12-byte random nonce ‖
 * ChaCha20-Poly1305(DEK, nonce, file bytes, aad = empty) ‖ 16-byte tag, under a random 32-byte
 * DEK that `e2e.ts` wraps per recipient with HPKE.
 *
 * Trade-offs:
 * - `node:crypto` rather than the pure-JS ChaCha20 inside `@hpke/*`: about ten times faster, and
 *   it streams, so a 100 MiB file never sits in memory. `node:crypto` does no I/O, so this stays
 *   in the pure protocol layer.
 * - The streaming functions take and return async iterables of bytes (plain async generators), not
 *   Node streams: callers plug them into `fs` streams or `fetch` bodies with `Readable.from` /
 *   `pipeline`, and tests drive them with arrays.
 * - One AEAD over the whole file means the tag is checked only at the end: the streaming opener
 *   releases plaintext before it knows the file is authentic (see `decryptBlobStream`).
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { e2eError, e2eMisuse } from './e2e-layout.js';

/** A blob data-encryption key is 32 random bytes. */
export const DEK_BYTES = 32;
/** The random nonce that opens every encrypted blob. */
export const BLOB_NONCE_BYTES = 12;
/** The Poly1305 tag that closes every encrypted blob. */
export const BLOB_TAG_BYTES = 16;
/** Bytes an encrypted blob has beyond its plaintext. */
export const BLOB_OVERHEAD = BLOB_NONCE_BYTES + BLOB_TAG_BYTES;

const ALGORITHM = 'chacha20-poly1305';

/** A source of random bytes (injectable so tests can be deterministic). */
export type RandomBytes = (n: number) => Uint8Array;

/** A fresh random DEK. */
export function newDek(random: RandomBytes = randomBytes): Uint8Array {
  return Uint8Array.from(random(DEK_BYTES));
}

/** Size of the encrypted blob for a plaintext of `plaintextSize` bytes. */
export function encryptedBlobSize(plaintextSize: number): number {
  return plaintextSize + BLOB_OVERHEAD;
}

/** A plain Uint8Array view of a Buffer (no copy), so callers see one byte type. */
function view(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

function checkDek(dek: Uint8Array): void {
  if (dek.length !== DEK_BYTES) throw e2eMisuse('invalid_key', 'a blob DEK is exactly 32 bytes');
}

function cipherFor(dek: Uint8Array, nonce: Uint8Array) {
  return createCipheriv(ALGORITHM, dek, nonce, { authTagLength: BLOB_TAG_BYTES });
}

function decipherFor(dek: Uint8Array, nonce: Uint8Array) {
  return createDecipheriv(ALGORITHM, dek, nonce, { authTagLength: BLOB_TAG_BYTES });
}

function tamperedOrWrongKey(cause?: unknown) {
  return e2eError('decryption_failed', 'cannot decrypt the blob: wrong key or tampered data', cause);
}

/** Encrypts a whole buffer (for small files; use `encryptBlobStream` for large ones). */
export function sealBlob(dek: Uint8Array, plaintext: Uint8Array, random: RandomBytes = randomBytes): Uint8Array {
  checkDek(dek);
  const nonce = random(BLOB_NONCE_BYTES);
  const cipher = cipherFor(dek, nonce);
  const body = cipher.update(plaintext);
  cipher.final();
  return view(Buffer.concat([nonce, body, cipher.getAuthTag()]));
}

/**
 * Decrypts a whole encrypted blob and checks its tag before returning anything. Throws
 * `ProtocolError('decryption_failed')` for a wrong key, tampering or a truncated blob.
 */
export function openBlob(dek: Uint8Array, ciphertext: Uint8Array): Uint8Array {
  checkDek(dek);
  if (ciphertext.length < BLOB_OVERHEAD) throw tamperedOrWrongKey();
  const decipher = decipherFor(dek, ciphertext.subarray(0, BLOB_NONCE_BYTES));
  decipher.setAuthTag(ciphertext.subarray(ciphertext.length - BLOB_TAG_BYTES));
  const plaintext = decipher.update(ciphertext.subarray(BLOB_NONCE_BYTES, ciphertext.length - BLOB_TAG_BYTES));
  try {
    decipher.final();
  } catch (err) {
    throw tamperedOrWrongKey(err);
  }
  return view(plaintext);
}

/**
 * Encrypts a stream of plaintext chunks: yields the nonce, the ciphertext chunk by chunk (same
 * sizes as the input), then the tag. Memory stays at one chunk whatever the file size.
 *
 * `check`, when given, sees each non-empty plaintext chunk (and its index) right before it is
 * encrypted, in the same synchronous step: throwing there ends the stream with nothing of that
 * chunk encrypted. A caller that encrypts the same plaintext again under the same DEK and nonce
 * (a retried upload) uses it to refuse plaintext that differs from the first time, which would
 * otherwise go out under the same keystream.
 */
export async function* encryptBlobStream(
  dek: Uint8Array,
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  random: RandomBytes = randomBytes,
  check?: (chunk: Uint8Array, index: number) => void,
): AsyncGenerator<Uint8Array> {
  checkDek(dek);
  const nonce = Uint8Array.from(random(BLOB_NONCE_BYTES));
  const cipher = cipherFor(dek, nonce);
  yield nonce;
  let index = 0;
  for await (const chunk of source) {
    if (chunk.length === 0) continue;
    check?.(chunk, index++);
    yield view(cipher.update(chunk));
  }
  cipher.final();
  yield view(cipher.getAuthTag());
}

/**
 * Decrypts a stream of encrypted-blob chunks, yielding plaintext as it goes and checking the tag
 * when the source ends; a wrong key, tampering or truncation then throws
 * `ProtocolError('decryption_failed')` from the generator.
 *
 * **Plaintext chunks are released before the tag is verified.** Until the generator has finished
 * without throwing, treat everything it yielded as untrusted: write it to a temporary file and
 * rename that into place only on success (delete it on failure), or buffer it under a size limit.
 * Never act on, display or forward a partial result.
 */
export async function* decryptBlobStream(
  dek: Uint8Array,
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncGenerator<Uint8Array> {
  checkDek(dek);
  let head = new Uint8Array(0); // bytes of the nonce seen so far
  let decipher: ReturnType<typeof decipherFor> | undefined;
  let tail = new Uint8Array(0); // the last ≤ 16 bytes seen: possibly the tag, held back
  for await (const input of source) {
    let chunk = input;
    if (!decipher) {
      const needed = BLOB_NONCE_BYTES - head.length;
      head = Buffer.concat([head, chunk.subarray(0, needed)]);
      chunk = chunk.subarray(needed);
      if (head.length < BLOB_NONCE_BYTES) continue;
      decipher = decipherFor(dek, head);
    }
    if (chunk.length >= BLOB_TAG_BYTES) {
      // Release the held-back tail and all of this chunk but its last 16 bytes.
      const out = Buffer.concat([
        decipher.update(tail),
        decipher.update(chunk.subarray(0, chunk.length - BLOB_TAG_BYTES)),
      ]);
      tail = Uint8Array.from(chunk.subarray(chunk.length - BLOB_TAG_BYTES));
      if (out.length > 0) yield view(out);
    } else if (chunk.length > 0) {
      const joined = Buffer.concat([tail, chunk]);
      const release = joined.length - BLOB_TAG_BYTES;
      if (release > 0) yield view(decipher.update(joined.subarray(0, release)));
      tail = Uint8Array.from(joined.subarray(Math.max(0, release)));
    }
  }
  if (!decipher || tail.length < BLOB_TAG_BYTES) throw tamperedOrWrongKey();
  decipher.setAuthTag(tail);
  try {
    decipher.final();
  } catch (err) {
    throw tamperedOrWrongKey(err);
  }
}
