/**
 * `invoke`: runs a handler once on a message, with a real `ctx` and no network, and says what
 * would have been sent — the reply (body and content type, threaded), an error reply exactly as
 * `mrp run` would send it, what `ctx.reply`/`ctx.send` sent on the way, and what it logged. For
 * handler authors' tests (`mrp/testing`); it uses the very functions the runtime uses to turn a
 * return value or an error into a reply (reply.ts), so the two cannot disagree.
 */
import { createHash, randomUUID } from 'node:crypto';
import type { MessageCodec } from '../client/codec.js';
import { cloneJson } from '../core/clone.js';
import { formatDuration } from '../core/duration.js';
import { MrpError, RelayError, TimeoutError, UsageError } from '../core/errors.js';
import { didYouMean, unknownKey } from '../core/suggest.js';
import type { EncodedSend } from '../protocol/frames.js';
import { Keypair } from '../protocol/signing.js';
import type { Attachment, JsonValue, Message, SendResponse } from '../protocol/types.js';
import type { AttachmentPort } from './attachments.js';
import { HandlerRun, handlerContext, type LogLevel } from './context.js';
import type { Handler, HandlerContext } from './handler.js';
import { codeOf, draftReply, errorDraft, type ReplyDraft, type ReplyOutcome } from './reply.js';
import { safeFields, safeText } from './safe.js';

export interface InvokeOptions {
  /** The agent's own key (`ctx.self`, the message's recipient); default: a fresh key. */
  self?: string;
  /** `ctx.redelivered` (default false). */
  redelivered?: boolean;
  /** Pretend the message arrived end-to-end encrypted: `ctx.encrypted`, and replies are marked `encrypted`. */
  encrypted?: boolean;
  /** The handler's deadline, as `mrp run --timeout` (default 30 s). */
  timeoutMs?: number;
  /** Aborts the handler (its `ctx.signal`) as a shutdown would. */
  signal?: AbortSignal;
  /** Turns a `ctx.send` recipient (a contact name, say) into a key (default: as given). */
  resolveRecipient?: (to: string) => string;
  /**
   * What `ctx.download` finds, by blob id: the PLAINTEXT bytes (a string is UTF-8), encrypted
   * attachment or not (nothing is decrypted here). A blob id not in the map fails like a missing
   * blob (`blob_not_found`). Blobs `ctx.upload`ed during the run are found too.
   */
  blobs?: Record<string, Uint8Array | string>;
}

/** One `ctx.upload` the handler made (nothing left the process). */
export interface InvokeUpload {
  /** The attachment `ctx.upload` returned (blob id `blob_` + the first 12 hex digits of the data's SHA-256). */
  attachment: Attachment;
  data: Buffer;
  filename?: string;
  contentType: string;
  /** Whether it would have been encrypted (§8.4) for `to`. */
  encrypt: boolean;
  to: string;
}

/** One message the handler would have sent. */
export interface InvokeSent {
  to: string;
  body: JsonValue;
  contentType: string;
  threadId?: string;
  inReplyTo?: string;
  /** Time to live in seconds, when given. */
  ttl?: number;
  metadata?: JsonValue;
  /** Whether it would have been sealed end-to-end. */
  encrypted: boolean;
  /** The id `ctx.reply`/`ctx.send` resolved with (made up here). */
  messageId: string;
  /** Attachments it carries (`withAttachments`, or the `attachments` option of `ctx.reply`/`ctx.send`). */
  attachments?: Attachment[];
}

export interface InvokeResult {
  /**
   * How the handler ended: `ok` (it returned a reply), `no_reply` (it returned nothing), `error`
   * (it threw, or returned something that is not a sendable reply), `timeout`.
   */
  outcome: ReplyOutcome | 'no_reply';
  /** The reply `mrp run` would send for the return value or the error (null for `no_reply`). */
  reply: InvokeSent | null;
  /** For `error` and `timeout`: the code and message of the error reply. */
  error?: { code: string; message: string };
  /** What the handler threw (or the timeout), for assertions on the original error. */
  thrown?: Error;
  /** What `ctx.reply` sent while the handler ran (progress messages), in order. */
  replies: InvokeSent[];
  /** What `ctx.send` sent while the handler ran, in order. */
  sent: InvokeSent[];
  /** What the handler logged through `ctx.log`. */
  logs: Array<{ level: LogLevel; message: string; fields: Record<string, JsonValue> }>;
  /** What `ctx.upload` uploaded while the handler ran, in order. */
  uploads: InvokeUpload[];
}

/** A message to invoke a handler with: any field left out gets a plausible value. */
export type InvokeMessage = Partial<Message>;

