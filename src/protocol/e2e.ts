/**
 * End-to-end encryption of message bodies and blob keys (docs/protocol.md §8): HPKE Auth mode (RFC 9180,
 * mode 0x02) with DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305, keyed by X25519
 * keys converted from the agents' Ed25519 identities.
 *
 * Trade-offs:
 * - HPKE comes from `@hpke/core` (vetted, passes the RFC vectors) rather than being hand-rolled
 *   here; it and `@noble/curves` cost ~70 ms to import, so they load lazily on first use
 *   (memoised `import()`), and everything that touches a key is async. `mrp send` without `-e`
 *   never pays for them.
 * - Each §8.3 byte-layout choice the spec could not pin down lives in ONE named function in
 *   `e2e-layout.ts` (`encodeBinary`/`decodeBinary`, `hpkeInfo`, `hpkeAad`, `plaintextOf`/`bodyOf`).
 * - Envelopes are validated strictly (version, sizes, lengths) before any crypto runs. Every
 *   failure to open — wrong sender, tampering, a small-order `enc` — is one code,
 *   `decryption_failed`, so a peer learns nothing from which step failed.
 *
 * Blob contents (§8.4, a symmetric cipher over a random DEK) live in `blob-crypto.ts`.
 */
import type { CipherSuite } from '@hpke/core';
import type * as Curves from '@noble/curves/ed25519.js';
import { LIMITS } from './constants.js';
import {
  bodyOf,
  decodeBinary,
  encodeBinary,
  e2eError as fail,
  hpkeAad,
  hpkeInfo,
  e2eMisuse as misuse,
  type OpenedBody,
  plaintextOf,
  plaintextOfJson,
} from './e2e-layout.js';
import { decodePublicKey } from './encoding.js';
import type { Attachment, JsonValue } from './types.js';
import { isPlainObject } from './validate.js';

/** The envelope format version this module writes and the only one it opens (§8.2). */
export const ENCRYPTION_VERSION = 2;
/** X25519 public keys, `enc` and Ed25519 seeds are all 32 bytes. */
const KEY_BYTES = 32;
/** Poly1305 tag length: the shortest possible `ct`. */
const TAG_BYTES = 16;
/** A sealed body must fit the relay's body limit, so `ct` can never be larger than this. */
const MAX_CT_BYTES = LIMITS.maxBodyBytes;
/** Characters of standard base64 (with padding) for MAX_CT_BYTES: checked before decoding. */
const MAX_CT_CHARS = Math.ceil(MAX_CT_BYTES / 3) * 4;

/** The v2 envelope, the `body` of a message whose `content_type` is `application/x-m2m-encrypted`. */
export interface EncryptedEnvelope {
  v: 2;
  /** HPKE encapsulated key (ephemeral X25519 public key), `encodeBinary`. */
  enc: string;
  /** Ciphertext with its 16-byte Poly1305 tag, `encodeBinary`. */
  ct: string;
  /** Content type of the plaintext. */
  ct_content_type: string;
}

/** A DEK wrapped for one recipient, as carried in an attachment (§8.4). */
export type WrappedDek = Required<Pick<Attachment, 'dek_enc' | 'dek_ct'>>;

// ── Lazy loading ────────────────────────────────────────────────────────────────────────────────

/** A memoised async loader that forgets a failed attempt (so a later call can retry). */
function lazy<T>(load: () => Promise<T>): () => Promise<T> {
  let pending: Promise<T> | undefined;
  return () =>
    (pending ??= load().catch((err: unknown) => {
      pending = undefined;
      throw err;
    }));
}

const loadCurves = lazy(async (): Promise<typeof Curves> => import('@noble/curves/ed25519.js'));

/**
 * The one HPKE ciphersuite of §8.1: DHKEM(X25519, HKDF-SHA256) (0x0020), HKDF-SHA256 (0x0001),
 * ChaCha20-Poly1305 (0x0003). Loaded on first use; exported so tests can run RFC 9180 vectors
 * through exactly this suite. Internal: left out of the published types, so that they do not
 * import `@hpke/core`'s, which need the DOM library (`SubtleCrypto`) to compile.
 *
 * @internal
 */
export const hpkeSuite = lazy(async (): Promise<CipherSuite> => {
  const [core, chacha] = await Promise.all([import('@hpke/core'), import('@hpke/chacha20poly1305')]);
  return new core.CipherSuite({
    kem: new core.DhkemX25519HkdfSha256(),
    kdf: new core.HkdfSha256(),
    aead: new chacha.Chacha20Poly1305(),
  });
});

// ── Keys (§8.1) ─────────────────────────────────────────────────────────────────────────────────

function edPublicBytes(key: Uint8Array | string): Uint8Array {
  const bytes = typeof key === 'string' ? decodePublicKey(key) : key;
  if (bytes?.length !== KEY_BYTES)
    throw fail('invalid_key', 'an Ed25519 public key is 32 bytes (43 base64url characters)');
  return bytes;
}

