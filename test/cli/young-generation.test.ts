/**
 * The runner's young-generation cap (src/cli/young-generation.ts), in a child process of its own
 * (V8 flags are process-wide): under a load whose survivors make V8 grow the young generation, it
 * grows to the cap and stops there.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { growthSteer } from '../../src/cli/young-generation.js';

const MODULE = fileURLToPath(new URL('../../src/cli/young-generation.ts', import.meta.url));

/** Runs a load in a fresh node; returns the new space's size (bytes) at the end. */
function newSpaceAfterLoad(capBytes: number | undefined): number {
  const script = `
    import { getHeapSpaceStatistics } from 'node:v8';
    const { capYoungGeneration } = await import(${JSON.stringify(MODULE)});
    ${capBytes === undefined ? '' : `capYoungGeneration(${capBytes});`}
    // Objects that live a while (a ring of 200,000), as messages waiting their turn do. Made in
    // turns of ~1 MB, as a runner's do: the steering looks between turns, and a longer synchronous
    // stretch could see several scavenges (and doublings) before it does.
    const ring = new Array(200_000);
    for (let round = 0; round < 300; round++) {
      for (let i = 0; i < 10_000; i++) ring[(round * 10_000 + i) % ring.length] = { n: i, s: 'x' + i, a: [i] };
      await new Promise((r) => setImmediate(r));
    }
    const ns = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
    console.log(ns.space_size);
  `;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  return Number(r.stdout.trim());
}

describe('young generation cap', () => {
  it('steers by size: growth on below the cap, off at it, on again once V8 shrank it (only on changes)', () => {
    const MiB = 1024 * 1024;
    const sizes = [2, 4, 8, 16, 16, 32, 2, 2, 4, 16].map((n) => n * MiB);
    const flags: string[] = [];
    const steer = growthSteer(
      16 * MiB,
      () => sizes.shift()!,
      (f) => flags.push(f),
    );
    for (let i = 0; i < 10; i++) steer();
    assert.deepEqual(flags, [
      '--semi-space-growth-factor=2',
      '--semi-space-growth-factor=1',
      '--semi-space-growth-factor=2',
      '--semi-space-growth-factor=1',
    ]);
  });

  it('grows under load to the cap, then stops (V8 alone goes on to its own maximum)', () => {
    const MiB = 1024 * 1024;
    const capped = newSpaceAfterLoad(4 * MiB);
    assert.ok(capped >= 4 * MiB, `grew to the cap: ${capped}`);
    assert.ok(capped <= 8 * MiB, `stopped near it: ${capped}`);
    const free = newSpaceAfterLoad(undefined);
    assert.ok(free > 8 * MiB, `the same load without the cap grows further: ${free}`);
  });
});
