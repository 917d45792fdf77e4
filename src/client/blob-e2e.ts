/**
 * End-to-end encrypted attachments (docs/protocol.md §8.4) on top of the blob API (./blobs.ts):
 * sealing bytes or a file for one recipient before upload, and downloading + opening an
 * attachment (encrypted or not) after checking its hash. Used by the runtime (`ctx.upload`,
 * `ctx.download`) and the CLI (`send -e --attach-file`, `get --save-attachments`).
 *
 * Trade-offs:
 * - A streamed upload is signed by the SHA-256 of what is sent (§2.2), i.e. of the CIPHERTEXT, so
 *   it must be known before the first byte goes out. ChaCha20-Poly1305 under a fixed DEK and nonce
 *   is deterministic, so the file is encrypted twice: once to measure and hash (nothing kept), once
 *   per upload attempt (`open()`). Memory stays at one chunk whatever the size, with no temp file;
 *   the price is a second encryption pass (~1 GB/s with `node:crypto`).
 * - A fixed DEK and nonce must never encrypt two different plaintexts (two ciphertexts under one
 *   ChaCha20 keystream give away the XOR of their plaintexts, and Poly1305 forgeries), and a file
 *   can change between the measuring pass and an attempt, or between two attempts. So the
 *   plaintext is cut into fixed 256 KiB blocks, the measuring pass keeps each block's SHA-256
 *   (32 bytes per block: 12.5 KiB for 100 MiB), and every attempt checks each block against it
 *   right before encrypting it: a block that differs ends the upload with `upload_source_changed`
 *   and nothing of it is encrypted, so every byte that ever leaves under this DEK and nonce is the
 *   ciphertext of the one plaintext that was measured.
 * - The Poly1305 tag is at the END of the blob, so plaintext streamed by `openAttachment` is
 *   untrusted until the iterator finishes without throwing: callers write it to a temp file and
 *   rename on success (the CLI's `writeStreamNew`), or buffer it under a limit
 *   (`downloadAttachmentBytes`, `maxBytes`, default 100 MiB).
 * - `protocol/e2e.ts` (HPKE, ~70 ms to import) loads only when an attachment is encrypted.
 * - The relay sets an attachment's `hash`/`size` from the stored blob; the download is checked
 *   against them as well as against the blob's own `X-M2M-Blob-Hash` (`blob_hash_mismatch`).
 */
import { createHash, randomBytes } from 'node:crypto';
import { ProtocolError, UsageError } from '../core/errors.js';
import { BLOB_NONCE_BYTES, decryptBlobStream, encryptBlobStream, newDek } from '../protocol/blob-crypto.js';
import type { Keypair } from '../protocol/signing.js';
import type { Attachment } from '../protocol/types.js';
import type { BlobHead, BlobInput, DownloadOptions } from './blobs.js';
import { loadE2e } from './e2e-codec.js';
import type { RelayClient } from './http.js';

/** Content type every encrypted blob is uploaded as (§8.4). */
export const ENCRYPTED_BLOB_TYPE = 'application/octet-stream';
/** Default cap of `downloadAttachmentBytes` (the relay's per-blob limit). */
export const DEFAULT_MAX_ATTACHMENT_BYTES = 100 * 1024 * 1024;

/** An upload ready to go: the bytes to send, their Content-Type, and the attachment's fields besides `blob_id`. */
export interface PreparedUpload {
  input: BlobInput;
  uploadType: string;
  attachment: Omit<Attachment, 'blob_id'>;
}

/** A source of plaintext that can be read more than once (a file, bytes in memory). */
export type PlaintextSource = () => AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

async function wrapFor(keypair: Keypair, recipient: string, dek: Uint8Array) {
  const e2e = await loadE2e();
  const seed = keypair.exportSeed();
  try {
    return await e2e.wrapDek({ dek, senderSeed: seed, recipientPublicKey: recipient });
  } finally {
    seed.fill(0);
  }
}

