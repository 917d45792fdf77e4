/**
 * Wire types, exactly as on the wire (docs/protocol.md §3–§6): snake_case field names, `null` where the relay
 * sends null. Nothing here is camelCased.
 */
import type { ACL_ENTRY_TYPES, INBOX_POLICIES, MESSAGE_STATUSES, VISIBILITIES } from './constants.js';

/** Any JSON value. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export type MessageStatus = (typeof MESSAGE_STATUSES)[number];
export type InboxPolicy = (typeof INBOX_POLICIES)[number];
export type Visibility = (typeof VISIBILITIES)[number];
export type AclEntryType = (typeof ACL_ENTRY_TYPES)[number];

// ── §3.3 Health ────────────────────────────────────────────────────────────────────────────────

export interface HealthResponse {
  status: 'ok' | 'degraded';
  version: string;
  timestamp: string;
}

export interface HealthDetailsResponse extends HealthResponse {
  mode: string;
  components: Record<string, { status: string; [key: string]: JsonValue }>;
}

// ── §3.4 Agents ────────────────────────────────────────────────────────────────────────────────

export interface Capability {
  name: string;
  description: string;
  tags: string[];
  input_schema?: JsonObject;
  version?: string;
}

export interface AgentProfile {
  public_key: string;
  display_name: string | null;
  status: 'active' | 'suspended';
  visibility: Visibility;
  inbox_policy: InboxPolicy;
  created_at: string;
  last_active_at: string | null;
  metadata: Record<string, string>;
  capabilities: Capability[];
}

/** `PATCH /v1/agents/{key}` body: any subset. */
export interface ProfilePatch {
  display_name?: string | null;
  visibility?: Visibility;
  inbox_policy?: InboxPolicy;
  metadata?: Record<string, string>;
  capabilities?: Capability[];
}

export interface AgentCapabilitiesResponse {
  public_key: string;
  capabilities: Capability[];
}

// ── §3.5 Discovery ─────────────────────────────────────────────────────────────────────────────

export interface DiscoveredAgent {
  public_key: string;
  display_name: string | null;
  last_active_at: string | null;
  capabilities: Capability[];
}

export interface Page {
  has_more: boolean;
  next_cursor: string | null;
}

export interface DiscoverResponse extends Page {
  agents: DiscoveredAgent[];
}

export interface CapabilityTagsResponse {
  capabilities: Array<{ tag: string; agent_count: number }>;
  /** Our relay: more tags are in use than the answer lists (it lists the most used); narrow with `prefix`. */
  has_more?: boolean;
}

// ── §3.6 Messages ──────────────────────────────────────────────────────────────────────────────

export interface Attachment {
  blob_id: string;
  filename?: string;
  content_type?: string;
  size?: number;
  hash?: string;
  encrypted?: boolean;
  dek_enc?: string;
  dek_ct?: string;
}

export interface Message {
  message_id: string;
  sender_key: string;
  recipient_key: string;
  content_type: string;
  body: JsonValue;
  attachments: Attachment[];
  thread_id: string | null;
  in_reply_to: string | null;
  metadata: JsonObject;
  status: MessageStatus;
  created_at: string;
  expires_at: string;
  delivered_at: string | null;
}

/** `POST /v1/messages` body (and the fields of an inline `send` frame). */
export interface SendRequest {
  recipient_key: string;
  content_type?: string;
  body?: JsonValue;
  attachments?: Attachment[];
  thread_id?: string | null;
  in_reply_to?: string | null;
  expires_in?: number;
  metadata?: JsonObject;
}

export interface SendResponse {
  message_id: string;
  status: MessageStatus;
  created_at: string;
  expires_at: string;
}

export interface PollResponse extends Page {
  messages: Message[];
}

export interface MessageStatusResponse {
  message_id: string;
  status: MessageStatus;
  created_at: string;
  delivered_at: string | null;
  expires_at: string;
}

export interface ThreadResponse extends Page {
  thread_id: string;
  messages: Message[];
}

// ── §3.7 Blobs, §3.8 Webhooks ──────────────────────────────────────────────────────────────────

export interface BlobInfo {
  blob_id: string;
  hash: string;
  size: number;
  content_type: string;
  created_at: string;
  expires_at: string;
}

export interface WebhookConfig {
  url: string;
  enabled: boolean;
  consecutive_failures: number;
  created_at: string;
}

// ── §3.9 ACL ───────────────────────────────────────────────────────────────────────────────────

export interface AclEntry {
  id: number;
  owner_key: string;
  peer_key: string;
  entry_type: AclEntryType;
  created_at: string;
}

export interface AclListResponse extends Page {
  entries: AclEntry[];
}

// ── §6 Errors ──────────────────────────────────────────────────────────────────────────────────

export interface ErrorBody {
  code: string;
  message: string;
  details?: JsonObject;
  request_id: string;
}

export interface ErrorEnvelope {
  error: ErrorBody;
}

/** Error object inside WebSocket frames (no request_id required). */
export interface FrameError {
  code: string;
  message: string;
  details?: JsonObject;
}

// ── §5 WebSocket frames ────────────────────────────────────────────────────────────────────────

export interface AuthFrame {
  type: 'auth';
  public_key: string;
  timestamp: string;
  signature: string;
}

export interface AckFrame {
  type: 'ack';
  message_id: string;
}

/** Inline send (§5.4): the `POST /v1/messages` fields plus an optional `request_id`. */
export interface SendFrame extends SendRequest {
  type: 'send';
  request_id?: string;
}

export interface PingFrame {
  type: 'ping';
  ts?: JsonValue;
}

export interface PongFrame {
  type: 'pong';
  ts?: JsonValue;
}

export type ClientFrame = AuthFrame | AckFrame | SendFrame | PingFrame | PongFrame;

export type AuthResultFrame =
  | { type: 'auth_result'; status: 'ok'; public_key: string }
  | { type: 'auth_result'; status: 'error'; error: FrameError };

export interface MessageFrame {
  type: 'message';
  message: Message;
}

export type SendResultFrame =
  | ({ type: 'send_result'; request_id?: string; status: 'ok' } & Omit<SendResponse, 'status'>)
  | { type: 'send_result'; request_id?: string; status: 'error'; error: FrameError };

export interface ErrorFrame {
  type: 'error';
  error: FrameError;
  request_id?: string;
}

export type ServerFrame = AuthResultFrame | MessageFrame | SendResultFrame | ErrorFrame | PingFrame | PongFrame;
