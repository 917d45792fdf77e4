/** A journal file system (`JournalFs`) whose writes fail with ENOSPC on demand: a full disk. */
import * as fs from 'node:fs';
import type { JournalFs } from '../../src/runtime/journal.js';

/** node:fs, except that writes fail with ENOSPC while `full` (after writing `partial` bytes once). */
export class FlakyDisk {
  full = false;
  /** Bytes the next failing write still manages to write before failing. */
  partial = 0;
  failures = 0;
  readonly fs: JournalFs;
  #waiters: Array<{ n: number; resolve: () => void }> = [];

  /** Resolves once `n` writes have failed in all (an event to wait for, not a time). */
  failed(n: number): Promise<void> {
    if (this.failures >= n) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ n, resolve }));
  }

  constructor() {
    this.fs = {
      ...(fs as unknown as JournalFs),
      writeSync: (fd, buffer, offset, length) => {
        if (this.full) {
          if (this.partial > 0) {
            const n = fs.writeSync(fd, buffer, offset, Math.min(length, this.partial));
            this.partial = 0;
            return n;
          }
          this.failures++;
          for (const w of this.#waiters.filter((x) => x.n <= this.failures)) w.resolve();
          this.#waiters = this.#waiters.filter((x) => x.n > this.failures);
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        }
        return fs.writeSync(fd, buffer, offset, length);
      },
    };
  }
}
