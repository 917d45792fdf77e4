/**
 * A pid lock file: one process at a time owns a directory's resource (`mrp dev`'s relay data and
 * keys). Created exclusively; a lock left by a process that no longer runs is taken over.
 */
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { isAlive } from '../runtime/pid.js';

/** Locks this process holds (a file naming our own pid is ours only if it is listed here). */
const held = new Set<string>();

/**
 * Takes the lock at `path`. Returns a release function, or the pid of the live process that holds
 * it (possibly this one). The directory must exist.
 */
export function takeLock(path: string): { release: () => void } | { heldBy: number } {
  if (held.has(path)) return { heldBy: process.pid };
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      held.add(path);
      return {
        release: () => {
          held.delete(path);
          try {
            unlinkSync(path);
          } catch {
            // Already gone.
          }
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let pid = NaN;
      try {
        pid = Number(readFileSync(path, 'utf8').trim());
      } catch {
        // Removed meanwhile: try again.
      }
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid)) return { heldBy: pid };
      try {
        unlinkSync(path);
      } catch {
        // Someone else took it over first; the next attempt tells.
      }
    }
  }
  throw new Error(`cannot take the lock ${path}`);
}
