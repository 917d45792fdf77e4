/**
 * The runner's young generation: allowed to grow under load up to a cap, and no further.
 *
 * V8 reads the semi-space *size* flags only at start-up, and `mrp` is started as `node mrp.js`
 * (no flags). What it does read while running is the growth factor: 2 lets the young generation
 * double at a scavenge that kept much alive, 1 holds it where it is. So after each garbage
 * collection the factor is set by where the new space stands: 2 below the cap, 1 at or above it.
 * An idle runner's young generation stays where start-up left it (nothing runs for this while it
 * is idle: ~8 MiB here, the same with growth held from the first line); a
 * busy one stops at `capBytes` instead of V8's 2 × 16 MiB, and grows back to it after V8 shrank
 * it during a quiet spell. The size is looked at between event-loop turns (V8 reports collections
 * then), so a long synchronous stretch of allocation can take it past the cap, a doubling per
 * scavenge in that stretch, before growth stops (a runner's turns are short: a socket read of frames).
 *
 * Why: messages waiting their turn (a thousand in flight) outlive a 1 MiB young generation and are
 * copied at every scavenge; at 8 MiB most die young.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

function newSpaceBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

/**
 * Sets the growth factor from the new space's size (2 below `capBytes`, 1 at or above it), only
 * when that changes; call it after each garbage collection.
 */
export function growthSteer(
  capBytes: number,
  size: () => number = newSpaceBytes,
  setFlags: (flags: string) => void = setFlagsFromString,
): () => void {
  let growing: boolean | undefined;
  return () => {
    const grow = size() < capBytes;
    if (grow === growing) return;
    growing = grow;
    setFlags(grow ? '--semi-space-growth-factor=2' : '--semi-space-growth-factor=1');
  };
}

/**
 * Starts watching; returns a stop function. `capBytes`: the new space's size (both semi-spaces)
 * at which growth stops.
 */
export function capYoungGeneration(capBytes: number): () => void {
  const steer = growthSteer(capBytes);
  steer();
  const observer = new PerformanceObserver(steer);
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}
