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

/** The second `messageId` last minted in, and the count its next id in that second carries. */
let idSecond = Number.NaN;
let idCount = 0;

/**
 * `msg_<unix seconds>_<12 hex>`: 5 hex of a count, then 7 random hex (28 bits). Within one second
 * one process counts up from a random start below 2^19 (so the count never wraps: that would take
 * half a million ids in a second), so its ids ascend: an index on `message_id` then grows at one
 * end, as `seq` does, instead of taking each insert at a random leaf (4–5 µs less per stored
 * message at 25,000 a second), and within one millisecond `(created_at, message_id)` order is this
 * process's arrival order. The random part keeps an id unguessable from its neighbours: knowing
 * one's own message id says nothing usable about another's, whose id may be a thread id that
 * anyone can name in a send. Within a process ids never collide; two processes minting n ids
 * each in one second collide with a chance of about 2n / 2^19 × (n / 2) / 2^28 (n = 25,000:
 * 4e-6), as 48 random bits per id gave for those 2n ids (also 4e-6).
 */
export function messageId(nowMs: number): string {
  const second = Math.floor(nowMs / 1000);
  if (second !== idSecond) {
    idSecond = second;
    idCount = Number.parseInt(randomHex(3), 16) >>> 5;
  }
  return `msg_${second}_${(idCount++ & 0xfffff).toString(16).padStart(5, '0')}${randomHex(4).slice(1)}`;
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
