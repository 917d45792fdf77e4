/**
 * Everything the CLI takes from the outside world, as one parameter (habit 5 and 7): tests call
 * `main(argv, deps)` in process with captured streams, a temp MRP_HOME and a manual clock.
 */
import { homedir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { type Clock, systemClock } from '../core/clock.js';
import { cliExit } from './handler-exit.js';

export interface OutStream {
  write(chunk: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface InStream extends AsyncIterable<Buffer | string> {
  isTTY?: boolean;
}

export type SignalName = 'SIGINT' | 'SIGTERM' | 'SIGHUP';

export interface Deps {
  stdout: OutStream;
  stderr: OutStream;
  stdin: InStream;
  env: Record<string, string | undefined>;
  cwd: string;
  homedir: string;
  clock: Clock;
  /** Subscribes to a process signal; returns the unsubscribe function. */
  onSignal(signal: SignalName, handler: () => void): () => void;
  /**
   * Catches errors nothing else caught (unhandled rejections, exceptions thrown from timers), so a
   * buggy handler cannot kill a runner. Returns the unsubscribe function.
   */
  onUncaught(handler: (err: unknown) => void): () => void;
}

/** The real process. */
export function processDeps(): Deps {
  return {
    stdout: process.stdout,
    stderr: process.stderr,
    stdin: process.stdin,
    env: process.env,
    cwd: process.cwd(),
    homedir: homedir(),
    clock: systemClock,
    onSignal(signal, handler) {
      process.on(signal, handler);
      return () => void process.off(signal, handler);
    },
    onUncaught(handler) {
      let inside = false;
      const guarded = (err: unknown): void => {
        // An error while reporting an error (e.g. stdout is gone) must not loop: give up.
        if (inside) cliExit(1);
        inside = true;
        try {
          handler(err);
        } finally {
          inside = false;
        }
      };
      process.on('unhandledRejection', guarded);
      process.on('uncaughtException', guarded);
      return () => {
        process.off('unhandledRejection', guarded);
        process.off('uncaughtException', guarded);
      };
    },
  };
}

/** This package's `bin/mrp.js`, absolute. */
export function mrpBin(): string {
  return fileURLToPath(new URL('../../bin/mrp.js', import.meta.url));
}

/**
 * How the person typing runs this CLI, for commands printed to paste. `mrp` when it is installed;
 * when npm launched it (`npx mrp …`, `npm exec`) `mrp` is not on their PATH, and `npx mrp` in
 * another directory would fetch whatever the registry has under that name, so it is `node` and
 * this package's own `bin/mrp.js`, which works from any directory.
 */
export function selfCommand(env: Deps['env']): string {
  if (env['npm_command'] !== 'exec') return 'mrp';
  const bin = mrpBin();
  return `node ${/^[\w@%+=:,./-]+$/.test(bin) ? bin : `'${bin.replaceAll("'", "'\\''")}'`}`;
}
