/**
 * The end-to-end encryption codec (docs/protocol.md §8): a `MessageCodec` built from the agent's
 * own key pair. `open` recognises an `application/x-m2m-encrypted` message, opens its v2 envelope
 * with HPKE Auth (our X25519 secret, the sender's X25519 public key derived from `sender_key`) and
 * hands on the message with the plaintext `body` and `content_type`; anything else passes through
 * untouched. `seal` encrypts a body for its recipient when asked to (`encrypt: true`: a reply to an
 * encrypted message, `ctx.send(…, { encrypt: true })`, `mrp send -e`) and passes it through
 * otherwise. The recipient's public key is its address, so sealing never waits on the network.
 *
 * Trade-offs:
 * - `protocol/e2e.ts` (and with it `@hpke/core` and `@noble/curves`, ~45–70 ms to import) loads on
 *   the first encrypted message or encrypted send, never at start-up: an agent that only ever sees
 *   plaintext never pays for it (`mrp run`, `mrp dev` and the CLI's readers make this their default).
 * - Every reason a body cannot be opened — a malformed envelope, an unknown version, the wrong
 *   keys, tampering, a malformed plaintext — is ONE code, `decryption_failed` (what the runtime
 *   answers with, §8.1: a peer learns nothing from which step failed); the precise reason is kept
 *   in the message and in `details.reason` for the person reading it.
 * - Input is hostile and bounded before any crypto: the envelope as a whole (its JSON text ≤ the
 *   1 MiB body limit), then `parseEnvelope`'s per-field lengths before base64 is decoded, then the
 *   plaintext through strict UTF-8 and `parseJson` (depth-limited).
 * - The seed is copied out of the key pair for each operation and wiped afterwards.
 */
import { ProtocolError } from '../core/errors.js';
import { CONTENT_TYPES, LIMITS } from '../protocol/constants.js';
import type { Keypair } from '../protocol/signing.js';
import type { Message } from '../protocol/types.js';
import type { MessageCodec, OpenedMessage, PlainBody, SealContext, SealedBody } from './codec.js';

type E2e = typeof import('../protocol/e2e.js');

let loading: Promise<E2e> | undefined;

/** `protocol/e2e.ts`, imported once on first use (a failed import is retried next time); shared with `blob-e2e.ts`. */
export function loadE2e(): Promise<E2e> {
  loading ??= import('../protocol/e2e.js').catch((err: unknown) => {
    loading = undefined;
    throw err;
  });
  return loading;
}

/** Whether a message carries an end-to-end encrypted body (§8.2), judged by its content type. */
export function isEncryptedMessage(message: Pick<Message, 'content_type'>): boolean {
  return (
    typeof message.content_type === 'string' && message.content_type.trim().toLowerCase() === CONTENT_TYPES.encrypted
  );
}

/** Room for the envelope's JSON syntax and field names around a ciphertext of the body limit. */
const ENVELOPE_SLACK = 1024;

function envelopeTooLarge(body: unknown): boolean {
  try {
    return (JSON.stringify(body)?.length ?? 0) > Math.ceil((LIMITS.maxBodyBytes * 4) / 3) + ENVELOPE_SLACK;
  } catch {
    return true;
  }
}

function decryptionFailed(reason: string, text: string, cause?: unknown): ProtocolError {
  return new ProtocolError('decryption_failed', `cannot open the encrypted message: ${text}`, {
    details: { reason },
    ...(cause === undefined ? {} : { cause }),
  });
}

/** The end-to-end codec for the holder of `keypair`. */
export function e2eCodec(keypair: Keypair): MessageCodec {
  return {
    async open(message: Message): Promise<OpenedMessage> {
      if (!isEncryptedMessage(message)) return { message, encrypted: false };
      if (envelopeTooLarge(message.body)) {
        throw decryptionFailed('invalid_envelope', 'the encrypted body is larger than any sealed 1 MiB body can be');
      }
      const e2e = await loadE2e();
      const seed = keypair.exportSeed();
      try {
        const opened = await e2e.openBody({
          envelope: message.body,
          recipientSeed: seed,
          senderPublicKey: message.sender_key,
        });
        return { message: { ...message, body: opened.body, content_type: opened.contentType }, encrypted: true };
      } catch (err) {
        const code = (err as { code?: unknown })?.code;
        const reason = typeof code === 'string' ? code : 'decryption_failed';
        const text = err instanceof Error ? err.message : String(err);
        throw decryptionFailed(reason, text, err);
      } finally {
        seed.fill(0);
      }
    },

    async seal(body: PlainBody, context: SealContext): Promise<SealedBody> {
      if (!context.encrypt) return { bodyJson: body.bodyJson, contentType: body.contentType };
      const e2e = await loadE2e();
      const seed = keypair.exportSeed();
      try {
        const envelope = await e2e.sealBody({
          bodyJson: body.bodyJson,
          contentType: body.contentType,
          senderSeed: seed,
          recipientPublicKey: context.to,
        });
        return { bodyJson: JSON.stringify(envelope), contentType: CONTENT_TYPES.encrypted };
      } finally {
        seed.fill(0);
      }
    },
  };
}
