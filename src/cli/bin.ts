/**
 * Process glue for `bin/mrp.js`: real deps, exit code, and quiet handling of a closed pipe
 * (`mrp tail | head`).
 */
import { processDeps } from './deps.js';
import { cliExit, outputOptional } from './handler-exit.js';
import { main } from './main.js';

export async function run(argv: string[]): Promise<void> {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      // The reader went away (`mrp tail | head`, a closed terminal): nothing left to say.
      if (err.code === 'EPIPE' || err.code === 'EIO' || err.code === 'ERR_STREAM_DESTROYED') {
        // A service goes on without its log (`keepServingWithoutOutput`); any other command is done.
        if (outputOptional()) return;
        cliExit(Number(process.exitCode ?? 0));
      }
      throw err;
    });
  }
  const code = await main(argv, processDeps());
  process.exitCode = code;
  // A second Ctrl-C means "now": do not wait for sockets or handlers still winding down.
  if (code === 130) process.exit(code);
  // The command is done. Handler code (`mrp run`, `mrp dev`) may have left handles open — a
  // timer, a server, a database pool — that would keep the process alive after "stopped", so a
  // supervisor's SIGTERM would end in its SIGKILL. Nothing of ours is pending now: exit shortly if
  // the process has not ended by itself (unref: this timer alone keeps nothing alive).
  setTimeout(() => cliExit(code), EXIT_AFTER_MS).unref();
}

/** How long the process may linger once the command returned (see `run`). */
const EXIT_AFTER_MS = 500;
