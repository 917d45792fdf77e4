/**
 * The set of finished message ids, kept for days, in constant memory per entry.
 *
 * A Map of id strings costs ~100 bytes and two heap objects per message; a runner that has
 * answered millions of messages would carry hundreds of megabytes of garbage-collected heap for a
 * yes/no question. Here each id is a 64-bit hash in an open-addressing table of typed arrays
 * (12 bytes a slot, kept at most half full) with its expiry in minutes. The chance that a new id
 * matches a stored hash is about n / 2^64 (1 in 10^13 with 2 million entries).
 */

/** 64-bit hash of a string as two 32-bit halves (cyrb53's mixing, both halves kept). */
export function hash64(text: string): [number, number] {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return [h1 >>> 0, h2 >>> 0];
}

/**
 * 16 hex characters for a hash: how journals before the packed form (`pack`) wrote done ids;
 * `parseHashHex` reads them back.
 */
export function hashHex([hi, lo]: [number, number]): string {
  return hi.toString(16).padStart(8, '0') + lo.toString(16).padStart(8, '0');
}

export function parseHashHex(text: string): [number, number] | undefined {
  if (!/^[0-9a-f]{16}$/.test(text)) return undefined;
  return [parseInt(text.slice(0, 8), 16), parseInt(text.slice(8), 16)];
}

const MINUTE = 60_000;
const MIN_CAPACITY = 1024;
/** Bytes of one packed entry (`pack`): the hash's two halves and the expiry minute, uint32 LE each. */
export const PACKED_ENTRY_BYTES = 12;

export class ExpiringIdSet {
  #hi = new Uint32Array(MIN_CAPACITY);
  #lo = new Uint32Array(MIN_CAPACITY);
  /** Expiry in minutes since the epoch; 0 marks an empty slot. */
  #until = new Uint32Array(MIN_CAPACITY);
  #occupied = 0;
  readonly #max: number;

  constructor(maxEntries = Number.MAX_SAFE_INTEGER) {
    this.#max = maxEntries;
  }

  /** Entries stored (some may have expired and not been swept yet). */
  get size(): number {
    return this.#occupied;
  }

  #slot(hi: number, lo: number): number {
    const mask = this.#until.length - 1;
    let i = (lo ^ Math.imul(hi, 0x9e3779b1)) & mask;
    while (this.#until[i] !== 0 && (this.#hi[i] !== hi || this.#lo[i] !== lo)) i = (i + 1) & mask;
    return i;
  }

  has(id: string, now: number): boolean {
    return this.hasHash(hash64(id), now);
  }

  hasHash([hi, lo]: [number, number], now: number): boolean {
    const i = this.#slot(hi, lo);
    return this.#until[i] !== 0 && this.#until[i]! * MINUTE > now;
  }

  add(id: string, untilMs: number, now: number): void {
    this.addHash(hash64(id), untilMs, now);
  }

  addHash([hi, lo]: [number, number], untilMs: number, now: number): void {
    this.#put(hi, lo, Math.ceil(untilMs / MINUTE), now);
  }

