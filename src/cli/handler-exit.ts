/**
 * `process.exit` called by handler code must not end a runner as if all were well. While a runner
 * is active, `process.exit` is replaced: a call made from inside a handler (known through the
 * runtime's handler scope) reports it, writes out the journal — whose `started` record already
 * counts this run against the message — and exits with `EXIT.handlerExit` (70), so a supervisor
 * restarts the runner and, after `--max-crashes` such runs, the message is answered with
 * `handler_crashed` instead of being run again. Calls from anywhere else (the CLI itself) pass
 * through untouched.
 *
 * Why exit rather than throw inside the handler: code that calls `process.exit` expects nothing
 * after the call to run; turning it into an exception would run the handler's `finally` blocks
 * and callers' catch blocks in a state its author never planned for.
 */
import { currentHandlerMessage } from '../runtime/scope.js';
import { EXIT } from './exit.js';

export interface ExitTrap {
  /** Restores the original `process.exit`. */
  dispose(): void;
}

/**
 * Replaces `proc.exit` until `dispose()`. `onHandlerExit` runs first (report, flush); it must
 * not throw (anything it throws is ignored).
 */
export function trapHandlerExit(proc: { exit: (code?: number | string | null) => never }, onHandlerExit: (messageId: string, code: unknown) => void): ExitTrap {
  const original = proc.exit;
  const trapped = ((code?: number | string | null): never => {
    const messageId = currentHandlerMessage();
    if (messageId === undefined) return original.call(proc, code);
    try {
      onHandlerExit(messageId, code);
    } catch {
      // Exiting is what matters now.
    }
    return original.call(proc, EXIT.handlerExit);
  }) as typeof proc.exit;
  proc.exit = trapped;
  return {
    dispose: () => {
      if (proc.exit === trapped) proc.exit = original;
    },
  };
}
