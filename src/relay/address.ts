/**
 * Counting by client address, for the caps that hold per client rather than per key (keys are
 * free to make): body reads in progress (`body.ts`) and WebSocket connections (`server.ts`).
 * Which addresses count as one client is `addressKey` — an IPv4 address, or an IPv6 /64 (the
 * block one host or home usually gets, so rotating addresses within it gains nothing). Behind a
 * reverse proxy every client has the proxy's address; the per-address caps must be raised there.
 */

/** The key a client is counted under: the IPv4 address, or the /64 of an IPv6 one (our choice). */
export function addressKey(remote: string | undefined): string {
  if (!remote) return '';
  if (remote.startsWith('::ffff:') && remote.includes('.')) return remote.slice(7);
  if (!remote.includes(':')) return remote;
  // Expand "::" to count groups, then keep the first four (the /64).
  const [head = '', tail] = remote.split('%')[0]!.split('::');
  const left = head ? head.split(':') : [];
  const right = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/** Counts of something per address, with a cap per address and one in total. */
export class AddressCounter {
  readonly maxTotal: number;
  readonly maxPerAddress: number;
  total = 0;
  readonly #byAddress = new Map<string, number>();

  constructor(maxTotal: number, maxPerAddress: number) {
    this.maxTotal = maxTotal;
    this.maxPerAddress = maxPerAddress;
  }

  /** How many `address` (an `addressKey`) holds. */
  count(address: string): number {
    return this.#byAddress.get(address) ?? 0;
  }

  /** Why one more for `address` is refused (`'total'` or `'address'`), or undefined when it may have one. */
  refusal(address: string): 'total' | 'address' | undefined {
    if (this.count(address) >= this.maxPerAddress) return 'address';
    if (this.total >= this.maxTotal) return 'total';
    return undefined;
  }

  add(address: string): void {
    this.total++;
    this.#byAddress.set(address, this.count(address) + 1);
  }

  remove(address: string): void {
    const n = this.count(address) - 1;
    if (n < 0) return;
    this.total--;
    if (n > 0) this.#byAddress.set(address, n);
    else this.#byAddress.delete(address);
  }
}
