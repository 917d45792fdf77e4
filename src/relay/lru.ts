/**
 * A least-recently-used map (CLOCK: a read marks, eviction gives marked entries a second chance)
 * bounded by entry count and by an estimate of bytes. Caches in front of
 * the store use it so that memory depends on these two numbers, never on what callers store or
 * how many distinct keys they ask for.
 *
 * `Cache` is the interface the directory's caches are typed with, so that another one (with a
 * TTL, or with metrics) can be passed to `createRelay({ caches })`. Caches are per process by
 * nature; with several processes they stay correct because the directory drops entries when the
 * bus says the agent or ACL changed elsewhere.
 */
export interface Cache<K, V> {
  /** The value, or undefined when not cached. */
  get(key: K): V | undefined;
  /** Caches `value` (a cache may decline to keep it) and returns it. */
  set<T extends V>(key: K, value: T): T;
  delete(key: K): boolean;
  clear(): void;
}

export class Lru<K, V> implements Cache<K, V> {
  readonly maxEntries: number;
  readonly maxBytes: number;
  readonly #sizeOf: (value: V) => number;
  readonly #map = new Map<K, { value: V; bytes: number; used: boolean }>();
  #bytes = 0;

  constructor(maxEntries: number, maxBytes: number, sizeOf: (value: V) => number) {
    this.maxEntries = maxEntries;
    this.maxBytes = maxBytes;
    this.#sizeOf = sizeOf;
  }

  get size(): number {
    return this.#map.size;
  }

  /** Estimated bytes held. */
  get bytes(): number {
    return this.#bytes;
  }

  has(key: K): boolean {
    return this.#map.has(key);
  }

  /**
   * The value, marking it recently used. A mark, not a move (a hit is on every message's path):
   * eviction gives a marked entry a second chance (moves it to the young end, unmarked) and takes
   * the oldest unmarked one — the CLOCK approximation of least recently used.
   */
  get(key: K): V | undefined {
    const entry = this.#map.get(key);
    if (!entry) return undefined;
    entry.used = true;
    return entry.value;
  }

  /** Stores `value` (a value larger than `maxBytes` alone is not kept) and returns it. */
  set<T extends V>(key: K, value: T): T {
    this.delete(key);
    const bytes = this.#sizeOf(value);
    if (bytes > this.maxBytes) return value;
    this.#map.set(key, { value, bytes, used: false });
    this.#bytes += bytes;
    while (this.#map.size > this.maxEntries || this.#bytes > this.maxBytes) {
      const [oldest, entry] = this.#map.entries().next().value as [K, { value: V; bytes: number; used: boolean }];
      // The entry just set is the most recently used one: passed over like a marked one.
      if ((entry.used || oldest === key) && this.#map.size > 1) {
        // Each entry is moved at most once per eviction (its mark is cleared): this ends.
        entry.used = false;
        this.#map.delete(oldest);
        this.#map.set(oldest, entry);
        continue;
      }
      this.delete(oldest);
    }
    return value;
  }

  delete(key: K): boolean {
    const entry = this.#map.get(key);
    if (!entry) return false;
    this.#map.delete(key);
    this.#bytes -= entry.bytes;
    return true;
  }

  clear(): void {
    this.#map.clear();
    this.#bytes = 0;
  }
}
