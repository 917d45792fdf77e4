/**
 * Process glue for `bin/mrp.js`: real deps, exit code, and quiet handling of a closed pipe
 * (`mrp tail | head`).
 */
import { processDeps } from './deps.js';
import { cliExit } from './handler-exit.js';
import { main } from './main.js';

export async function run(argv: string[]): Promise<void> {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      // The reader went away (`mrp tail | head`, a closed terminal): nothing left to say.
      if (err.code === 'EPIPE' || err.code === 'EIO' || err.code === 'ERR_STREAM_DESTROYED')
        cliExit(Number(process.exitCode ?? 0));
      throw err;
    });
  }
  const code = await main(argv, processDeps());
  process.exitCode = code;
  // A second Ctrl-C means "now": do not wait for sockets or handlers still winding down.
  if (code === 130) process.exit(code);
}
