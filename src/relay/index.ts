/**
 * `mrp/relay`: a self-hostable MRP relay. `createRelay({ dataDir })` → `{ listen, close, url }`.
 *
 * Also the seams a deployment can replace (storage, bus, process-local state) with their types
 * and default implementations, and what a store written elsewhere needs: the record types and
 * the inbox policy it must apply inside `commit`. `test/relay/store.contract.ts` is the suite
 * such a store must pass.
 */

export { type MetricsFactory, Registry } from '../core/metrics.js';
// Blob stores for `createRelay({ blobStore })` (the file system's is the default; S3 as `mrp relay --blob-store s3://…`).
export {
  type BlobHead,
  type BlobReader,
  type BlobStore,
  BlobStoreError,
  type BlobStoreErrorCode,
  type PutOptions,
  type PutResult,
} from './blobs/blob-store.js';
export { FsBlobStore, type FsBlobStoreOptions } from './blobs/fs-blob-store.js';
export { S3BlobStore, type S3BlobStoreOptions, s3OptionsFromEnv } from './blobs/s3-blob-store.js';
export {
  type Bus,
  type BusEvent,
  type BusEventOf,
  type BusEventType,
  type BusListener,
  type DeliveredVia,
  InProcessBus,
  type InProcessBusOptions,
} from './bus.js';
export { type ConnectionRegistry, MemoryConnectionRegistry } from './connections.js';
export type { AclCache, AgentCache } from './directory.js';
export { type External, type ExternalOptions, openExternal } from './external.js';
export { type RateLimiter, type RateLimiterFactory, type RateScope, type RateState, SlidingWindow } from './limits.js';
export type { LogEntry, LogLevel, LogSink } from './log.js';
export { isLogLevel } from './log.js';
export { type Cache, Lru } from './lru.js';
export { PgBus, type PgBusOptions } from './pg-bus.js';
export { PgConnectionRegistry, PgRateLimiter, PgReplayCache, pgRateLimiter } from './pg-shared.js';
export { inboxRefusal } from './policy.js';
export { MemoryReplayCache, type ReplayCache } from './replay-cache.js';
export type {
  BodyMode,
  BytesReply,
  JsonReply,
  Reply,
  ReplyMode,
  Request,
  Route,
  StreamBody,
  TextReply,
} from './router.js';
export { createRelay, RELAY_DEFAULTS, type Relay, type RelayOptions } from './server.js';
export type { Services } from './services.js';
// External mode (PostgreSQL): the driver loads only when one of these opens a connection.
export { PgStore, type PgStoreOptions } from './store/pg-store.js';
export { SqliteStore, type SqliteStoreOptions } from './store/sqlite-store.js';
export type {
  AgentPage,
  AgentRecord,
  BlobQuota,
  BlobRecord,
  BlobUsage,
  ClaimOptions,
  CommitRefusal,
  CommitResult,
  DeliveryClaim,
  DeliveryCompletion,
  DeliveryFailure,
  DiscoverQuery,
  InboxFilter,
  InboxRefusal,
  InsertBlobResult,
  MessagePageRecords,
  MessagePosition,
  MessageRecord,
  ServeVerdict,
  StorageHealth,
  Store,
  TakeResult,
  WebhookRecord,
  WriteBatch,
} from './store/store.js';
export { CAPABILITY_TAGS_MAX, DISCOVER_PAGE_BYTES, MESSAGE_PAGE_BYTES } from './store/store.js';
