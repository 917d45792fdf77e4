/**
 * Errors to exit codes (documented in the README). The numbers and the code → exit mapping live in
 * the one error-code table (`src/core/codes.ts`); everything the CLI does ends here or in a 0.
 */
import { EXIT, exitCodeOf } from '../core/codes.js';
import { MrpError } from '../core/errors.js';

export { EXIT };

/**
 * The code's exit code when the error has the code's kind, else the kind's. `journal_locked` is a
 * file error, but nothing is wrong with the command or the file: another process owns the identity
 * right now (1, not 2 = usage).
 */
export function exitCodeFor(err: unknown): number {
  if (!(err instanceof MrpError)) return EXIT.failure;
  return exitCodeOf(err.kind, err.code);
}
