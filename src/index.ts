/**
 * The `mrp` library: protocol types and codecs, signing, errors — and, as they land, the relay
 * client and the handler runtime. What a handler author imports.
 */
export * from './core/errors.js';
export { type Clock, ManualClock, systemClock, type Timer } from './core/clock.js';
export { Backoff, type BackoffOptions } from './core/backoff.js';
export * from './protocol/constants.js';
export type * from './protocol/types.js';
export {
  decodePublicKey,
  fromBase64Url,
  isPublicKey,
  shortKey,
  toBase64Url,
} from './protocol/encoding.js';
export {
  authFrame,
  bodyHash,
  canonicalRequest,
  formatTimestamp,
  Keypair,
  parseTimestamp,
  signRequest,
  type SignedHeaders,
  verifySignature,
  wsAuthString,
} from './protocol/signing.js';
export { decodeKeyFile, encodeKeyFile, type KeyFileFormat } from './protocol/keyfile.js';
export {
  type Contact,
  type ContactBook,
  findContact,
  parseContacts,
  resolveRecipient,
  serializeContacts,
} from './protocol/contacts.js';
export { encodeFrame, FrameParseError, normalizeMessage, parseClientFrame, parseServerFrame } from './protocol/frames.js';
export {
  validateProfilePatch,
  validateSendRequest,
  ValidationError,
} from './protocol/validate.js';
export { errorEnvelope, relayErrorFromFrame, relayErrorFromResponse } from './protocol/envelope.js';
