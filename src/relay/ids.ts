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

export function messageId(nowMs: number): string {
  return `msg_${Math.floor(nowMs / 1000)}_${randomHex(6)}`;
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