  #put(hi: number, lo: number, untilMinutes: number, now: number): void {
    if ((this.#occupied + 1) * 2 > this.#until.length) this.#rebuild(now);
    const i = this.#slot(hi, lo);
    if (this.#until[i] === 0) this.#occupied++;
    this.#hi[i] = hi;
    this.#lo[i] = lo;
    this.#until[i] = Math.max(this.#until[i]!, untilMinutes);
  }

  /** Makes room for `count` more entries at once (instead of one doubling after another). */
  reserve(count: number, now: number): void {
    // Never room for more than the cap keeps (what a file says it holds is only a claim).
    const room = Math.min(count, this.#max);
    if ((this.#occupied + room) * 2 > this.#until.length) this.#rebuild(now, room);
  }

  /**
   * The live entries, `PACKED_ENTRY_BYTES` each, in buffers of at most `perChunk` entries: how
   * the journal's compaction writes millions of them (a copy, not a string per id).
   */
  pack(now: number, perChunk: number): Buffer[] {
    const chunks: Buffer[] = [];
    const next = (): [Buffer, DataView] => {
      const b = Buffer.allocUnsafe(perChunk * PACKED_ENTRY_BYTES);
      return [b, new DataView(b.buffer, b.byteOffset, b.byteLength)];
    };
    let [chunk, view] = next();
    let n = 0;
    for (let i = 0; i < this.#until.length; i++) {
      const until = this.#until[i]!;
      if (until * MINUTE <= now) continue;
      const at = n * PACKED_ENTRY_BYTES;
      view.setUint32(at, this.#hi[i]!, true);
      view.setUint32(at + 4, this.#lo[i]!, true);
      view.setUint32(at + 8, until, true);
      if (++n === perChunk) {
        chunks.push(chunk);
        [chunk, view] = next();
        n = 0;
      }
    }
    if (n > 0) chunks.push(chunk.subarray(0, n * PACKED_ENTRY_BYTES));
    return chunks;
  }

  /** Adds the unexpired entries of what `pack` wrote; false (nothing added) when `bytes` is not whole entries. */
  addPacked(bytes: Uint8Array, now: number): boolean {
    if (bytes.length % PACKED_ENTRY_BYTES !== 0) return false;
    this.reserve(bytes.length / PACKED_ENTRY_BYTES, now);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let at = 0; at < bytes.length; at += PACKED_ENTRY_BYTES) {
      const until = view.getUint32(at + 8, true);
      if (until * MINUTE > now) this.#put(view.getUint32(at, true), view.getUint32(at + 4, true), until, now);
    }
    return true;
  }

  /** Live entries as [hash, expiry ms]. */
  *entries(now: number): Generator<[[number, number], number]> {
    for (let i = 0; i < this.#until.length; i++) {
      const until = this.#until[i]! * MINUTE;
      if (until > now) yield [[this.#hi[i]!, this.#lo[i]!], until];
    }
  }

  /** Calls `fn` for each live entry (no tuple per entry: compaction walks millions of them). */
  forEach(now: number, fn: (hi: number, lo: number, untilMs: number) => void): void {
    for (let i = 0; i < this.#until.length; i++) {
      const until = this.#until[i]! * MINUTE;
      if (until > now) fn(this.#hi[i]!, this.#lo[i]!, until);
    }
  }

  /** Drops expired entries (and the oldest, past the cap); resizes to fit what is left. */
  sweep(now: number): void {
    let live = 0;
    this.forEach(now, () => void live++);
    // Nothing expired, under the cap and not oversized (a reserve that was not used): nothing to
    // rebuild — compaction sweeps millions of ids.
    const oversized = this.#until.length > MIN_CAPACITY && live * 6 < this.#until.length;
    if (live === this.#occupied && live <= this.#max && !oversized) return;
    this.#rebuild(now);
  }

  /** `room`: entries about to be added, made room for now. */
  #rebuild(now: number, room = 0): void {
    let count = 0;
    this.forEach(now, () => void count++);
    if (count <= this.#max) {
      // Everything stays: re-insert straight from the old arrays.
      const [hi, lo, until] = [this.#hi, this.#lo, this.#until];
      this.#allocate(count + room);
      for (let j = 0; j < until.length; j++) if (until[j]! * MINUTE > now) this.#insert(hi[j]!, lo[j]!, until[j]!);
      return;
    }
    let live = [...this.entries(now)];
    if (live.length > this.#max) live = live.sort((a, b) => b[1] - a[1]).slice(0, this.#max);
    this.#allocate(live.length + room);
    for (const [h, until] of live) this.#insert(h[0], h[1], Math.ceil(until / MINUTE));
  }

  /** Empty tables with room for `count` entries, at most a third full (so ~30 bytes an entry). */
  #allocate(count: number): void {
    let capacity = MIN_CAPACITY;
    while (capacity < count * 3) capacity *= 2;
    this.#hi = new Uint32Array(capacity);
    this.#lo = new Uint32Array(capacity);
    this.#until = new Uint32Array(capacity);
    this.#occupied = 0;
  }

  #insert(hi: number, lo: number, untilMinutes: number): void {
    const i = this.#slot(hi, lo);
    this.#hi[i] = hi;
    this.#lo[i] = lo;
    this.#until[i] = untilMinutes;
    this.#occupied++;
  }
}
