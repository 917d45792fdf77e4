/**
 * Webhook delivery signatures (docs/protocol.md §3.8): the relay signs the exact raw body of each delivery
 * with HMAC-SHA256 and sends it as lowercase hex in `X-M2M-Webhook-Signature`; a receiver
 * recomputes it over the bytes it received and compares in constant time. Relay and runner both
 * use this file, so they cannot disagree.
 *
 * Trade-offs: the HMAC key bytes are undocumented; our choice (the secret's UTF-8 bytes) lives in
 * `webhookKey` alone, so switching to the other plausible reading is a one-line change. The
 * timestamp header is not signed (§3.8), so `checkWebhookTimestamp` only rejects stale or
 * far-future deliveries; replays inside the window are caught by `delivery_id`/`message_id`
 * de-duplication, not here.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { charLength, longerThan, toBase64Url } from './encoding.js';
import { parseTimestamp } from './signing.js';

/** Delivery header names, lower-case as Node presents them (§3.8). */
export const WEBHOOK_HEADERS = {
  signature: 'x-m2m-webhook-signature',
  timestamp: 'x-m2m-webhook-timestamp',
  deliveryId: 'x-m2m-delivery-id',
} as const;

/** How far a delivery's timestamp may be from the receiver's clock (our choice, as for requests). */
export const WEBHOOK_TIMESTAMP_TOLERANCE_MS = 5 * 60_000;

/** Length bounds of a registered secret (§3.8, our choice). */
export const WEBHOOK_SECRET_LIMITS = { min: 16, max: 256 } as const;

const SIGNATURE_RE = /^[0-9a-f]{64}$/;
const encoder = new TextEncoder();

/**
 * The HMAC key for a webhook secret: the UTF-8 bytes of the secret string exactly as registered
 * (our choice; the docs' receiver example uses the secret as a literal byte string).
 *
 * The alternative reading: if the official relay keys the HMAC with the base64url-decoded secret
 * (32 bytes for a generated secret), return `Buffer.from(secret, 'base64url')` here instead. The
 * §3.8 vector for that reading is `6102599d…3df91e`; the test file keeps both vectors.
 */
export function webhookKey(secret: string): Uint8Array {
  return encoder.encode(secret);
}

/** `X-M2M-Webhook-Signature` for a raw body: lowercase hex HMAC-SHA256 (64 characters). */
export function webhookSignature(secret: string, rawBody: Uint8Array | string): string {
  return createHmac('sha256', webhookKey(secret)).update(rawBody).digest('hex');
}

/**
 * True when `signatureHeader` is the signature of exactly `rawBody` under `secret`. The header
 * must be 64 lowercase hex characters (anything else is refused without comparing); the digests
 * are compared with `timingSafeEqual`. Pass the body bytes as received, before any parsing.
 */
export function verifyWebhookSignature(
  secret: string,
  rawBody: Uint8Array | string,
  signatureHeader: string | null | undefined,
): boolean {
  if (typeof signatureHeader !== 'string' || !SIGNATURE_RE.test(signatureHeader)) return false;
  const expected = createHmac('sha256', webhookKey(secret)).update(rawBody).digest();
  const given = Buffer.from(signatureHeader, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Outcome of `checkWebhookTimestamp`; anything but `ok` means "answer 401/400, do not process". */
export type WebhookTimestampCheck = 'ok' | 'missing' | 'malformed' | 'too_old' | 'too_new';

/**
 * Checks `X-M2M-Webhook-Timestamp` (RFC 3339) against the receiver's clock: within
 * `toleranceMs` either way is `ok`.
 */
export function checkWebhookTimestamp(
  header: string | null | undefined,
  nowMs: number,
  toleranceMs: number = WEBHOOK_TIMESTAMP_TOLERANCE_MS,
): WebhookTimestampCheck {
  if (header === undefined || header === null || header === '') return 'missing';
  const at = parseTimestamp(header);
  if (at === undefined) return 'malformed';
  if (at < nowMs - toleranceMs) return 'too_old';
  if (at > nowMs + toleranceMs) return 'too_new';
  return 'ok';
}

/** A new webhook secret: 32 random bytes, base64url (43 characters), as §3.8 recommends. */
export function newWebhookSecret(random: (n: number) => Uint8Array = randomBytes): string {
  return toBase64Url(random(32));
}

/** True for a secret the relay accepts: a string of 16–256 characters. */
export function isWebhookSecret(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length >= WEBHOOK_SECRET_LIMITS.min &&
    charLength(value, WEBHOOK_SECRET_LIMITS.max) >= WEBHOOK_SECRET_LIMITS.min &&
    !longerThan(value, WEBHOOK_SECRET_LIMITS.max)
  );
}

/**
 * The body the relay POSTs (§3.8): `{"delivery_id": …, "message": …}` around the message's JSON
 * text as given (its body stays verbatim, byte for byte what the signature covers).
 */
export function encodeWebhookDelivery(deliveryId: string, messageJson: string): string {
  return `{"delivery_id":${JSON.stringify(deliveryId)},"message":${messageJson}}`;
}

/** A new delivery id, `dlv_` and 12 hex characters (the spec's example shape, our choice). */
export function newDeliveryId(random: (n: number) => Uint8Array = randomBytes): string {
  return `dlv_${Buffer.from(random(6)).toString('hex')}`;
}
