/** Whether a process id names a live process (reads /proc, so not in core, which does no I/O): what pid lock files (the journal's, `mrp dev`'s) ask. */
import { readFileSync } from 'node:fs';

/**
 * True while `pid` runs. A process that was killed but not yet reaped by its parent (a zombie)
 * still answers signal 0, yet holds nothing — no files, no sockets — so on Linux its state in
 * `/proc/<pid>/stat` decides: `Z` (zombie) or `X` (dead) is not alive. A restart right after a
 * `kill -9` must not be refused because the parent (an init that reaps slowly) has not collected
 * the old process yet. Elsewhere, signal 0 alone decides.
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  if (process.platform !== 'linux') return true;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    // Gone between the two looks; anything else (no /proc mounted): trust the signal.
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
  // "pid (comm) state …": comm may hold spaces and parentheses, so the state follows the last ')'.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X';
}
