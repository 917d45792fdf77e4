/**
 * Attachments in the handler (docs/protocol.md §3.7, §8.4): `ctx.upload`, `ctx.download`, and
 * the marker a handler returns to reply with attachments (`withAttachments`).
 *
 * - `ctx.download(attachment)` resolves to the plaintext bytes (a Buffer), checked against the
 *   blob's hash and the attachment's `hash`/`size`; an encrypted attachment is decrypted (its DEK
 *   unwrapped with this agent's key, from the message's sender) and its tag verified before the
 *   promise resolves. Bounded by `maxBytes` (default 100 MiB, the relay's per-blob limit).
 * - `ctx.upload(data, { filename, contentType, encrypt, to })` uploads and returns the attachment
 *   object to put in a reply. `encrypt` defaults to `ctx.encrypted` (a handler answering an
 *   encrypted message encrypts its files too); the DEK is wrapped for `to` (default: the
 *   message's sender, who gets the reply).
 * - Exactly once across crashes: each upload is journaled per message, keyed by what was
 *   uploaded (plaintext hash, name, type, recipient, encrypt). A handler re-run after a crash that
 *   uploads the same thing gets the same attachment back (same `blob_id`, same wrapped DEK) after
 *   a `HEAD` shows the blob still exists — so the blob is not stored twice. Once the handler
 *   finished, its reply (with its attachments) is in the journal as sent, so a resend carries the
 *   same blob ids. A crash between the upload and its journal record can still leave one orphan
 *   blob (it expires with the relay's blob lifetime).
 */
import { createHash } from 'node:crypto';
import { downloadAttachmentBytes, sealUpload } from '../client/blob-e2e.js';
import type { RelayClient } from '../client/http.js';
import { MrpError, UsageError } from '../core/errors.js';
import { BLOB_OVERHEAD, encryptedBlobSize } from '../protocol/blob-crypto.js';
import { LIMITS } from '../protocol/constants.js';
import type { Attachment, JsonValue, Message } from '../protocol/types.js';
import type { RuntimeJournal } from './journal-port.js';

/**
 * The mark of a `ReplyWithAttachments`: a registered symbol rather than `instanceof`, so a handler
 * that imports another copy of `mrp` than the runner's (its own node_modules) is still understood.
 */
const REPLY_MARK = Symbol.for('mrp.replyWithAttachments');

/** A reply body with attachments: return `withAttachments(body, attachments)` from a handler. */
export class ReplyWithAttachments {
  readonly body: JsonValue;
  readonly attachments: readonly Attachment[];
  readonly [REPLY_MARK] = true;
  constructor(body: JsonValue, attachments: readonly Attachment[]) {
    this.body = body;
    this.attachments = attachments;
  }
}

/** True for what `withAttachments` returns (from any copy of this module). */
export function isReplyWithAttachments(value: unknown): value is ReplyWithAttachments {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[REPLY_MARK] === true;
}

/**
 * What a handler returns to reply with `body` (a string becomes `{"text": …}`, like a plain
 * return) and `attachments` (from `ctx.upload`, or any `{ blob_id }` this agent uploaded). A
 * plain object returned is always a JSON body: only this marker carries attachments.
 */
export function withAttachments(body: JsonValue, attachments: readonly Attachment[]): ReplyWithAttachments {
  if (!Array.isArray(attachments))
    throw new UsageError('withAttachments: attachments must be an array', { code: 'invalid_argument' });
  return new ReplyWithAttachments(body, attachments);
}

/** Options of `ctx.upload`. */
export interface CtxUploadOptions {
  /** The file name the recipient sees. */
  filename?: string;
  /** Media type of the data (default application/octet-stream). */
  contentType?: string;
  /** Encrypt end-to-end (§8.4) for `to` (default: `ctx.encrypted`). */
  encrypt?: boolean;
  /** Whom an encrypted upload is for (a key or contact; default: the message's sender). */
  to?: string;
}

