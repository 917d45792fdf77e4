/**
 * SIGINT/SIGTERM for long-running commands: the first signal asks for a graceful stop, a second
 * one means "now" (exit 130, unfinished work is redelivered later).
 */
import type { Deps, SignalName } from './deps.js';
import { EXIT } from './exit.js';
import { ReportedError } from './program.js';

export interface ShutdownSignals {
  /** Resolves with the first signal. */
  first: Promise<SignalName>;
  /** Resolves with the second signal. */
  second: Promise<SignalName>;
  /** Waits for a graceful stop; a second signal meanwhile ends the command at once (exit 130). */
  finishOrInterrupt(stopping: Promise<unknown>): Promise<void>;
  dispose(): void;
}

export function shutdownSignals(deps: Deps): ShutdownSignals {
  let count = 0;
  let resolveFirst!: (s: SignalName) => void;
  let resolveSecond!: (s: SignalName) => void;
  const first = new Promise<SignalName>((r) => (resolveFirst = r));
  const second = new Promise<SignalName>((r) => (resolveSecond = r));
  const handler = (signal: SignalName) => () => {
    count++;
    if (count === 1) resolveFirst(signal);
    else resolveSecond(signal);
  };
  const offs = (['SIGINT', 'SIGTERM'] as const).map((s) => deps.onSignal(s, handler(s)));
  return {
    first,
    second,
    async finishOrInterrupt(stopping) {
      const forced = await Promise.race([stopping.then(() => false), second.then(() => true)]);
      if (forced) throw new ReportedError(EXIT.interrupted);
    },
    dispose: () => {
      for (const off of offs) off();
    },
  };
}
