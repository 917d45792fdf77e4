/**
 * The `ctx` a handler gets (see handler.ts): its logger, its abort signal, its attachments
 * (`ctx.download`, `ctx.upload`: runtime/attachments.ts), and the two ways out (`ctx.reply`,
 * `ctx.send`, both able to carry attachments). Both go through the same seam as the handler's return value: the
 * body is checked, sealed once by the message codec (so a reply to an encrypted message is
 * encrypted too), and the sealed bytes go to the outbox, which sends and resends exactly them.
 */

import type { MessageCodec, OpenedMessage } from '../client/codec.js';
import { LazyAbort } from '../core/async.js';
import { AbortError, MrpError } from '../core/errors.js';
import type { EncodedSend } from '../protocol/frames.js';
import type { Attachment, JsonValue, Message, SendResponse } from '../protocol/types.js';
import { type AttachmentPort, checkAttachment, uploadBytes } from './attachments.js';
import type { HandlerContext, HandlerLogger, SendOptions } from './handler.js';
import type { Outbox } from './outbox.js';
import { attachmentsProblem, encodedReplyTo, replyProblem } from './reply.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export interface ContextDeps {
  self: string;
  codec: MessageCodec;
  /** Where `ctx.reply`/`ctx.send` go: the runtime's outbox (or `invoke`'s record of what would be sent). */
  outbox: Pick<Outbox, 'send'>;
  /** Turns a `ctx.send` recipient (a key or a contact name) into a key. */
  resolve: (to: string) => string;
  /** Never throws (the runtime guards its listeners). */
  log: (messageId: string, level: LogLevel, text: string, fields: Record<string, unknown> | undefined) => void;
  /** Where `ctx.upload`/`ctx.download` go (runtime/attachments.ts). */
  attachments: AttachmentPort;
}

/** Attachments for `ctx.reply`/`ctx.send`, checked, or the error they throw. */
function checkedAttachments(attachments: readonly Attachment[] | undefined): Attachment[] | undefined {
  if (attachments === undefined) return undefined;
  if (!Array.isArray(attachments)) throw new MrpError('handler', 'invalid_reply', 'attachments must be an array');
  const problem = attachmentsProblem(attachments);
  if (problem) throw new MrpError('handler', 'invalid_reply', problem);
  return attachments.map((a) => ({ ...a }));
}

/** The body's JSON text, or the error `ctx.reply`/`ctx.send` throw (`invalid_reply`, `reply_too_large`). */
function checked(body: JsonValue, what: 'reply' | 'message'): string {
  let json: string | undefined;
  try {
    json = JSON.stringify(body);
  } catch (err) {
    throw new MrpError('handler', 'invalid_reply', `the body is not JSON (${(err as Error).message})`);
  }
  if (json === undefined) throw new MrpError('handler', 'invalid_reply', 'the body is not JSON');
  const problem = replyProblem(json, what);
  if (problem) throw new MrpError('handler', problem.code, problem.message);
  return json;
}

/**
 * The abort state of one handler run: `ctx.signal` is made only when a handler asks for it
 * (`LazyAbort`), and the runtime races the handler through `onAbort` rather than a listener.
 */
export class HandlerRun extends LazyAbort {
  /** Called once, with the reason, when the run is aborted (the runtime's race against the handler). */
  onAbort: ((reason: unknown) => void) | undefined;

  override abort(reason: unknown): void {
    if (this.aborted) return;
    super.abort(reason);
    const onAbort = this.onAbort;
    this.onAbort = undefined;
    onAbort?.(this.reason);
  }
}

/**
 * The context for one handler run on `message` (the runtime's own copy: replies go to its
 * sender whatever the handler does to the copy it got). `opened` is what the codec made of it.
 */
export function handlerContext(
  deps: ContextDeps,
  message: Message,
  opened: OpenedMessage,
  redelivered: boolean,
  run: HandlerRun,
): HandlerContext {
  let logger: HandlerLogger | undefined;
  const live = (): void => {
    // A handler that timed out (or is being shut down) may still run; it must not send.
    if (run.aborted) throw run.reason instanceof Error ? run.reason : new AbortError('handler aborted');
  };
  return {
    self: deps.self,
    get signal() {
      return run.signal;
    },
    get log() {
      if (!logger) {
        const log = (level: LogLevel) => (text: string, fields?: Record<string, unknown>) =>
          deps.log(message.message_id, level, text, fields);
        logger = { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') };
      }
      return logger;
    },
    redelivered,
    encrypted: opened.encrypted,
    reply: async (body, options = {}) => {
      live();
      const bodyJson = checked(body, 'reply');
      const attachments = checkedAttachments(options.attachments);
      const sealed = await deps.codec.seal(
        { bodyJson, contentType: options.contentType ?? 'application/json' },
        { to: message.sender_key, encrypt: opened.encrypted, inReplyTo: message.message_id },
      );
      live();
      const request = encodedReplyTo(message, sealed, attachments);
      return deps.outbox.send(request, { threadId: request.thread_id! });
    },
    download: async (attachment, options = {}) => {
      live();
      return deps.attachments.download(message, checkAttachment(attachment), options, run.signal);
    },
    upload: async (data, options = {}) => {
      live();
      const bytes = uploadBytes(data);
      const encrypt = options.encrypt ?? opened.encrypted;
      const to = options.to === undefined ? message.sender_key : deps.resolve(options.to);
      const contentType = options.contentType ?? 'application/octet-stream';
      const attachment = await deps.attachments.upload(
        message,
        bytes,
        { ...(options.filename === undefined ? {} : { filename: options.filename }), contentType, encrypt, to },
        run.signal,
      );
      live();
      return attachment;
    },
    send: async (to: string, body: JsonValue, options: SendOptions = {}): Promise<SendResponse> => {
      live();
      const bodyJson = checked(body, 'message');
      const attachments = checkedAttachments(options.attachments);
      const recipient = deps.resolve(to);
      const sealed = await deps.codec.seal(
        { bodyJson, contentType: options.contentType ?? 'application/json' },
        {
          to: recipient,
          encrypt: options.encrypt === true,
          ...(options.inReplyTo === undefined ? {} : { inReplyTo: options.inReplyTo }),
        },
      );
      live();
      const request: EncodedSend = {
        recipient_key: recipient,
        content_type: sealed.contentType,
        body_json: sealed.bodyJson,
      };
      if (attachments?.length) request.attachments = attachments;
      if (options.threadId !== undefined) request.thread_id = options.threadId;
      if (options.inReplyTo !== undefined) request.in_reply_to = options.inReplyTo;
      if (options.ttl !== undefined) request.expires_in = options.ttl;
      if (options.metadata !== undefined) request.metadata = options.metadata;
      // Within a thread a lost answer can be checked; a send outside any thread cannot.
      return deps.outbox.send(request, options.threadId === undefined ? undefined : { threadId: options.threadId });
    },
  };
}
