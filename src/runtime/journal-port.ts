/**
 * What the runtime needs from a journal (docs/architecture.md §2, "journal contract"). Two
 * implementations: `Journal` (the default: a local JSON-lines file, synchronous bookkeeping with
 * batched writes) and `SharedJournal` (opt-in, `mrp run --journal postgres://…`: one journal for a
 * fleet of runners serving one identity, loaded only when asked for).
 *
 * The contract, for whoever writes one:
 * - `received(message)` resolves once the message is recorded *and this runner may handle it*; it
 *   rejects when it may not (another runner holds or finished it, or the journal closed): the
 *   runtime then drops the message without acknowledging it. When the record shows that a handler
 *   already began on it (`get(id).started`), the runtime runs it as a redelivery.
 * - `handled(id, reply)` resolves once the sealed reply is recorded; a rejection means this runner
 *   lost the message (nothing is sent). `fence(id)`, when present, is asked before every send of
 *   that reply and bounds how long the send may take (a fleet never sends a reply twice).
 * - `aborted`, `replied`, `done` never throw; nor does `started`, whose promise (a fleet's) the
 *   runtime awaits before the handler runs.
 * - `recovered` events hand over entries taken over while running (another runner died): the
 *   runtime resumes them like the entries `takeRecovered()` returns at start.
 * - `unwritable` / `writable` events: while not `writable`, no new messages are taken.
 */
import type { Take, TakeLog } from '../client/poller.js';
import type { TypedEmitter } from '../core/emitter.js';
import type { Attachment, Message } from '../protocol/types.js';
import type { JournalEntry, JournalEvents, JournaledReply } from './journal.js';

/**
 * Lists on the relay what one poll took (`status=delivered&take=<id>`, docs/protocol.md §3.6),
 * handing each page's messages to `deliver`; resolves false when the relay could not be asked or
 * `deliver` failed (try again later).
 */
export type TakeRecoverer = (
  take: Take & { id: string },
  deliver: (messages: Message[]) => Promise<void>,
) => Promise<boolean>;

export interface RuntimeJournal extends Pick<TypedEmitter<JournalEvents>, 'on' | 'off'> {
  /** False while writes fail (and are retried): no new messages are taken meanwhile. */
  readonly writable: boolean;
  /** Entries a previous run left unfinished. Called once, at start. */
  takeRecovered(): JournalEntry[];
  /** The unfinished entry this runner holds for `id`, if any. */
  get(id: string): JournalEntry | undefined;
  /** Known to be finished (acknowledge it again, do not handle it). */
  isDone(id: string): boolean;
  received(message: Message): Promise<void>;
  /**
   * The handler is about to run. A fleet's journal returns a promise: the runtime runs the handler
   * only once the start is recorded where the other runners see it, so that a handler that kills
   * the process is counted (`--max-crashes`) and its takeover runs as a redelivery. It waits out a
   * database outage; an `AbortError` means the journal closed first (the message is then left for
   * the next start); after any other rejection the handler runs anyway.
   */
  started(id: string): void | Promise<void>;
  aborted(id: string): void;
  handled(id: string, reply: JournaledReply | null): Promise<void>;
  /**
   * Records a blob the handler uploaded for `id` under `key` (kept in `get(id).uploads`, so a
   * handler re-run after a crash reuses it). Optional: without it uploads are not deduplicated
   * across crashes (the shared journal does not keep them yet).
   */
  uploaded?(id: string, key: string, attachment: Attachment): Promise<void>;
  replied(id: string, replyId: string): void;
  done(id: string): void;
  /** Resolves once every record made so far is written. */
  durable(): Promise<void>;
  /** Writes what is buffered now (a hint; never throws). */
  flush(): void;
  /**
   * Immediately before each attempt to send `id`'s reply (a fleet's journal; the local one has no
   * rivals and leaves it out): resolves with the milliseconds the send may take — it must be over
   * or given up by then — or `undefined` when this runner no longer owns the message (nothing is
   * sent; the runner that took it over answers). A rejection is transient: try again later.
   */
  fence?(id: string): Promise<number | undefined>;
  /** A `recovered` entry the runtime did not take (it is already working on that message). */
  skipped?(id: string): void;
  /**
   * A fleet's journal: where one poller notes each poll's take, recorded where the other runners
   * see it (a local journal's takes are wired by `journalTakes` from its own methods).
   */
  pollTakes?(): TakeLog;
  /**
   * A fleet's journal: how this runner lists a take on the relay, to recover the open take of a
   * runner that died between a poll's answer and its claims (set by `assembleRuntime`).
   */
  recoverTakesWith?(recover: TakeRecoverer): void;
  /** Writes what is left and releases the journal; may be asynchronous. */
  close(): void | Promise<void>;
}
