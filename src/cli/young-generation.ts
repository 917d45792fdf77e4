/**
 * The runner's young generation: allowed to grow under load up to a cap, then held there.
 *
 * V8 reads the semi-space *size* flags only at start-up, and `mrp` is started as `node mrp.js`
 * (no flags). What it does read while running is the growth factor: 2 lets the young generation
 * double at a scavenge that kept much alive, 1 holds it where it is. So growth is allowed until the
 * cap is reached, then switched off for good: an idle runner stays at V8's 1 MB semi-spaces, a busy
 * one stops at `capBytes` instead of V8's 16 MB. Messages waiting their turn (a thousand in flight)
 * outlive a 1 MB young generation and are copied at every scavenge; at 8 MB most die young.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

/** Starts watching; returns a stop function. `capBytes`: the new space's size (both semi-spaces) at which growth stops. */
export function capYoungGeneration(capBytes: number, everyMs = 50): () => void {
  const size = (): number => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
  if (size() >= capBytes) {
    setFlagsFromString('--semi-space-growth-factor=1');
    return () => {};
  }
  setFlagsFromString('--semi-space-growth-factor=2');
  const timer = setInterval(() => {
    if (size() < capBytes) return;
    setFlagsFromString('--semi-space-growth-factor=1');
    clearInterval(timer);
  }, everyMs);
  timer.unref();
  return () => clearInterval(timer);
}