/** Fills in a message: a fresh id and sender, JSON content, created now, expiring in a day. */
export function testMessage(partial: InvokeMessage = {}, self?: string): Message {
  const now = Date.now();
  return {
    message_id: randomUUID(),
    sender_key: Keypair.generate().publicKey,
    recipient_key: self ?? Keypair.generate().publicKey,
    content_type: 'application/json',
    body: null,
    attachments: [],
    thread_id: null,
    in_reply_to: null,
    metadata: {},
    status: 'delivered',
    created_at: new Date(now).toISOString(),
    expires_at: new Date(now + 86_400_000).toISOString(),
    delivered_at: new Date(now).toISOString(),
    ...partial,
  };
}

function sentOf(request: EncodedSend, encrypted: boolean, messageId: string): InvokeSent {
  const out: InvokeSent = {
    to: request.recipient_key,
    body: JSON.parse(request.body_json) as JsonValue,
    contentType: request.content_type,
    encrypted,
    messageId,
  };
  if (request.thread_id != null) out.threadId = request.thread_id;
  if (request.in_reply_to != null) out.inReplyTo = request.in_reply_to;
  if (request.expires_in !== undefined) out.ttl = request.expires_in;
  if (request.metadata !== undefined) out.metadata = request.metadata as JsonValue;
  if (request.attachments?.length) out.attachments = request.attachments;
  return out;
}

/** `ctx.upload`/`ctx.download` with no network: uploads are recorded, downloads read `blobs`. */
function offlineAttachments(blobs: Record<string, Uint8Array | string>, uploads: InvokeUpload[]): AttachmentPort {
  const stored = new Map<string, Buffer>(Object.entries(blobs).map(([id, data]) => [id, Buffer.from(data)]));
  return {
    async upload(_message, data, o) {
      const hash = createHash('sha256').update(data).digest('hex');
      const bytes = Buffer.from(data);
      const attachment: Attachment = {
        blob_id: `blob_${hash.slice(0, 12)}`,
        content_type: o.contentType,
        size: bytes.byteLength,
        hash,
        encrypted: o.encrypt,
      };
      if (o.filename !== undefined) attachment.filename = o.filename;
      stored.set(attachment.blob_id, bytes);
      uploads.push({
        attachment: { ...attachment },
        data: bytes,
        ...(o.filename === undefined ? {} : { filename: o.filename }),
        contentType: o.contentType,
        encrypt: o.encrypt,
        to: o.to,
      });
      return attachment;
    },
    async download(_message, attachment, o) {
      const bytes = stored.get(attachment.blob_id);
      if (!bytes) throw new RelayError('blob_not_found', `blob ${attachment.blob_id} is not in invoke's blobs option`);
      if (o.maxBytes !== undefined && bytes.byteLength > o.maxBytes) {
        throw new MrpError(
          'usage',
          'payload_too_large',
          `attachment ${attachment.blob_id} is ${bytes.byteLength} bytes, more than the ${o.maxBytes} allowed here`,
        );
      }
      return Buffer.from(bytes);
    },
  };
}

const MESSAGE_KEYS = [
  'message_id',
  'sender_key',
  'recipient_key',
  'content_type',
  'body',
  'attachments',
  'thread_id',
  'in_reply_to',
  'metadata',
  'status',
  'created_at',
  'expires_at',
  'delivered_at',
] as const satisfies ReadonlyArray<keyof Message>;
const OPTION_KEYS = [
  'self',
  'redelivered',
  'encrypted',
  'timeoutMs',
  'signal',
  'resolveRecipient',
  'blobs',
] as const satisfies ReadonlyArray<keyof InvokeOptions>;

/**
 * What a test passes is checked like any input: a body passed where the message goes
 * (`invoke(h, { text })`), or a misspelt option (`{ timeout: 50 }`), would otherwise run the
 * handler on something else than the test meant and pass or fail for the wrong reason.
 */
function checkInvokeInput(handler: unknown, message: unknown, options: unknown): void {
  const bad = (what: string, reason: string): UsageError =>
    new UsageError(`invoke: ${what} ${reason}`, { code: 'invalid_argument' });
  if (typeof handler !== 'function') throw bad('handler', 'must be a function (msg, ctx) => reply');
  if (message === null || typeof message !== 'object' || Array.isArray(message))
    throw bad('message', 'must be an object of message fields, e.g. { body: { text: "Hello" } }');
  const field = unknownKey(message, MESSAGE_KEYS);
  if (field !== undefined)
    throw bad(
      `message field "${field}"`,
      `is not a message field${didYouMean(field, MESSAGE_KEYS)}; the body goes in { body: … } (fields: ${MESSAGE_KEYS.join(', ')})`,
    );
  if (options === null || typeof options !== 'object' || Array.isArray(options))
    throw bad('options', 'must be an object');
  const option = unknownKey(options, OPTION_KEYS);
  if (option !== undefined)
    throw bad(`option "${option}"`, `is unknown${didYouMean(option, OPTION_KEYS)}; known: ${OPTION_KEYS.join(', ')}`);
  const timeoutMs = (options as InvokeOptions).timeoutMs;
  if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs >= 1 && timeoutMs <= 2_147_483_647))
    throw bad('option timeoutMs', `must be a number of milliseconds from 1 to 2147483647 (got ${String(timeoutMs)})`);
}

