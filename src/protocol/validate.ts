/**
 * Validation of request bodies against the spec's rules and limits. The relay answers with the
 * error these functions throw; clients run the same checks before sending so mistakes are caught
 * locally with the same field names.
 *
 * Status rule (docs/protocol.md §3.4, §6): 400 `bad_request` when a value has the wrong JSON type or a send
 * parameter is out of range; 422 `unprocessable_entity` when a profile value is well-typed but
 * breaks a rule (enum, length, count, character set); 413 when a size limit is exceeded.
 * `details` is always `{field, reason}` with `field` a JSON path such as `capabilities[0].tags[1]`.
 */
import { MrpError } from '../core/errors.js';
import { ACL_ENTRY_TYPES, INBOX_POLICIES, LIMITS, TAG_RE, THREAD_ID_RE, VISIBILITIES } from './constants.js';
import { isPublicKey, longerThan } from './encoding.js';
import { publicKeyProblem } from './signing.js';
import type {
  AclEntryType,
  Attachment,
  Capability,
  InboxPolicy,
  JsonObject,
  JsonValue,
  ProfilePatch,
  Visibility,
} from './types.js';

export type ValidationStatus = 400 | 413 | 422;

const CODE_FOR_STATUS: Record<ValidationStatus, string> = {
  400: 'bad_request',
  413: 'payload_too_large',
  422: 'unprocessable_entity',
};

/** A request value that breaks a rule. `field` is a JSON path ('' for the whole body). */
export class ValidationError extends MrpError {
  override name = 'ValidationError';
  readonly status: ValidationStatus;
  readonly field: string;
  readonly reason: string;

  constructor(status: ValidationStatus, field: string, reason: string) {
    super('usage', CODE_FOR_STATUS[status], field ? `${field}: ${reason}` : reason, {
      details: { field, reason },
    });
    this.status = status;
    this.field = field;
    this.reason = reason;
  }
}

function fail(status: ValidationStatus, field: string, reason: string): never {
  throw new ValidationError(status, field, reason);
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function join(base: string, key: string | number): string {
  if (typeof key === 'number') return `${base}[${key}]`;
  return base ? `${base}.${key}` : key;
}

/** Serialised UTF-8 size of a JSON value. */
export function jsonByteLength(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? '');
}

// ── Messages ───────────────────────────────────────────────────────────────────────────────────

/** A send request with every default applied (what the relay stores). */
export interface NormalizedSend {
  recipient_key: string;
  content_type: string;
  body: JsonValue;
  /**
   * The body's JSON text exactly as the sender wrote it, when the request was parsed from text
   * (the relay stores and forwards this, never a re-serialisation of `body`).
   */
  body_text?: string;
  attachments: Attachment[];
  thread_id: string | null;
  in_reply_to: string | null;
  expires_in: number;
  metadata: JsonObject;
}

/** Checks a thread id chosen by a client (§4.4). */
export function isThreadId(value: unknown): value is string {
  return typeof value === 'string' && THREAD_ID_RE.test(value);
}

