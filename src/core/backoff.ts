/**
 * Reconnect/retry delays (docs/protocol.md §5.7, our choice): the first retry after a random delay between
 * `firstMinMs` and `firstMaxMs`, then doubling up to `maxMs` with equal jitter (half fixed, half
 * random). `reset()` after a stable period starts over.
 */
export interface BackoffOptions {
  firstMinMs?: number;
  firstMaxMs?: number;
  maxMs?: number;
  /** Uniform random number in [0, 1). */
  random?: () => number;
}

export const BACKOFF_DEFAULTS = { firstMinMs: 250, firstMaxMs: 1000, maxMs: 30_000 } as const;

export class Backoff {
  readonly #firstMin: number;
  readonly #firstMax: number;
  readonly #max: number;
  readonly #random: () => number;
  #attempt = 0;

  constructor(options: BackoffOptions = {}) {
    this.#firstMin = options.firstMinMs ?? BACKOFF_DEFAULTS.firstMinMs;
    this.#firstMax = options.firstMaxMs ?? BACKOFF_DEFAULTS.firstMaxMs;
    this.#max = options.maxMs ?? BACKOFF_DEFAULTS.maxMs;
    this.#random = options.random ?? Math.random;
    if (!(this.#firstMin >= 0 && this.#firstMax >= this.#firstMin && this.#max >= this.#firstMax)) {
      throw new RangeError('Backoff: need 0 <= firstMinMs <= firstMaxMs <= maxMs');
    }
  }

  /** How many delays have been handed out since the last reset. */
  get attempt(): number {
    return this.#attempt;
  }

  /** The next delay in milliseconds. */
  next(): number {
    const n = this.#attempt++;
    if (n === 0) return Math.round(this.#firstMin + this.#random() * (this.#firstMax - this.#firstMin));
    const ceiling = Math.min(this.#max, this.#firstMax * 2 ** n);
    return Math.round(ceiling / 2 + this.#random() * (ceiling / 2));
  }

  reset(): void {
    this.#attempt = 0;
  }
}
