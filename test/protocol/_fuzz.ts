/**
 * Seeded random inputs for property tests: the same seed gives the same inputs, so a failure
 * reproduces (`FUZZ_SEED=<n>` picks another seed; a failing test prints its seed and case).
 */

/** mulberry32: a tiny, fast, seedable PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const SEED = Number(process.env['FUZZ_SEED'] ?? 20_260_305);

export class Gen {
  readonly random: () => number;
  constructor(seed: number) {
    this.random = prng(seed);
  }

  int(max: number): number {
    return Math.floor(this.random() * max);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  chance(p: number): boolean {
    return this.random() < p;
  }

  /** A JSON string literal (quotes included) with escapes, unicode and the odd lone surrogate escape. */
  stringLiteral(): string {
    const parts = [
      'a',
      'é',
      '😀',
      '\\n',
      '\\"',
      '\\\\',
      '\\u0000',
      '\\ud800',
      '[',
      '{',
      ']',
      '}',
      ',',
      ':',
      ' ',
      'body',
      'type',
    ];
    let s = '';
    for (let i = this.int(8); i > 0; i--) s += this.pick(parts);
    return `"${s}"`;
  }

  numberLiteral(): string {
    return this.pick(['0', '-1', '12345678901234567890', '1e999', '-0.0', '3.14', '1E-7', String(this.int(1e9))]);
  }

  /** Random JSON text, nested up to `depth` (sometimes far past the limit), with duplicate keys. */
  json(depth: number): string {
    const r = this.int(10);
    if (depth <= 0 || r < 3) return this.pick([this.stringLiteral(), this.numberLiteral(), 'true', 'false', 'null']);
    if (r < 6) {
      const n = this.int(4);
      return `[${Array.from({ length: n }, () => this.json(depth - 1)).join(',')}]`;
    }
    const keys = ['type', 'body', 'message', 'ts', 'request_id', 'recipient_key', 'a', 'a'];
    const n = this.int(4);
    return `{${Array.from({ length: n }, () => `"${this.pick(keys)}":${this.json(depth - 1)}`).join(',')}}`;
  }

  /** Nesting `n` deep around a value. */
  nested(n: number, inner = '1'): string {
    return `${'['.repeat(n)}${inner}${']'.repeat(n)}`;
  }

  bytes(max: number): Buffer {
    const out = Buffer.alloc(this.int(max));
    for (let i = 0; i < out.length; i++) out[i] = this.int(256);
    return out;
  }

  /** Breaks a text: truncates, splices in junk, or flips a byte. */
  mutate(text: string): string {
    switch (this.int(4)) {
      case 0:
        return text.slice(0, this.int(text.length + 1));
      case 1: {
        const at = this.int(text.length + 1);
        return (
          text.slice(0, at) + this.pick(['{', '}', '[', ']', '"', ',', ':', '\\', 'null', '\u0000']) + text.slice(at)
        );
      }
      case 2: {
        const at = this.int(Math.max(1, text.length));
        return text.slice(0, at) + String.fromCharCode(this.int(0x7f)) + text.slice(at + 1);
      }
      default:
        return text;
    }
  }
}
