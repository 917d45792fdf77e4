/**
 * `process.exit` (or the internal `process.reallyExit` it ends in) called by handler code must not
 * end a runner as if all were well. While a runner is active, both are replaced: a call made from
 * inside a handler (known through the runtime's handler scope) reports it, writes out the journal
 * — whose `started` record already counts this run against the message — and exits with
 * `EXIT.handlerExit` (70), so a supervisor restarts the runner and, after `--max-crashes` such
 * runs, the message is answered with `handler_crashed` instead of being run again. The CLI's
 * own calls go through `cliExit` and pass untouched; any other call while the trap is set comes
 * from handler code (also code a handler left running after it returned: a timer, a promise).
 *
 * Why exit rather than throw inside the handler: code that calls `process.exit` expects nothing
 * after the call to run; turning it into an exception would run the handler's `finally` blocks
 * and callers' catch blocks in a state its author never planned for.
 */
import { currentHandlerMessage } from '../runtime/scope.js';
import { EXIT } from './exit.js';

export interface ExitTrap {
  /** Restores the original `process.exit` and `process.reallyExit`. */
  dispose(): void;
}

/** The process-ending calls that are trapped: `exit`, and the internal `reallyExit` it ends in. */
export type ExitCall = 'exit' | 'reallyExit';

/** Set by `cliExit`: the CLI itself is ending the process, whatever handlers are running. */
let cliExiting = false;

/**
 * The CLI's own `process.exit` (a closed stdout, an error while reporting one): never a handler's.
 * While a runner is active, every other call is taken for one made by handler code.
 */
export function cliExit(code: number, proc: Pick<ExitingProcess, 'exit'> = process): never {
  cliExiting = true;
  return proc.exit(code);
}

/** What `trapHandlerExit` replaces (`process`, or a stand-in in tests). */
export interface ExitingProcess {
  exit: (code?: number | string | null) => never;
  /** Node's undocumented binding behind `process.exit` (skips 'exit' listeners); callable by anyone. */
  reallyExit?: (code?: number) => void;
}

/**
 * Replaces `proc.exit` and `proc.reallyExit` until `dispose()`. `onHandlerExit` runs first
 * (report, flush); it must not throw (anything it throws is ignored). It runs once, however the
 * handler ended the process (`process.exit` itself ends in `process.reallyExit`).
 */
export function trapHandlerExit(
  proc: ExitingProcess,
  onHandlerExit: (messageId: string, code: unknown, call: ExitCall) => void,
): ExitTrap {
  const originalExit = proc.exit;
  const originalReallyExit = proc.reallyExit;
  /** Set once a handler's exit was reported: what follows (exit → reallyExit) passes through. */
  let ending = false;
  const report = (call: ExitCall, code: unknown): boolean => {
    if (ending || cliExiting) return false;
    // Handler code may call it after its handler returned (a timer, a promise it left running):
    // still the handler's, even though no message can be named then.
    const messageId = currentHandlerMessage() ?? 'no message (code a handler left running)';
    ending = true;
    try {
      onHandlerExit(messageId, code, call);
    } catch {
      // Exiting is what matters now.
    }
    return true;
  };
  const trappedExit = ((code?: number | string | null): never =>
    originalExit.call(proc, report('exit', code) ? EXIT.handlerExit : code)) as typeof proc.exit;
  proc.exit = trappedExit;
  let trappedReallyExit: ExitingProcess['reallyExit'];
  if (originalReallyExit !== undefined) {
    const trapped = (code?: number): void =>
      originalReallyExit.call(proc, report('reallyExit', code) ? EXIT.handlerExit : code);
    proc.reallyExit = trapped;
    trappedReallyExit = trapped;
  }
  return {
    dispose: () => {
      cliExiting = false;
      if (proc.exit === trappedExit) proc.exit = originalExit;
      if (originalReallyExit !== undefined && proc.reallyExit === trappedReallyExit)
        proc.reallyExit = originalReallyExit;
    },
  };
}