/** Runs `handler` once on `message` (completed by `testMessage`) and reports what would be sent. */
export async function invoke(
  handler: Handler,
  message: InvokeMessage = {},
  options: InvokeOptions = {},
): Promise<InvokeResult> {
  checkInvokeInput(handler, message, options);
  const self = options.self ?? message.recipient_key ?? Keypair.generate().publicKey;
  const full = testMessage(message, self);
  const encrypted = options.encrypted === true;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const replies: InvokeSent[] = [];
  const sent: InvokeSent[] = [];
  const logs: InvokeResult['logs'] = [];
  const uploads: InvokeUpload[] = [];
  // Seals nothing (a test reads the plaintext); what would have been sealed is marked `encrypted`.
  const codec: MessageCodec = {
    open: async (m) => ({ message: m, encrypted }),
    seal: async (body) => ({ bodyJson: body.bodyJson, contentType: body.contentType }),
  };
  const outgoing = new Map<string, EncodedSend>();
  const outbox = {
    async send(request: EncodedSend): Promise<SendResponse> {
      const id = randomUUID();
      outgoing.set(id, request);
      const now = new Date();
      return {
        message_id: id,
        status: 'sent',
        created_at: now.toISOString(),
        expires_at: new Date(now.getTime() + 86_400_000).toISOString(),
      };
    },
  };
  const record = (into: InvokeSent[], response: SendResponse, sealed: boolean): SendResponse => {
    const request = outgoing.get(response.message_id);
    if (request) into.push(sentOf(request, sealed, response.message_id));
    return response;
  };

  const run = new HandlerRun();
  const onAbort = (): void => run.abort(options.signal?.reason);
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(
    () => run.abort(new TimeoutError(`the handler did not finish within ${formatDuration(timeoutMs)}`)),
    timeoutMs,
  );
  const aborted = new Promise<never>((_, reject) => {
    if (run.aborted) reject(run.reason);
    else run.onAbort = reject;
  });
  aborted.catch(() => undefined);
  const real = handlerContext(
    {
      self,
      codec,
      outbox,
      resolve: options.resolveRecipient ?? ((to) => to),
      log: (_id, level, text, fields) => void logs.push({ level, message: safeText(text), fields: safeFields(fields) }),
      attachments: offlineAttachments(options.blobs ?? {}, uploads),
    },
    full,
    { message: full, encrypted },
    options.redelivered === true,
    run,
  );
  const ctx: HandlerContext = {
    ...real,
    reply: async (body, o) => record(replies, await real.reply(body, o), encrypted),
    send: async (to, body, o) => record(sent, await real.send(to, body, o), o?.encrypt === true),
  };

  let draft: ReplyDraft | null;
  let thrown: Error | undefined;
  try {
    const work = Promise.resolve().then(() => handler(cloneJson(full), ctx));
    work.catch(() => undefined);
    draft = draftReply(await Promise.race([work, aborted]));
  } catch (err) {
    thrown = err instanceof Error ? err : new Error(safeText(err));
    draft =
      err instanceof TimeoutError && run.reason === err
        ? errorDraft('timeout', thrown.message, 'timeout')
        : errorDraft(codeOf(err, 'handler_error'), safeText(thrown.message), 'error');
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
  }

  const result: InvokeResult = {
    outcome: draft ? draft.outcome : 'no_reply',
    reply: null,
    replies,
    sent,
    logs,
    uploads,
  };
  if (draft) {
    result.reply = {
      to: full.sender_key,
      body: JSON.parse(draft.bodyJson) as JsonValue,
      contentType: draft.contentType,
      threadId: full.thread_id ?? full.message_id,
      inReplyTo: full.message_id,
      encrypted,
      messageId: randomUUID(),
    };
    if (draft.attachments?.length) result.reply.attachments = draft.attachments;
    if (draft.error) result.error = draft.error;
  }
  if (thrown) result.thrown = thrown;
  return result;
}
