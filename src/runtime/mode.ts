/**
 * The ways messages can reach an agent, and reading one as people write it. Kept apart from
 * assemble.ts (which builds the source for a mode) so the CLI can check `--mode` without loading
 * the WebSocket client.
 */
import { UsageError } from '../core/errors.js';

/**
 * How messages reach an agent: pushed over a WebSocket, long-polled over HTTP, or POSTed by the
 * relay to a server the agent runs (webhook: `mrp run --mode webhook`).
 */
export type AgentMode = 'websocket' | 'poll' | 'webhook';

export const AGENT_MODES: readonly AgentMode[] = ['websocket', 'poll', 'webhook'];

/**
 * A mode as people write it (`websocket`, `ws`, `poll`, `webhook`) → the mode, or `UsageError`
 * naming `what` (the flag or option) and the choices `allowed` there.
 */
export function parseMode<M extends AgentMode = AgentMode>(
  mode: unknown,
  what = 'mode',
  allowed: readonly M[] = AGENT_MODES as readonly M[],
): M {
  const m = mode === 'ws' ? 'websocket' : mode;
  if ((allowed as readonly unknown[]).includes(m)) return m as M;
  const choices = allowed.map((a) => (a === 'websocket' ? 'websocket (ws)' : a));
  throw new UsageError(
    `${what}: "${String(mode)}" must be ${choices.slice(0, -1).join(', ')}${choices.length > 1 ? ' or ' : ''}${choices.at(-1)}`,
    {
      code: 'invalid_argument',
    },
  );
}
