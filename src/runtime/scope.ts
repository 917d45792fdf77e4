/**
 * Which messages' handlers may be running "now". Code that intercepts process-wide calls (the
 * CLI replaces `process.exit` while a runner is active) uses it to tell a handler's call — which
 * must count against the message and end the runner with a distinctive code — from the CLI's own
 * (which goes through `cliExit` in src/cli/handler-exit.ts).
 *
 * A registry of running handlers, not an AsyncLocalStorage: on Node 20 an AsyncLocalStorage
 * installs promise hooks that run on every promise the process creates (a JS call each, plus the
 * context copies), which cost the runner more CPU per message than the handler call itself. A
 * handler stays registered until the promise it returned settles, even past its deadline, so
 * handler code still running after a timeout is recognised too. The price: while several handlers
 * run, a call cannot say which of them made it; the report names them all (the journal counts
 * the run against every started, unfinished message anyway).
 */

/** Message id → handler runs on it not yet settled. */
const running = new Map<string, number>();

function enter(messageId: string): void {
  running.set(messageId, (running.get(messageId) ?? 0) + 1);
}

function leave(messageId: string): void {
  const n = (running.get(messageId) ?? 1) - 1;
  if (n <= 0) running.delete(messageId);
  else running.set(messageId, n);
}

/**
 * Runs `fn` (a handler call) registered under `messageId` until what it returns settles (at once
 * when it returns a non-promise or throws).
 */
export function inHandlerScope<T>(messageId: string, fn: () => T): T {
  enter(messageId);
  let result: T;
  try {
    result = fn();
  } catch (err) {
    leave(messageId);
    throw err;
  }
  if (result instanceof Promise) {
    const done = (): void => leave(messageId);
    result.then(done, done);
  } else leave(messageId);
  return result;
}

/**
 * The message (or, while several run, the messages, comma-separated) whose handlers may be running
 * now; undefined when none is.
 */
export function currentHandlerMessage(): string | undefined {
  if (running.size === 0) return undefined;
  const ids = [...running.keys()];
  return ids.length <= 3 ? ids.join(', ') : `${ids.slice(0, 3).join(', ')} and ${ids.length - 3} more`;
}
