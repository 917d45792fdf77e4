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
import { ConfigError, MrpError } from '../core/errors.js';
import { currentHandlerMessage } from '../runtime/scope.js';
import { EXIT, exitCodeFor } from './exit.js';

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

/** Set by a service (`mrp run`, `mrp relay`): a reader of its output going away does not end it. */
let servesWithoutOutput = false;

/**
 * For commands that serve (`mrp run`, `mrp relay`): when stdout or stderr's reader goes away (a
 * restarted journald, a log shipper that died, `| head`), the process keeps serving without its
 * log instead of ending — before, it exited at its next log line, with 0, so a supervisor's
 * `Restart=on-failure` left the agent or the relay down.
 */
export function keepServingWithoutOutput(): void {
  servesWithoutOutput = true;
}

/** Whether the running command keeps serving when its output is gone (see `keepServingWithoutOutput`). */
export function outputOptional(): boolean {
  return servesWithoutOutput;
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

/**
 * `trapHandlerExit` for a command that runs handlers (`mrp run`, `mrp dev`): the call is reported
 * as `handler_exit` (`then`: what happens next, after "the runner exits 70"), and the journal and
 * the reporter are flushed before the process goes.
 */
export function trapRunnerExit(
  sinks: { reporter: { problem(event: string, err: unknown): void; flush(): void }; journal: { flush(): void } },
  command: string,
  then = '',
): ExitTrap {
  return trapHandlerExit(process, (messageId, code, call) => {
    sinks.reporter.problem(
      'handler_exit',
      new MrpError(
        'handler',
        'handler_exit',
        `the handler called process.${call}(${String(code ?? '')}) while handling ${messageId}; ${command} exits ${EXIT.handlerExit}${then}`,
      ),
    );
    sinks.journal.flush();
    sinks.reporter.flush();
  });
}

/** What `loadWatched` needs of `process`: the exit calls, and its 'exit' event and code. */
export interface LoadingProcess extends ExitingProcess {
  once(event: 'exit', listener: (code: number) => void): unknown;
  off(event: 'exit', listener: (code: number) => void): unknown;
  exitCode?: number | string | null | undefined;
}

/**
 * Loads handler code (`load`: `loadHandler(…)`) with what its top-level code does to the process
 * watched, for the two ways it could otherwise end `mrp` silently:
 *
 * - it calls `process.exit` (or `reallyExit`) while loading. `exit`: `report` says so and the
 *   process exits 70 (`handler_exit`), as it does when a handler calls it on a message; without
 *   this, `process.exit(0)` at load ended `mrp run` with 0 and no word, and a supervisor took it
 *   for a clean stop. `throw` (doctor): the call throws instead, so loading fails and is reported.
 * - its top-level `await` can never settle: Node then ends the process when nothing is left to
 *   run (exit 13, or 0), without a word. With `exit`, `report` says so and the exit code is 2
 *   (`handler_load`).
 */
export async function loadWatched<T>(
  load: () => Promise<T>,
  options: { onExitCall: 'exit' | 'throw'; report: (err: MrpError) => void },
  proc: LoadingProcess = process,
): Promise<T> {
  const exitError = (call: ExitCall, code: unknown): MrpError =>
    new MrpError(
      'handler',
      'handler_exit',
      `the handler called process.${call}(${code === undefined ? '' : String(code)}) while loading, so it cannot run`,
      { hint: "remove that call from the module's top-level code (throw an error instead to refuse to start)" },
    );
  /** Set when the module's own exit call is what ends the process (reported already). */
  let exitCalled = false;
  const onProcessExit = (): void => {
    // Not for an exit the module asked for (reported already) or the CLI's own (cliExit).
    if (exitCalled || cliExiting) return;
    const err = new ConfigError(
      'handler_load',
      'the handler never finished loading: its top-level code awaits something that can never settle',
      { hint: 'check the `await`s at the top level of the handler module (and of the modules it imports)' },
    );
    options.report(err);
    proc.exitCode = exitCodeFor(err);
  };
  // doctor (`throw`) bounds the load with its --timeout instead: its checks go on after one that hangs.
  if (options.onExitCall === 'exit') proc.once('exit', onProcessExit);
  let restore: () => void;
  if (options.onExitCall === 'exit') {
    const trap = trapHandlerExit(proc, (_messageId, code, call) => {
      exitCalled = true;
      options.report(exitError(call, code));
    });
    restore = () => trap.dispose();
  } else {
    const { exit, reallyExit } = proc;
    proc.exit = ((code?: number | string | null) => {
      throw exitError('exit', code);
    }) as ExitingProcess['exit'];
    if (reallyExit !== undefined)
      proc.reallyExit = (code?: number) => {
        throw exitError('reallyExit', code);
      };
    restore = () => {
      proc.exit = exit;
      if (reallyExit !== undefined) proc.reallyExit = reallyExit;
    };
  }
  try {
    return await load();
  } finally {
    restore();
    proc.off('exit', onProcessExit);
  }
}
