/**
 * The `mrp` library: what a handler author imports. First `Agent` (an identity that announces,
 * serves a handler, iterates its inbox, sends and keeps its ACL), then the parts it is made of:
 * protocol types and codecs, signing, errors, the relay client (HTTP, WebSocket session,
 * poller), the message source and codec seams, and the handler runtime. Loads no relay, no
 * SQLite and no HPKE (`mrp/testing` and `mrp/relay` do, when imported).
 */

export {
  downloadAttachmentBytes,
  type OpenedAttachment,
  openAttachment,
  type PreparedUpload,
  sealUpload,
} from './client/blob-e2e.js';
export { fileBlobInput } from './client/blob-file.js';
export type { BlobHead, BlobInfo, BlobInput, DownloadOptions, UploadOptions } from './client/blobs.js';
export {
  type MessageCodec,
  type OpenedMessage,
  type PlainBody,
  plainCodec,
  plainSend,
  type SealContext,
  type SealedBody,
} from './client/codec.js';
export { e2eCodec, isEncryptedMessage } from './client/e2e-codec.js';
export { buildTarget, type RateInfo, RelayClient, type RelayClientOptions } from './client/http.js';
export { Poller, type PollerOptions } from './client/poller.js';
export { recoveryFor, Session, type SessionOptions, type SessionStatus } from './client/session.js';
export {
  type Batch,
  type DeliveryReceipt,
  type MessageSource,
  type OpenTake,
  PollSource,
  type PollSourceOptions,
  type SourceConsumer,
  type SourceEvents,
  type SourceStatus,
  WebSocketSource,
} from './client/source.js';
export {
  deliveryIsFresh,
  type RegisterWebhook,
  WEBHOOK_SOURCE_DEFAULTS,
  WebhookSource,
  type WebhookSourceOptions,
} from './client/webhook-source.js';
export { Backoff, type BackoffOptions } from './core/backoff.js';
export { type Clock, ManualClock, systemClock, type Timer } from './core/clock.js';
export { type EventMap, type Listenable, TypedEmitter } from './core/emitter.js';
export * from './core/errors.js';
export * from './protocol/constants.js';
export {
  type Contact,
  type ContactBook,
  findContact,
  parseContacts,
  resolveRecipient,
  serializeContacts,
} from './protocol/contacts.js';
export {
  decodePublicKey,
  fromBase64Url,
  isPublicKey,
  shortKey,
  toBase64Url,
} from './protocol/encoding.js';
export { errorEnvelope, relayErrorFromFrame, relayErrorFromResponse } from './protocol/envelope.js';
export type { EncodedSend } from './protocol/frames.js';
export { FrameParseError, normalizeMessage, parseClientFrame, parseServerFrame } from './protocol/frames.js';
export { decodeKeyFile, encodeKeyFile, type KeyFileFormat } from './protocol/keyfile.js';
export {
  authFrame,
  bodyHash,
  canonicalRequest,
  formatTimestamp,
  Keypair,
  parseTimestamp,
  type SignedHeaders,
  signRequest,
  verifySignature,
  wsAuthString,
} from './protocol/signing.js';
export type * from './protocol/types.js';
export {
  ValidationError,
  validateProfilePatch,
  validateSendRequest,
} from './protocol/validate.js';
export {
  checkWebhookTimestamp,
  isWebhookSecret,
  newWebhookSecret,
  verifyWebhookSignature,
  WEBHOOK_HEADERS,
  WEBHOOK_SECRET_LIMITS,
  WEBHOOK_TIMESTAMP_TOLERANCE_MS,
  type WebhookTimestampCheck,
  webhookSignature,
} from './protocol/webhook.js';
export {
  Agent,
  type AgentCapability,
  type AgentEvents,
  type AgentMessage,
  type AgentOptions,
  type AgentSendOptions,
  type MessagesOptions as AgentMessagesOptions,
  type RunOptions as AgentRunOptions,
} from './runtime/agent.js';
export {
  type Assembled,
  type AssembleOptions,
  assembleRuntime,
  createSource,
  defaultCodec,
  type SourceOptions,
} from './runtime/assemble.js';
export {
  type CtxDownloadOptions,
  type CtxUploadOptions,
  isReplyWithAttachments,
  ReplyWithAttachments,
  withAttachments,
} from './runtime/attachments.js';
export type { Outcome, RuntimeEvents } from './runtime/events.js';
export type { Handler, HandlerContext, HandlerLogger, HandlerResult, SendOptions } from './runtime/handler.js';
export { loadHandler } from './runtime/handler.js';
export { type KeyFileIdentity, loadOrCreateKeyFile } from './runtime/identity.js';
export {
  type InvokeMessage,
  type InvokeOptions,
  type InvokeResult,
  type InvokeSent,
  type InvokeUpload,
  invoke,
  testMessage,
} from './runtime/invoke.js';
export { Journal, type JournalOptions } from './runtime/journal.js';
export { AGENT_MODES, type AgentMode, parseMode } from './runtime/mode.js';
export { Outbox } from './runtime/outbox.js';
export {
  type HandledEvent,
  planReply,
  RUNTIME_DEFAULTS,
  Runtime,
  type RuntimeOptions,
  replyTo,
} from './runtime/runtime.js';