/** The plaintext block whose digest each upload attempt checks before encrypting it. */
const SEAL_BLOCK_BYTES = 256 * 1024;

/** Re-cuts a stream of bytes into `size`-byte blocks (the last one shorter), copying only to join. */
async function* blocksOf(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  size: number,
): AsyncGenerator<Uint8Array> {
  let parts: Uint8Array[] = [];
  let have = 0;
  for await (const raw of source) {
    let chunk: Uint8Array = typeof raw === 'string' ? Buffer.from(raw) : raw;
    while (chunk.byteLength > 0) {
      const take = Math.min(size - have, chunk.byteLength);
      parts.push(chunk.subarray(0, take));
      have += take;
      chunk = chunk.subarray(take);
      if (have === size) {
        yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
        parts = [];
        have = 0;
      }
    }
  }
  if (have > 0) yield parts.length === 1 ? parts[0]! : Buffer.concat(parts, have);
}

function sourceChanged(): UsageError {
  return new UsageError(
    'the bytes to upload changed after they were encrypted once (a file still being written?); nothing of the changed bytes was sent; upload it again once it no longer changes',
    { code: 'upload_source_changed' },
  );
}

/**
 * Seals a plaintext for `recipient` (§8.4): a fresh DEK and nonce, the DEK wrapped with HPKE Auth
 * from `keypair`. Reads `source` once now (to size and hash the ciphertext, keeping each block's
 * digest) and again on every `input.open()`, which refuses (`upload_source_changed`) a block that
 * differs from the first read before encrypting it. `meta` is the plaintext's filename and media
 * type, kept in the attachment.
 */
export async function sealUpload(
  keypair: Keypair,
  recipient: string,
  source: PlaintextSource,
  meta: { filename?: string; contentType?: string },
): Promise<PreparedUpload> {
  const dek = newDek();
  const nonce = Uint8Array.from(randomBytes(BLOB_NONCE_BYTES));
  const fixedNonce = (): Uint8Array => nonce;
  const hash = createHash('sha256');
  const digests: Buffer[] = [];
  let size = 0;
  const record = (block: Uint8Array): void => {
    digests.push(createHash('sha256').update(block).digest());
  };
  for await (const chunk of encryptBlobStream(dek, blocksOf(source(), SEAL_BLOCK_BYTES), fixedNonce, record)) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  // Each attempt's block `index` must be the measured one, byte for byte, before it is encrypted;
  // and there must be no fewer blocks, checked before the tag (over a shorter plaintext) is made.
  const verify = (block: Uint8Array, index: number): void => {
    const expected = digests[index];
    if (!expected?.equals(createHash('sha256').update(block).digest())) throw sourceChanged();
  };
  const reread = async function* (): AsyncGenerator<Uint8Array> {
    let count = 0;
    for await (const block of blocksOf(source(), SEAL_BLOCK_BYTES)) {
      count++;
      yield block;
    }
    if (count !== digests.length) throw sourceChanged();
  };
  const wrapped = await wrapFor(keypair, recipient, dek);
  const attachment: Omit<Attachment, 'blob_id'> = { encrypted: true, ...wrapped };
  if (meta.filename !== undefined) attachment.filename = meta.filename;
  if (meta.contentType !== undefined) attachment.content_type = meta.contentType;
  return {
    input: {
      size,
      sha256: hash.digest(),
      open: () => encryptBlobStream(dek, reread(), fixedNonce, verify),
    },
    uploadType: ENCRYPTED_BLOB_TYPE,
    attachment,
  };
}

/** The DEK of an encrypted attachment sent by `senderKey` to the holder of `keypair`. */
async function dekOf(keypair: Keypair, attachment: Attachment, senderKey: string): Promise<Uint8Array> {
  const e2e = await loadE2e();
  const seed = keypair.exportSeed();
  try {
    return await e2e.unwrapDek({ wrapped: attachment, recipientSeed: seed, senderPublicKey: senderKey });
  } catch (err) {
    const code = (err as { code?: unknown })?.code;
    throw new ProtocolError(
      'decryption_failed',
      `attachment ${attachment.blob_id}: cannot unwrap its key (${(err as Error).message})`,
      {
        cause: err,
        details: { blob_id: attachment.blob_id, reason: typeof code === 'string' ? code : 'decryption_failed' },
      },
    );
  } finally {
    seed.fill(0);
  }
}

