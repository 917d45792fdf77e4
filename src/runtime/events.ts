/**
 * What a runtime reports (it never prints): one typed event per thing that happens to a message
 * or to the connection, for the CLI's reporter, metrics and tests to listen to.
 */
import type { MrpError } from '../core/errors.js';
import type { JsonValue, Message } from '../protocol/types.js';
import type { LogLevel } from './context.js';

export type Outcome = 'replied' | 'no_reply' | 'error' | 'timeout' | 'reply_failed';

export interface HandledEvent {
  message: Message;
  outcome: Outcome;
  /** Handler start to ack. */
  durationMs: number;
  redelivered: boolean;
  replyId?: string;
  error?: { code: string; message: string };
}

export interface RuntimeEvents extends Record<string, unknown[]> {
  connecting: [];
  connected: [{ reconnected: boolean; detail: string }];
  disconnected: [{ explanation: string; willReconnect: boolean; delayMs: number; code?: number }];
  /** Messages resumed from the journal at start. */
  recovered: [{ count: number }];
  /** A message was taken in for handling. */
  received: [{ message: Message; redelivered: boolean }];
  /** A message that is already done or in progress was offered again. */
  duplicate: [{ message: Message; reason: 'done' | 'in_progress' }];
  handled: [HandledEvent];
  /** A handler threw or timed out (the error reply is on its way). */
  handler_error: [{ message: Message; error: Error }];
  /** A message whose handler stopped the process `crashes` times is answered with `handler_crashed`. */
  handler_crashed: [{ message: Message; crashes: number }];
  /**
   * A delivered message could not be handed to the handler: unreadable (`invalid_message`) or
   * refused by the codec (`code`, e.g. `decryption_failed`). With an id (and a sender), it is
   * answered with an error reply (`answered`) and acknowledged; without, it can only be reported.
   */
  invalid_message: [{ messageId?: string; senderKey?: string; reason: string; answered: boolean; code?: string }];
  /** A reply could not be sent yet and will be retried. */
  reply_retry: [{ messageId: string | undefined; error: MrpError; delayMs: number }];
  /** Whether messages can be taken: false while the journal cannot be written (retried meanwhile). */
  readiness: [{ ready: boolean; error?: MrpError; retryInMs?: number }];
  log: [{ level: LogLevel; message: string; fields: Record<string, JsonValue>; messageId: string }];
  warning: [MrpError];
  fatal: [MrpError];
  draining: [{ running: number; queued: number; replies: number }];
  stopped: [{ error?: MrpError }];
}
