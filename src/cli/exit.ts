/**
 * The one table from errors to exit codes (documented in the README). Everything the CLI does
 * ends here or in a 0.
 */
import { type ErrorKind, MrpError } from '../core/errors.js';

export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  network: 3,
  auth: 4,
  /** `mrp run`: a handler called process.exit (the message counts as a crash; restart the runner). */
  handlerExit: 70,
  interrupted: 130,
} as const;

const BY_KIND: Record<ErrorKind, number> = {
  usage: EXIT.usage,
  config: EXIT.usage,
  auth: EXIT.auth,
  api: EXIT.failure,
  network: EXIT.network,
  timeout: EXIT.network,
  protocol: EXIT.failure,
  handler: EXIT.failure,
  aborted: EXIT.interrupted,
  internal: EXIT.failure,
};

/**
 * Codes whose kind would say otherwise. `journal_locked` is a file error, but nothing is wrong
 * with the command or the file: another process owns the identity right now (1, not 2 = usage).
 */
const BY_CODE: Record<string, number> = {
  journal_locked: EXIT.failure,
};

export function exitCodeFor(err: unknown): number {
  if (!(err instanceof MrpError)) return EXIT.failure;
  return BY_CODE[err.code] ?? BY_KIND[err.kind];
}