/** Options of `ctx.download`. */
export interface CtxDownloadOptions {
  /** Refuse (`payload_too_large`) attachments larger than this many bytes (default 100 MiB). */
  maxBytes?: number;
}

/** What a context needs to move attachments (the runtime's relay client; `invoke`'s offline record). */
export interface AttachmentPort {
  upload(
    message: Message,
    data: Uint8Array,
    o: { filename?: string; contentType: string; encrypt: boolean; to: string },
    signal: AbortSignal,
  ): Promise<Attachment>;
  download(message: Message, attachment: Attachment, o: CtxDownloadOptions, signal: AbortSignal): Promise<Buffer>;
}

/** `ctx.upload`'s data as bytes: a string is UTF-8. */
export function uploadBytes(data: unknown): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  throw new MrpError('handler', 'invalid_argument', 'ctx.upload: data must be a Buffer, a Uint8Array or a string');
}

/** The key an upload is journaled under: what was uploaded, to whom, how. */
export function uploadKey(
  data: Uint8Array,
  o: { filename?: string; contentType: string; encrypt: boolean; to: string },
): string {
  return createHash('sha256')
    .update(
      JSON.stringify([
        createHash('sha256').update(data).digest('hex'),
        o.filename ?? null,
        o.contentType,
        o.encrypt,
        o.to,
      ]),
    )
    .digest('hex');
}

/** Checks an attachment handed to `ctx.download`. */
export function checkAttachment(attachment: unknown): Attachment {
  const a = attachment as Attachment | null;
  if (!a || typeof a !== 'object' || typeof a.blob_id !== 'string') {
    throw new MrpError(
      'handler',
      'invalid_argument',
      'ctx.download: pass an attachment object (one of message.attachments)',
    );
  }
  return a;
}

/** Attachments through the relay, uploads journaled per message (see the file comment). */
export function relayAttachments(client: RelayClient, journal: RuntimeJournal): AttachmentPort {
  return {
    async upload(message, data, o, signal) {
      // The limit applies to the bytes uploaded: encrypted, the nonce and tag come on top.
      const uploaded = o.encrypt ? encryptedBlobSize(data.byteLength) : data.byteLength;
      if (uploaded > LIMITS.maxBlobBytes) {
        throw new MrpError(
          'handler',
          'payload_too_large',
          `ctx.upload: ${uploaded} bytes${o.encrypt ? ` encrypted (${data.byteLength} + ${BLOB_OVERHEAD})` : ''} is more than a blob may be (${LIMITS.maxBlobBytes})`,
        );
      }
      const id = message.message_id;
      const key = uploadKey(data, o);
      const earlier = journal.get(id)?.uploads?.[key];
      if (earlier) {
        try {
          await client.headBlob(earlier.blob_id, signal);
          return { ...earlier };
        } catch (err) {
          if ((err as { code?: unknown }).code !== 'blob_not_found') throw err;
        }
      }
      const prepared = o.encrypt
        ? await sealUpload(client.keypair, o.to, () => [data], {
            ...(o.filename === undefined ? {} : { filename: o.filename }),
            contentType: o.contentType,
          })
        : {
            input: data,
            uploadType: o.contentType,
            attachment: { ...(o.filename === undefined ? {} : { filename: o.filename }), content_type: o.contentType },
          };
      const info = await client.uploadBlob(prepared.input, { contentType: prepared.uploadType, signal });
      const attachment: Attachment = {
        blob_id: info.blob_id,
        ...prepared.attachment,
        size: info.size,
        hash: info.hash,
      };
      if (!o.encrypt) attachment.encrypted = false;
      await journal.uploaded?.(id, key, attachment);
      return attachment;
    },
    download(message, attachment, o, signal) {
      return downloadAttachmentBytes(client, attachment, message.sender_key, {
        signal,
        ...(o.maxBytes === undefined ? {} : { maxBytes: o.maxBytes }),
      });
    },
  };
}
