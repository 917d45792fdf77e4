/** Wire constants from docs/protocol.md. Relay and client both read them from here. */

export const DEFAULT_RELAY_URL = 'https://relay.mrphub.io';

/** Paths (§3.1). Functions build the parameterised ones; callers encode segments. */
export const PATHS = {
  health: '/v1/health',
  healthReady: '/v1/health/ready',
  healthLive: '/v1/health/live',
  healthDetails: '/v1/health/details',
  openapi: '/v1/openapi.json',
  ws: '/v1/ws',
  discover: '/v1/discover',
  capabilities: '/v1/capabilities',
  messages: '/v1/messages',
  blobs: '/v1/blobs',
  agent: (key: string) => `/v1/agents/${encodeURIComponent(key)}`,
  agentCapabilities: (key: string) => `/v1/agents/${encodeURIComponent(key)}/capabilities`,
  acl: (key: string) => `/v1/agents/${encodeURIComponent(key)}/acl`,
  aclEntry: (key: string, peer: string) => `/v1/agents/${encodeURIComponent(key)}/acl/${encodeURIComponent(peer)}`,
  webhook: (key: string) => `/v1/agents/${encodeURIComponent(key)}/webhook`,
  message: (id: string) => `/v1/messages/${encodeURIComponent(id)}`,
  messageStatus: (id: string) => `/v1/messages/${encodeURIComponent(id)}/status`,
  thread: (id: string) => `/v1/messages/threads/${encodeURIComponent(id)}`,
} as const;

/** Header names, lower-case as Node presents them (§2.1, §3.2, §7). */
export const HEADERS = {
  publicKey: 'x-m2m-public-key',
  timestamp: 'x-m2m-timestamp',
  signature: 'x-m2m-signature',
  requestId: 'x-request-id',
  rateLimitLimit: 'x-ratelimit-limit',
  rateLimitRemaining: 'x-ratelimit-remaining',
  rateLimitReset: 'x-ratelimit-reset',
  retryAfter: 'retry-after',
  storageUsed: 'x-m2m-storage-used',
  storageLimit: 'x-m2m-storage-limit',
  blobHash: 'x-m2m-blob-hash',
  /** Our extension (docs/protocol.md §3.6): echoes a poll's `take` id when the relay records it. */
  take: 'x-mrp-take',
} as const;

/** A poll's `take` id (our extension): 1–64 characters of base64url. */
export const TAKE_ID_RE = /^[A-Za-z0-9_-]{1,64}$/;

const MiB = 1024 * 1024;

/** Size, count and range limits (§3.4, §3.6, §3.7, §7). */
export const LIMITS = {
  maxBodyBytes: 1 * MiB,
  /**
   * Deepest nesting accepted in any JSON from outside (a whole frame, request body or file, so a
   * message body inside a send may nest slightly less); our choice.
   */
  maxJsonDepth: 128,
  /** Bytes a WebSocket may send before it has authenticated (an auth frame is ~250); our choice. */
  wsPreAuthBytes: 8 * 1024,
  /** A pong echoes `ts` only up to this many bytes of JSON (before auth: a number or string up to 64). */
  pongTsMaxBytes: 1024,
  pongTsMaxBytesPreAuth: 64,
  /** `GET /v1/discover`: at most this many `tag` parameters and `q` words; our choice. */
  discoverMaxTags: 20,
  discoverMaxWords: 16,
  maxEnvelopeBytes: 2 * MiB,
  maxAttachments: 10,
  ttlMinSeconds: 1,
  ttlMaxSeconds: 2_592_000,
  ttlDefaultSeconds: 604_800,
  maxDisplayName: 256,
  maxCapabilities: 20,
  capabilityNameMax: 64,
  capabilityDescriptionMax: 1024,
  maxTagsPerCapability: 20,
  tagMin: 3,
  tagMax: 64,
  capabilityVersionMax: 32,
  inputSchemaMaxBytes: 16 * 1024,
  maxMetadataKeys: 16,
  metadataKeyMax: 64,
  metadataValueMax: 256,
  threadIdMax: 128,
  contentTypeMax: 255,
  pollLimitDefault: 50,
  pollLimitMax: 100,
  threadLimitDefault: 50,
  threadLimitMax: 100,
  discoverLimitDefault: 20,
  discoverLimitMax: 100,
  aclLimitDefault: 100,
  aclLimitMax: 1000,
  pollWaitMaxSeconds: 30,
  maxBlobBytes: 100 * MiB,
  maxBlobStorageBytes: 1024 * MiB,
  maxBlobsPerAgent: 100,
} as const;

/** Rate limits per agent per minute (§7); every one is a relay setting. */
export const RATE_LIMITS = {
  sendPerMinute: 30,
  receivePerMinute: 120,
  requestsPerMinute: 300,
  wsConnectionsPerAgent: 2,
} as const;

/** Timing rules (§2.3, §5.1, §5.5, §4.3). */
export const TIMING = {
  timestampToleranceMs: 5 * 60_000,
  replayWindowMs: 10 * 60_000,
  wsAuthTimeoutMs: 10_000,
  heartbeatIntervalMs: 30_000,
  heartbeatTimeoutMs: 10_000,
  expiredRetentionMs: 24 * 3_600_000,
  /** A blob lives this long after its upload unless a message extends it (§3.7, our choice). */
  blobTtlMs: 7 * 86_400_000,
  lastActiveResolutionMs: 60_000,
} as const;

/** WebSocket close codes (§5.6). */
export const CLOSE_CODES = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 4000,
  authFailed: 4001,
  tooManyConnections: 4002,
  suspended: 4003,
  heartbeatTimeout: 4005,
} as const;

export const CONTENT_TYPES = {
  json: 'application/json',
  request: 'application/x-mrp-request+json',
  event: 'application/x-mrp-event+json',
  status: 'application/x-mrp-status+json',
  encrypted: 'application/x-m2m-encrypted',
} as const;

/** SHA-256 of the empty string, base64url (§2.2). */
export const EMPTY_BODY_HASH = '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU';

/** A public key: 32 bytes, base64url without padding (§1.1). */
export const PUBLIC_KEY_RE = /^[A-Za-z0-9_-]{43}$/;
/** Capability tags (§3.4). */
export const TAG_RE = /^[A-Za-z0-9_:.-]{3,64}$/;
/** Client-chosen thread ids (§4.4). */
export const THREAD_ID_RE = /^[A-Za-z0-9_.:-]{1,128}$/;

export const MESSAGE_STATUSES = ['sent', 'delivered', 'expired'] as const;
export const INBOX_POLICIES = ['open', 'closed', 'allowlist', 'blocklist'] as const;
export const VISIBILITIES = ['public', 'private'] as const;
export const ACL_ENTRY_TYPES = ['allow', 'block'] as const;

/** Defaults the relay gives a freshly created agent (§3.4). */
export const AGENT_DEFAULTS = {
  visibility: 'private',
  inbox_policy: 'blocklist',
} as const;
