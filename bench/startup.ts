/** Start-up: wall time of short commands (spawnSync), medians over interleaved runs. */
import { spawnSync } from 'node:child_process';
import { MRP, median, ROOT } from './lib.js';

export const STARTUP_COMMANDS = {
  node: ['-e', '0'],
  version: [MRP, '--version'],
  help: [MRP, '--help'],
} as const;

export type StartupTimes = Record<keyof typeof STARTUP_COMMANDS, number>;

export function startupTimes(runs: number, warmup: number): StartupTimes {
  const samples: Record<string, number[]> = {};
  for (let i = 0; i < warmup + runs; i++) {
    for (const [name, args] of Object.entries(STARTUP_COMMANDS)) {
      const t0 = performance.now();
      const res = spawnSync(process.execPath, args, { cwd: ROOT, stdio: 'ignore', timeout: 10_000 });
      const ms = performance.now() - t0;
      if (res.status !== 0) throw new Error(`node ${args.join(' ')} exited with ${res.status ?? res.signal}`);
      if (i >= warmup) (samples[name] ??= []).push(ms);
    }
  }
  return { node: median(samples['node']!), version: median(samples['version']!), help: median(samples['help']!) };
}
