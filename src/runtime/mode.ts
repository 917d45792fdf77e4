/**
 * The ways messages can reach an agent, and reading one as people write it. Kept apart from
 * assemble.ts (which builds the source for a mode) so the CLI can check `--mode` without loading
 * the WebSocket client.
 */
import { UsageError } from '../core/errors.js';

/** How messages reach an agent: pushed over a WebSocket, or long-polled over HTTP. */
export type AgentMode = 'websocket' | 'poll';

export const AGENT_MODES: readonly AgentMode[] = ['websocket', 'poll'];

/**
 * A mode as people write it (`websocket`, `ws`, `poll`) → the mode, or `UsageError` naming
 * `what` (the flag or option) and the choices.
 */
export function parseMode(mode: unknown, what = 'mode'): AgentMode {
  if (mode === 'websocket' || mode === 'ws') return 'websocket';
  if (mode === 'poll') return 'poll';
  throw new UsageError(`${what}: "${String(mode)}" must be websocket (ws) or poll`, { code: 'invalid_argument' });
}
