/**
 * Which message's handler is running "here". Handlers run inside an AsyncLocalStorage scope
 * carrying their message id, so code that intercepts process-wide calls (the CLI replaces
 * `process.exit` while a runner is active) can tell a handler's call — which must count against
 * that message and end the runner with a distinctive code — from the CLI's own.
 */
import { AsyncLocalStorage } from 'node:async_hooks';

const scope = new AsyncLocalStorage<{ messageId: string }>();

/** Runs `fn` (a handler call) in the scope of `messageId`. */
export function inHandlerScope<T>(messageId: string, fn: () => T): T {
  return scope.run({ messageId }, fn);
}

/** The id of the message whose handler (or anything it started) is running now, if any. */
export function currentHandlerMessage(): string | undefined {
  return scope.getStore()?.messageId;
}