function checkAgainstAttachment(attachment: Attachment, info: BlobHead): void {
  const wrongHash = typeof attachment.hash === 'string' && attachment.hash.toLowerCase() !== info.hash;
  const wrongSize = typeof attachment.size === 'number' && attachment.size !== info.size;
  if (wrongHash || wrongSize) {
    throw new ProtocolError(
      'blob_hash_mismatch',
      `attachment ${attachment.blob_id}: the message says ${attachment.size ?? '?'} bytes hashing to ${String(attachment.hash ?? '?').slice(0, 12)}…, the blob is ${info.size} bytes hashing to ${info.hash.slice(0, 12)}…`,
      {
        details: {
          blob_id: attachment.blob_id,
          expected_hash: attachment.hash,
          actual_hash: info.hash,
          expected_size: attachment.size,
          actual_size: info.size,
        },
      },
    );
  }
}

/** What `openAttachment` resolves with. */
export interface OpenedAttachment {
  info: BlobHead;
  encrypted: boolean;
  /**
   * The plaintext. For an encrypted attachment it is authentic only once the iteration finishes
   * without throwing (`decryption_failed` at the end otherwise): never keep or act on a partial result.
   */
  body: AsyncIterable<Uint8Array>;
}

/**
 * Downloads an attachment of a message from `senderKey` and opens it: the blob is checked against
 * its own hash and the attachment's `hash`/`size` (`blob_hash_mismatch`), and an encrypted one is
 * decrypted with the DEK unwrapped for the holder of `keypair` (`decryption_failed`).
 */
export async function openAttachment(
  client: RelayClient,
  attachment: Attachment,
  senderKey: string,
  opts: DownloadOptions = {},
): Promise<OpenedAttachment> {
  const encrypted = attachment.encrypted === true;
  // Unwrapped first: a key that cannot be opened fails before any byte is downloaded.
  const dek = encrypted ? await dekOf(client.keypair, attachment, senderKey) : undefined;
  const { info, body } = await client.downloadBlob(attachment.blob_id, opts);
  try {
    checkAgainstAttachment(attachment, info);
  } catch (err) {
    await (body as AsyncGenerator<Uint8Array>).return?.(undefined);
    throw err;
  }
  if (!dek) return { info, encrypted, body };
  return { info, encrypted, body: decryptBlobStream(dek, body) };
}

/**
 * `openAttachment` into memory, verified (hash, and the tag of an encrypted blob) before it
 * resolves; refused with `payload_too_large` before reading when the blob is over `maxBytes`
 * (default 100 MiB).
 */
export async function downloadAttachmentBytes(
  client: RelayClient,
  attachment: Attachment,
  senderKey: string,
  opts: DownloadOptions & { maxBytes?: number; onHead?: (info: BlobHead) => void } = {},
): Promise<Buffer> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_ATTACHMENT_BYTES;
  const stop = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, stop.signal]) : stop.signal;
  const opened = await openAttachment(client, attachment, senderKey, { ...opts, signal });
  opts.onHead?.(opened.info);
  if (opened.info.size > maxBytes + (opened.encrypted ? 28 : 0)) {
    stop.abort();
    throw new UsageError(
      `attachment ${attachment.blob_id} is ${opened.info.size} bytes, more than the ${maxBytes} allowed here`,
      {
        code: 'payload_too_large',
        details: { size: opened.info.size, limit: maxBytes },
      },
    );
  }
  const parts: Uint8Array[] = [];
  for await (const chunk of opened.body) parts.push(chunk);
  return Buffer.concat(parts);
}