/**
 * The X25519 public key of an Ed25519 public key (bytes or the 43-character address): the
 * Edwards→Montgomery map `u = (1 + y) / (1 − y)`, libsodium's `crypto_sign_ed25519_pk_to_curve25519`.
 * Throws `ProtocolError('invalid_key')` for bytes that are not a canonical curve point or that
 * are a small-order point (whose X25519 shared secrets are predictable).
 */
export async function x25519PublicKey(edPublic: Uint8Array | string): Promise<Uint8Array> {
  const bytes = edPublicBytes(edPublic);
  const { ed25519 } = await loadCurves();
  const point = (() => {
    try {
      return ed25519.Point.fromBytes(bytes);
    } catch (err) {
      throw fail('invalid_key', 'not a valid Ed25519 public key', err);
    }
  })();
  if (point.isSmallOrder()) throw fail('invalid_key', 'refusing a small-order Ed25519 public key');
  return ed25519.utils.toMontgomery(bytes);
}

/**
 * The X25519 private key of an Ed25519 seed: the first 32 bytes of SHA-512(seed), clamped
 * (libsodium's `crypto_sign_ed25519_sk_to_curve25519`). Handle the result like the seed.
 */
export async function x25519SecretKey(seed: Uint8Array): Promise<Uint8Array> {
  if (seed.length !== KEY_BYTES) throw misuse('invalid_key', 'an Ed25519 seed is exactly 32 bytes');
  const { ed25519 } = await loadCurves();
  return ed25519.utils.toMontgomerySecret(seed);
}

// ── HPKE Auth, single shot ──────────────────────────────────────────────────────────────────────

async function hpkeSeal(plaintext: Uint8Array, senderSeed: Uint8Array, recipient: Uint8Array | string) {
  const [suite, skS, pkR] = await Promise.all([hpkeSuite(), x25519SecretKey(senderSeed), x25519PublicKey(recipient)]);
  const [senderKey, recipientPublicKey] = await Promise.all([
    suite.kem.deserializePrivateKey(skS),
    suite.kem.deserializePublicKey(pkR),
  ]);
  const sealed = await suite.seal({ recipientPublicKey, senderKey, info: hpkeInfo() }, plaintext, hpkeAad());
  return { enc: new Uint8Array(sealed.enc), ct: new Uint8Array(sealed.ct) };
}

async function hpkeOpen(enc: Uint8Array, ct: Uint8Array, recipientSeed: Uint8Array, sender: Uint8Array | string) {
  const [suite, skR, pkS] = await Promise.all([hpkeSuite(), x25519SecretKey(recipientSeed), x25519PublicKey(sender)]);
  const [recipientKey, senderPublicKey] = await Promise.all([
    suite.kem.deserializePrivateKey(skR),
    suite.kem.deserializePublicKey(pkS),
  ]);
  try {
    return new Uint8Array(await suite.open({ recipientKey, senderPublicKey, enc, info: hpkeInfo() }, ct, hpkeAad()));
  } catch (err) {
    throw fail('decryption_failed', 'cannot decrypt: wrong keys, a different sender, or tampered data', err);
  }
}

// ── The v2 envelope (§8.2) ──────────────────────────────────────────────────────────────────────

/** Options of `sealBody`: the body as a value, or as its exact JSON text (`bodyJson`). */
export type SealBodyOptions = ({ body: JsonValue } | { bodyJson: string }) & {
  /** Content type of the plaintext, carried as `ct_content_type`. */
  contentType: string;
  senderSeed: Uint8Array;
  /** The recipient's Ed25519 public key (bytes or address). */
  recipientPublicKey: Uint8Array | string;
};

/**
 * Seals a body for one recipient into a v2 envelope. Throws `UsageError` `invalid_body` or
 * `payload_too_large` (the envelope would not fit the relay's body limit), `invalid_key`.
 */
export async function sealBody(options: SealBodyOptions): Promise<EncryptedEnvelope> {
  if (!isContentType(options.contentType)) throw misuse('invalid_body', CONTENT_TYPE_RULE);
  const plaintext =
    'bodyJson' in options
      ? plaintextOfJson(options.bodyJson, options.contentType)
      : plaintextOf(options.body, options.contentType);
  if (plaintext.length + TAG_BYTES > MAX_CT_BYTES) throw tooLargeToSeal(plaintext.length);
  const { enc, ct } = await hpkeSeal(plaintext, options.senderSeed, options.recipientPublicKey);
  const envelope: EncryptedEnvelope = {
    v: 2,
    enc: encodeBinary(enc),
    ct: encodeBinary(ct),
    ct_content_type: options.contentType,
  };
  const sealed = JSON.stringify(envelope).length;
  if (sealed > LIMITS.maxBodyBytes) throw tooLargeToSeal(plaintext.length, sealed);
  return envelope;
}

/** A body that does not fit the body limit once sealed: its sizes, and what to do instead. */
function tooLargeToSeal(plainBytes: number, sealedBytes?: number): ReturnType<typeof misuse> {
  return misuse(
    'payload_too_large',
    `the body is ${plainBytes} bytes${sealedBytes === undefined ? '' : `, ${sealedBytes} once encrypted (base64 adds a third)`}: more than a message body may be (${LIMITS.maxBodyBytes} bytes, 1 MiB) encrypted; send it as an encrypted attachment instead (mrp send -e --attach-file; agent.upload with encryptFor)`,
  );
}

