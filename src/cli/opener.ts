/**
 * How every command that shows messages (`recv`, `recv --ws`, `tail`, `thread`, `get`, `send
 * --wait`) opens end-to-end encrypted ones (docs/protocol.md §8): one function, so they all say
 * the same thing the same way. It runs the same codec as `mrp run` (`client/e2e-codec.ts`), so
 * the HPKE packages load only when an encrypted message is actually shown.
 *
 * Opening never fails a command or a stream: a message that cannot be opened is shown as it
 * arrived, with the reason (`sealed`). A message this agent SENT encrypted cannot be opened by it
 * either — HPKE Auth seals to the recipient's key alone — and says so instead of looking broken.
 *
 * What each output mode gets (README "End-to-end encryption"):
 * - `--json`/NDJSON: the opened message (plaintext `body` and `content_type`) plus
 *   `"encrypted": true`; when it cannot be opened, the message as received plus
 *   `"encrypted": true, "decryption_error": {"code", "reason", "message"}`. Plaintext messages are
 *   printed unchanged (no `encrypted` member).
 * - on a terminal: a `🔒 encrypted` marker (or `🔒 cannot decrypt: …`).
 * - `-q`: the opened body; for one that cannot be opened, the raw body and a warning on stderr.
 */
import type { MessageCodec } from '../client/codec.js';
import { e2eCodec, isEncryptedMessage } from '../client/e2e-codec.js';
import type { Keypair } from '../protocol/signing.js';
import type { Message } from '../protocol/types.js';
import { safeText } from './render.js';

/** A message as the CLI shows it. */
export interface ShownMessage {
  /** Opened (plaintext body and content type) when it could be; otherwise as it arrived. */
  message: Message;
  /** It arrived end-to-end encrypted. */
  encrypted: boolean;
  /** Why an encrypted message is shown sealed. */
  sealed?: { code: string; reason: string; message: string };
}

/** Opens messages for the holder of `keypair`; `codec` is for tests. */
export class MessageOpener {
  readonly #self: string;
  readonly #codec: MessageCodec;

  constructor(keypair: Keypair, codec: MessageCodec = e2eCodec(keypair)) {
    this.#self = keypair.publicKey;
    this.#codec = codec;
  }

  /** Never rejects. */
  async open(message: Message): Promise<ShownMessage> {
    if (!isEncryptedMessage(message)) return { message, encrypted: false };
    if (message.sender_key === this.#self && message.recipient_key !== this.#self) {
      return {
        message,
        encrypted: true,
        sealed: {
          code: 'decryption_failed',
          reason: 'sealed_for_recipient',
          message: 'sent by you end-to-end encrypted: only the recipient can read it',
        },
      };
    }
    try {
      const opened = await this.#codec.open(message);
      return { message: opened.message, encrypted: opened.encrypted };
    } catch (err) {
      const e = err as { code?: unknown; message?: unknown; details?: { reason?: unknown } };
      const code = typeof e?.code === 'string' ? e.code : 'decryption_failed';
      const reason = typeof e?.details?.reason === 'string' ? e.details.reason : code;
      return {
        message,
        encrypted: true,
        sealed: { code, reason, message: typeof e?.message === 'string' ? e.message : String(err) },
      };
    }
  }

  /** Opens a list, keeping its order. */
  openAll(messages: readonly Message[]): Promise<ShownMessage[]> {
    return Promise.all(messages.map((m) => this.open(m)));
  }
}

/** The JSON document printed for a shown message (see the file comment). */
export function shownJson(shown: ShownMessage): Record<string, unknown> {
  if (!shown.encrypted) return shown.message as unknown as Record<string, unknown>;
  return { ...shown.message, encrypted: true, ...(shown.sealed ? { decryption_error: shown.sealed } : {}) };
}

/** One line for stderr about a message that could not be opened. */
export function sealedNote(shown: ShownMessage): string | undefined {
  return shown.sealed && safeText(`${shown.message.message_id}: ${shown.sealed.message}`);
}
