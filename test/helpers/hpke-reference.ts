/**
 * A small, independent HPKE Auth-mode implementation (RFC 9180 §4.1, §5.1, mode 0x02) for
 * DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / ChaCha20-Poly1305, built only from node:crypto
 * primitives, plus the Ed25519→X25519 conversion written out by hand. Tests use it to check that
 * `@hpke/core` and our envelope layout (§8.3: empty info, empty aad, base64url) agree with a
 * second reading of the RFC and the spec. Written for clarity, not speed; test-only.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  randomBytes,
} from 'node:crypto';

const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');
const KEM_SUITE = Buffer.concat([Buffer.from('KEM'), Buffer.from([0x00, 0x20])]);
const HPKE_SUITE = Buffer.concat([Buffer.from('HPKE'), Buffer.from([0x00, 0x20, 0x00, 0x01, 0x00, 0x03])]);
const MODE_AUTH = 0x02;

function i2osp(n: number, w: number): Buffer {
  const out = Buffer.alloc(w);
  out.writeUIntBE(n, 0, w);
  return out;
}

function labeledExtract(suite: Buffer, salt: Uint8Array, label: string, ikm: Uint8Array): Buffer {
  return createHmac('sha256', salt)
    .update(Buffer.concat([Buffer.from('HPKE-v1'), suite, Buffer.from(label), ikm]))
    .digest();
}

function labeledExpand(suite: Buffer, prk: Uint8Array, label: string, info: Uint8Array, length: number): Buffer {
  const labeledInfo = Buffer.concat([i2osp(length, 2), Buffer.from('HPKE-v1'), suite, Buffer.from(label), info]);
  const blocks: Buffer[] = [];
  let previous = Buffer.alloc(0);
  for (let i = 1; Buffer.concat(blocks).length < length; i++) {
    previous = createHmac('sha256', prk)
      .update(Buffer.concat([previous, labeledInfo, Buffer.from([i])]))
      .digest();
    blocks.push(previous);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

/** X25519 public key of a raw private key. */
export function x25519Public(secret: Uint8Array): Buffer {
  const key = createPrivateKey({ key: Buffer.concat([PKCS8_X25519, secret]), format: 'der', type: 'pkcs8' });
  return Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x as string, 'base64url');
}

function dh(secret: Uint8Array, publicKey: Uint8Array): Buffer {
  return diffieHellman({
    privateKey: createPrivateKey({ key: Buffer.concat([PKCS8_X25519, secret]), format: 'der', type: 'pkcs8' }),
    publicKey: createPublicKey({ key: Buffer.concat([SPKI_X25519, publicKey]), format: 'der', type: 'spki' }),
  });
}

/** libsodium's crypto_sign_ed25519_sk_to_curve25519: SHA-512(seed)[0..32], clamped. */
export function edSeedToX25519(seed: Uint8Array): Buffer {
  const h = createHash('sha512').update(seed).digest().subarray(0, 32);
  h[0]! &= 248;
  h[31]! &= 127;
  h[31]! |= 64;
  return Buffer.from(h);
}

export interface KeySchedule {
  sharedSecret: Buffer;
  key: Buffer;
  baseNonce: Buffer;
}

/** AuthEncap/AuthDecap's shared secret and the mode-2 key schedule (psk and psk_id empty). */
export function authKeySchedule(
  dhs: Buffer,
  enc: Uint8Array,
  pkR: Uint8Array,
  pkS: Uint8Array,
  info: Uint8Array,
): KeySchedule {
  const eaePrk = labeledExtract(KEM_SUITE, Buffer.alloc(0), 'eae_prk', dhs);
  const sharedSecret = labeledExpand(KEM_SUITE, eaePrk, 'shared_secret', Buffer.concat([enc, pkR, pkS]), 32);
  const pskIdHash = labeledExtract(HPKE_SUITE, Buffer.alloc(0), 'psk_id_hash', Buffer.alloc(0));
  const infoHash = labeledExtract(HPKE_SUITE, Buffer.alloc(0), 'info_hash', info);
  const context = Buffer.concat([Buffer.from([MODE_AUTH]), pskIdHash, infoHash]);
  const secret = labeledExtract(HPKE_SUITE, sharedSecret, 'secret', Buffer.alloc(0));
  return {
    sharedSecret,
    key: labeledExpand(HPKE_SUITE, secret, 'key', context, 32),
    baseNonce: labeledExpand(HPKE_SUITE, secret, 'base_nonce', context, 12),
  };
}

/** Recipient side: the key schedule from skR, enc and the sender's public key. */
export function authDecapSchedule(skR: Uint8Array, enc: Uint8Array, pkS: Uint8Array, info: Uint8Array): KeySchedule {
  return authKeySchedule(Buffer.concat([dh(skR, enc), dh(skR, pkS)]), enc, x25519Public(skR), pkS, info);
}

/** Single-shot Auth open (sequence 0). Throws when the tag does not verify. */
export function refAuthOpen(
  skR: Uint8Array,
  pkS: Uint8Array,
  enc: Uint8Array,
  ct: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
): Buffer {
  const { key, baseNonce } = authDecapSchedule(skR, enc, pkS, info);
  const decipher = createDecipheriv('chacha20-poly1305', key, baseNonce, { authTagLength: 16 });
  decipher.setAAD(aad, { plaintextLength: ct.length - 16 });
  decipher.setAuthTag(ct.subarray(ct.length - 16));
  return Buffer.concat([decipher.update(ct.subarray(0, ct.length - 16)), decipher.final()]);
}

/** Single-shot Auth seal (sequence 0) with a fresh (or given) ephemeral key. */
export function refAuthSeal(
  skS: Uint8Array,
  pkR: Uint8Array,
  pt: Uint8Array,
  info: Uint8Array,
  aad: Uint8Array,
  skE: Uint8Array = randomBytes(32),
): { enc: Buffer; ct: Buffer } {
  const enc = x25519Public(skE);
  const { key, baseNonce } = authKeySchedule(
    Buffer.concat([dh(skE, pkR), dh(skS, pkR)]),
    enc,
    pkR,
    x25519Public(skS),
    info,
  );
  const cipher = createCipheriv('chacha20-poly1305', key, baseNonce, { authTagLength: 16 });
  cipher.setAAD(aad, { plaintextLength: pt.length });
  const body = Buffer.concat([cipher.update(pt), cipher.final()]);
  return { enc, ct: Buffer.concat([body, cipher.getAuthTag()]) };
}
