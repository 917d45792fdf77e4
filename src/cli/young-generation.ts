/**
 * The runner's young generation: allowed to grow under load up to a cap, then held there.
 *
 * V8 reads the semi-space *size* flags only at start-up, and `mrp` is started as `node mrp.js`
 * (no flags). What it does read while running is the growth factor: 2 lets the young generation
 * double at a scavenge that kept much alive, 1 holds it where it is. So growth is allowed until the
 * cap is reached, then switched off for good: an idle runner stays at V8's 1 MiB semi-spaces, a
 * busy one stops at `capBytes` instead of V8's 2 × 16 MiB. Messages waiting their turn (a thousand
 * in flight) outlive a 1 MiB young generation and are copied at every scavenge; at 8 MiB most die
 * young. The size is looked at after garbage collections only (nothing runs while idle), and not
 * at all once the cap is reached.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

function newSpaceBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

/** Starts watching; returns a stop function. `capBytes`: the new space's size (both semi-spaces) at which growth stops. */
export function capYoungGeneration(capBytes: number): () => void {
  if (newSpaceBytes() >= capBytes) {
    setFlagsFromString('--semi-space-growth-factor=1');
    return () => {};
  }
  setFlagsFromString('--semi-space-growth-factor=2');
  const observer = new PerformanceObserver(() => {
    if (newSpaceBytes() < capBytes) return;
    setFlagsFromString('--semi-space-growth-factor=1');
    observer.disconnect();
  });
  observer.observe({ entryTypes: ['gc'] });
  return () => observer.disconnect();
}