/** The decoded parts of a valid envelope. */
export interface ParsedEnvelope {
  enc: Uint8Array;
  ct: Uint8Array;
  contentType: string;
}

/**
 * Validates a v2 envelope before any crypto: `v` must be 2 (another integer →
 * `unsupported_encryption_version`); `enc` 32 bytes; `ct` 16 bytes to 1 MiB; `ct_content_type`
 * 1–255 printable characters. Unknown extra members are ignored (the version pins the format).
 * Throws `ProtocolError` `invalid_envelope` / `unsupported_encryption_version`.
 */
export function parseEnvelope(value: unknown): ParsedEnvelope {
  if (!isPlainObject(value)) throw fail('invalid_envelope', 'an encrypted body must be a JSON object');
  const { v, enc, ct, ct_content_type: contentType } = value;
  if (typeof v !== 'number' || !Number.isInteger(v))
    throw fail('invalid_envelope', 'the encrypted body has no integer "v"');
  if (v !== ENCRYPTION_VERSION)
    throw fail('unsupported_encryption_version', `unsupported encryption version ${v} (only 2 is supported)`);
  const encBytes = typeof enc === 'string' && enc.length <= 64 ? decodeBinary(enc) : undefined;
  if (encBytes?.length !== KEY_BYTES) throw fail('invalid_envelope', '"enc" must be 32 bytes, base64url');
  const ctBytes = typeof ct === 'string' && ct.length <= MAX_CT_CHARS ? decodeBinary(ct) : undefined;
  if (!ctBytes || ctBytes.length < TAG_BYTES || ctBytes.length > MAX_CT_BYTES) {
    throw fail('invalid_envelope', '"ct" must be base64url of 16 bytes to 1 MiB');
  }
  if (!isContentType(contentType)) throw fail('invalid_envelope', `"ct_content_type": ${CONTENT_TYPE_RULE}`);
  return { enc: encBytes, ct: ctBytes, contentType };
}

const CONTENT_TYPE_RULE = 'a plaintext content type is 1–255 printable ASCII characters';

function isContentType(value: unknown): value is string {
  return (
    typeof value === 'string' &&
    value.length > 0 &&
    value.length <= LIMITS.contentTypeMax &&
    /^[\x20-\x7e]+$/.test(value)
  );
}

/** Options of `openBody`. */
export interface OpenBodyOptions {
  /** The message's body (parsed JSON). */
  envelope: unknown;
  recipientSeed: Uint8Array;
  /** The Ed25519 key the message claims as its sender (`sender_key`). */
  senderPublicKey: Uint8Array | string;
}

/**
 * Opens a v2 envelope. Fails with `decryption_failed` unless the envelope was sealed by the
 * holder of `senderPublicKey` for this recipient and is untouched; see `parseEnvelope` and
 * `bodyOf` for the other codes.
 */
export async function openBody(options: OpenBodyOptions): Promise<OpenedBody & { contentType: string }> {
  const { enc, ct, contentType } = parseEnvelope(options.envelope);
  const plaintext = await hpkeOpen(enc, ct, options.recipientSeed, options.senderPublicKey);
  return { ...bodyOf(plaintext, contentType), contentType };
}

// ── Blob keys (§8.4) ────────────────────────────────────────────────────────────────────────────

/** Wraps a 32-byte blob DEK for one recipient with the same HPKE parameters as bodies. */
export async function wrapDek(options: {
  dek: Uint8Array;
  senderSeed: Uint8Array;
  recipientPublicKey: Uint8Array | string;
}): Promise<WrappedDek> {
  if (options.dek.length !== KEY_BYTES) throw misuse('invalid_key', 'a blob DEK is exactly 32 bytes');
  const { enc, ct } = await hpkeSeal(options.dek, options.senderSeed, options.recipientPublicKey);
  return { dek_enc: encodeBinary(enc), dek_ct: encodeBinary(ct) };
}

/** Unwraps a DEK from an attachment's `dek_enc`/`dek_ct`; `invalid_envelope` or `decryption_failed`. */
export async function unwrapDek(options: {
  wrapped: Partial<WrappedDek>;
  recipientSeed: Uint8Array;
  senderPublicKey: Uint8Array | string;
}): Promise<Uint8Array> {
  const { dek_enc: encText, dek_ct: ctText } = options.wrapped;
  const enc = typeof encText === 'string' && encText.length <= 64 ? decodeBinary(encText) : undefined;
  const ct = typeof ctText === 'string' && ctText.length <= 128 ? decodeBinary(ctText) : undefined;
  if (enc?.length !== KEY_BYTES || ct?.length !== KEY_BYTES + TAG_BYTES) {
    throw fail('invalid_envelope', 'an encrypted attachment needs "dek_enc" (32 bytes) and "dek_ct" (48 bytes)');
  }
  return hpkeOpen(enc, ct, options.recipientSeed, options.senderPublicKey);
}