function optionalString(input: Record<string, unknown>, key: string, max: number, base = ''): string | undefined {
  const v = input[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') fail(400, join(base, key), 'must be a string');
  if (longerThan(v, max)) fail(400, join(base, key), `must be at most ${max} characters`);
  return v;
}

function nullableId(
  input: Record<string, unknown>,
  key: string,
  check: (s: string) => boolean,
  what: string,
): string | null {
  const v = input[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string' || !check(v)) fail(400, key, what);
  return v;
}

function validateAttachments(value: unknown): Attachment[] {
  if (value === undefined || value === null) return [];
  if (!Array.isArray(value)) fail(400, 'attachments', 'must be an array');
  if (value.length > LIMITS.maxAttachments) {
    // Well-formed but too many: semantic, like too many capabilities (issue 11: "≤ 10 … else 422").
    fail(422, 'attachments', `at most ${LIMITS.maxAttachments} attachments per message`);
  }
  return value.map((item, i) => {
    const field = join('attachments', i);
    if (!isPlainObject(item)) fail(400, field, 'must be an object');
    const blobId = item['blob_id'];
    if (typeof blobId !== 'string' || blobId.length === 0 || blobId.length > 128) {
      fail(400, join(field, 'blob_id'), 'must be a blob id string');
    }
    for (const key of ['filename', 'content_type', 'dek_enc', 'dek_ct']) optionalString(item, key, 4096, field);
    if (item['encrypted'] !== undefined && typeof item['encrypted'] !== 'boolean') {
      fail(400, join(field, 'encrypted'), 'must be a boolean');
    }
    return { ...item, blob_id: blobId } as Attachment;
  });
}

/**
 * Checks a peer's public key (a recipient, an ACL peer): well-formed, and a usable Ed25519 point.
 * Small-order points (such as the identity) are refused: anyone can sign as them.
 */
function checkPeerKey(value: unknown, field: string): string {
  if (!isPublicKey(value)) fail(400, field, 'must be a 43-character base64url public key');
  const problem = publicKeyProblem(value);
  if (problem) fail(400, field, `is not a usable Ed25519 public key (${problem.replace('_', '-')} point)`);
  return value;
}

/**
 * Validates a `POST /v1/messages` body (also the fields of an inline `send` frame) and applies
 * the defaults. Throws ValidationError. `bodyText` is the body's JSON text as received: its bytes
 * are what the size limit counts, and it is kept in `body_text`.
 */
export function validateSendRequest(
  input: unknown,
  maxBodyBytes: number = LIMITS.maxBodyBytes,
  bodyText?: string,
): NormalizedSend {
  if (!isPlainObject(input)) fail(400, '', 'the request body must be a JSON object');
  const recipient = input['recipient_key'];
  if (recipient === undefined) fail(400, 'recipient_key', 'is required');
  const recipientKey = checkPeerKey(recipient, 'recipient_key');

  const contentType = optionalString(input, 'content_type', LIMITS.contentTypeMax) ?? 'application/json';
  if (contentType.length === 0) fail(400, 'content_type', 'must not be empty');

  const attachments = validateAttachments(input['attachments']);
  const hasBody = Object.hasOwn(input, 'body');
  if (!hasBody && attachments.length === 0) fail(400, 'body', 'is required unless attachments are given');
  const body = (hasBody ? input['body'] : null) as JsonValue;
  const text = hasBody ? bodyText : undefined;
  if (hasBody && (text === undefined ? jsonByteLength(body) : Buffer.byteLength(text)) > maxBodyBytes) {
    fail(413, 'body', `the body is larger than ${maxBodyBytes} bytes; upload big data as a blob`);
  }

  const threadId = nullableId(
    input,
    'thread_id',
    isThreadId,
    'must be at most 128 characters from A-Z a-z 0-9 _ - . :',
  );
  const inReplyTo = nullableId(input, 'in_reply_to', (s) => s.length > 0 && s.length <= 128, 'must be a message id');

  let expiresIn: number = LIMITS.ttlDefaultSeconds;
  const ttl = input['expires_in'];
  if (ttl !== undefined && ttl !== null) {
    if (typeof ttl !== 'number' || !Number.isInteger(ttl))
      fail(400, 'expires_in', 'must be an integer number of seconds');
    if (ttl < LIMITS.ttlMinSeconds || ttl > LIMITS.ttlMaxSeconds) {
      fail(400, 'expires_in', `must be between ${LIMITS.ttlMinSeconds} and ${LIMITS.ttlMaxSeconds} seconds`);
    }
    expiresIn = ttl;
  }

  const metadata = input['metadata'];
  if (metadata !== undefined && metadata !== null && !isPlainObject(metadata))
    fail(400, 'metadata', 'must be an object');

  return {
    recipient_key: recipientKey,
    content_type: contentType,
    body,
    ...(text === undefined ? {} : { body_text: text }),
    attachments,
    thread_id: threadId,
    in_reply_to: inReplyTo,
    expires_in: expiresIn,
    metadata: (metadata ?? {}) as JsonObject,
  };
}

// ── Profiles ───────────────────────────────────────────────────────────────────────────────────

function checkTag(tag: unknown, field: string): string {
  if (typeof tag !== 'string') fail(400, field, 'must be a string');
  if (!TAG_RE.test(tag)) fail(422, field, 'tags are 3-64 characters from A-Z a-z 0-9 _ : . -');
  return tag;
}

/** Validates one capability; a bare string `s` becomes `{name: s, description: "", tags: [s]}`. */
export function validateCapability(input: unknown, field: string): Capability {
  if (typeof input === 'string') {
    const tag = checkTag(input, field);
    return { name: tag, description: '', tags: [tag] };
  }
  if (!isPlainObject(input)) fail(400, field, 'must be an object or a tag string');
  const name = input['name'];
  if (typeof name !== 'string') fail(400, join(field, 'name'), 'is required and must be a string');
  if (name.length < 1 || longerThan(name, LIMITS.capabilityNameMax)) {
    fail(422, join(field, 'name'), `must be 1-${LIMITS.capabilityNameMax} characters`);
  }
  const description = input['description'] ?? '';
  if (typeof description !== 'string') fail(400, join(field, 'description'), 'must be a string');
  if (longerThan(description, LIMITS.capabilityDescriptionMax)) {
    fail(422, join(field, 'description'), `must be at most ${LIMITS.capabilityDescriptionMax} characters`);
  }
  const tagsInput = input['tags'] ?? [];
  if (!Array.isArray(tagsInput)) fail(400, join(field, 'tags'), 'must be an array of strings');
  if (tagsInput.length > LIMITS.maxTagsPerCapability) {
    fail(422, join(field, 'tags'), `at most ${LIMITS.maxTagsPerCapability} tags per capability`);
  }
  const tags = tagsInput.map((t, i) => checkTag(t, join(join(field, 'tags'), i)));
  const capability: Capability = { name, description, tags };
  const schema = input['input_schema'];
  if (schema !== undefined && schema !== null) {
    if (!isPlainObject(schema)) fail(400, join(field, 'input_schema'), 'must be a JSON object');
    if (jsonByteLength(schema) > LIMITS.inputSchemaMaxBytes) {
      fail(422, join(field, 'input_schema'), `must serialise to at most ${LIMITS.inputSchemaMaxBytes} bytes`);
    }
    capability.input_schema = schema as JsonObject;
  }
  const version = input['version'];
  if (version !== undefined && version !== null) {
    if (typeof version !== 'string') fail(400, join(field, 'version'), 'must be a string');
    if (longerThan(version, LIMITS.capabilityVersionMax)) {
      fail(422, join(field, 'version'), `must be at most ${LIMITS.capabilityVersionMax} characters`);
    }
    capability.version = version;
  }
  return capability;
}

export function validateCapabilities(input: unknown, field = 'capabilities'): Capability[] {
  if (!Array.isArray(input)) fail(400, field, 'must be an array');
  if (input.length > LIMITS.maxCapabilities)
    fail(422, field, `at most ${LIMITS.maxCapabilities} capabilities per agent`);
  return input.map((c, i) => validateCapability(c, join(field, i)));
}

export function validateMetadata(input: unknown, field = 'metadata'): Record<string, string> {
  if (!isPlainObject(input)) fail(400, field, 'must be an object of string values');
  const keys = Object.keys(input);
  if (keys.length > LIMITS.maxMetadataKeys) fail(422, field, `at most ${LIMITS.maxMetadataKeys} keys`);
  const out: Record<string, string> = {};
  for (const key of keys) {
    const value = input[key];
    if (key.length < 1 || longerThan(key, LIMITS.metadataKeyMax)) {
      fail(422, join(field, key), `keys must be 1-${LIMITS.metadataKeyMax} characters`);
    }
    if (typeof value !== 'string') fail(400, join(field, key), 'values must be strings');
    if (longerThan(value, LIMITS.metadataValueMax)) {
      fail(422, join(field, key), `values must be at most ${LIMITS.metadataValueMax} characters`);
    }
    out[key] = value;
  }
  return out;
}

function checkEnum<T extends string>(value: unknown, allowed: readonly T[], field: string): T {
  if (typeof value !== 'string') fail(400, field, 'must be a string');
  if (!(allowed as readonly string[]).includes(value)) fail(422, field, `must be one of ${allowed.join(', ')}`);
  return value as T;
}

/** Validates a `PATCH /v1/agents/{key}` body. Unknown fields are ignored. */
export function validateProfilePatch(input: unknown): ProfilePatch {
  if (!isPlainObject(input)) fail(400, '', 'the request body must be a JSON object');
  const patch: ProfilePatch = {};
  if (Object.hasOwn(input, 'display_name')) {
    const name = input['display_name'];
    if (name !== null && typeof name !== 'string') fail(400, 'display_name', 'must be a string or null');
    if (typeof name === 'string' && longerThan(name, LIMITS.maxDisplayName)) {
      fail(422, 'display_name', `must be at most ${LIMITS.maxDisplayName} characters`);
    }
    patch.display_name = name;
  }
  if (input['visibility'] !== undefined) {
    patch.visibility = checkEnum<Visibility>(input['visibility'], VISIBILITIES, 'visibility');
  }
  if (input['inbox_policy'] !== undefined) {
    patch.inbox_policy = checkEnum<InboxPolicy>(input['inbox_policy'], INBOX_POLICIES, 'inbox_policy');
  }
  if (input['metadata'] !== undefined) patch.metadata = validateMetadata(input['metadata']);
  if (input['capabilities'] !== undefined) patch.capabilities = validateCapabilities(input['capabilities']);
  return patch;
}

// ── ACL ────────────────────────────────────────────────────────────────────────────────────────

/** Validates a `PUT /v1/agents/{key}/acl` body. */
export function validateAclPut(input: unknown): { peer_key: string; entry_type: AclEntryType } {
  if (!isPlainObject(input)) fail(400, '', 'the request body must be a JSON object');
  const peer = checkPeerKey(input['peer_key'], 'peer_key');
  const type = input['entry_type'];
  if (typeof type !== 'string' || !(ACL_ENTRY_TYPES as readonly string[]).includes(type)) {
    fail(400, 'entry_type', 'must be "allow" or "block"');
  }
  return { peer_key: peer, entry_type: type as AclEntryType };
}
