/**
 * How a running agent is put together, shared by `mrp run`/`mrp dev` (cli/agent.ts) and the
 * library's `Agent` (agent.ts): the journal, the message source for a mode, the codec and the
 * runtime, built the same way for both so that whatever one gets (exactly-once journal,
 * reconnects, rate-limit handling, end-to-end encryption through the codec) the other gets too.
 *
 * The mode switch is here and only here (`createSource`; the names in mode.ts): a new kind of source (a webhook
 * server, say) is one more case in it, with no change to its callers.
 */
import type { MessageCodec } from '../client/codec.js';
import { e2eCodec } from '../client/e2e-codec.js';
import type { RelayClient } from '../client/http.js';
import { Poller, type TakeLog } from '../client/poller.js';
import type { SessionOptions } from '../client/session.js';
import { type MessageSource, PollSource, WebSocketSource } from '../client/source.js';
import type { Clock } from '../core/clock.js';
import { UsageError } from '../core/errors.js';
import type { Keypair } from '../protocol/signing.js';
import type { Handler } from './handler.js';
import { Journal, type OpenTake } from './journal.js';
import type { RuntimeJournal, TakeRecoverer } from './journal-port.js';
import type { AgentMode } from './mode.js';
import { Runtime } from './runtime.js';

export type { AgentMode };

/**
 * The codec an agent gets when none is given — `mrp run`, `mrp dev` and `Agent` alike: end-to-end
 * encryption (docs/protocol.md §8) built from the agent's keypair. HPKE loads on the first
 * encrypted message or `encrypt: true` send, so plaintext-only agents never pay for it.
 */
export function defaultCodec(keypair: Keypair): MessageCodec {
  return e2eCodec(keypair);
}

export interface SourceOptions {
  clock?: Clock;
  /** Poll mode: pause between polls when the relay has no long poll. */
  intervalMs?: number;
  /** WebSocket mode: trace callbacks for the session. */
  wsTrace?: SessionOptions['trace'];
}

/**
 * Where a source that polls (poll mode; webhook mode's catch-up; the WebSocket source's catch-up)
 * notes each poll's take, and the take the previous run left open: a local journal's; a shared
 * journal records each take in its database (`pollTakes`), and a take a dead runner left open is
 * recovered by whichever runner takes it over (`takeRecoverer`), so there is none to settle at start.
 */
export function journalTakes(journal: RuntimeJournal): { takes?: TakeLog; openTake?: OpenTake } {
  if (journal.pollTakes) return { takes: journal.pollTakes() };
  if (!(journal instanceof Journal)) return {};
  return {
    takes: {
      begin: (at: number, wait: number, id: string) => journal.takeBegun(at, wait, id),
      end: () => journal.takeEnded(),
    },
    ...(journal.openTake ? { openTake: journal.openTake } : {}),
  };
}

/**
 * How a fleet's runner lists another runner's open take on the relay: `Poller.recoverTake` through
 * this runner's own client (by the take id; by the poll's window on a relay without take ids).
 */
export function takeRecoverer(client: RelayClient, clock?: Clock): TakeRecoverer {
  return (take, deliver) =>
    new Poller({
      client,
      ...(clock === undefined ? {} : { clock }),
      deliver: (page) => deliver(page.messages),
    }).recoverTake(take);
}

/**
 * The message source for `mode`. Sources that poll note each poll's take in the journal
 * (`journalTakes`: crash recovery of a poll whose answer was lost).
 * A webhook source listens and registers itself with the relay, which only its caller can set up
 * (`cli/agent.ts`): it is passed in built (`AssembleOptions.source`).
 */
export function createSource(
  mode: AgentMode,
  client: RelayClient,
  journal: RuntimeJournal,
  o: SourceOptions = {},
): MessageSource {
  const clock = o.clock === undefined ? {} : { clock: o.clock };
  switch (mode) {
    case 'poll':
      return new PollSource(client, {
        ...clock,
        ...journalTakes(journal),
        ...(o.intervalMs === undefined ? {} : { intervalMs: o.intervalMs }),
      });
    case 'websocket':
      return new WebSocketSource(client, {
        ...clock,
        ...journalTakes(journal),
        ...(o.wsTrace ? { trace: o.wsTrace } : {}),
      });
    case 'webhook':
      throw new UsageError('mode "webhook" needs a listening webhook source (mrp run --mode webhook builds one)', {
        code: 'invalid_argument',
      });
  }
}

export interface AssembleOptions extends SourceOptions {
  client: RelayClient;
  handler: Handler;
  mode: AgentMode;
  /** The journal's directory (one per identity; locked while open), unless `journal` is given. */
  journalDir?: string;
  /** A journal already open (a fleet's shared one); closed like an own one if assembling fails. */
  journal?: RuntimeJournal;
  /** A source already built (webhook mode: listening and registered); else one for `mode`. */
  source?: MessageSource;
  /** Sync the journal to disk on the message's path (survives power cuts, not only crashes). */
  fsync?: boolean;
  concurrency?: number;
  timeoutMs?: number;
  graceMs?: number;
  maxCrashes?: number;
  maxQueuedBytes?: number;
  /** How message bodies are opened and sealed (default: see `defaultCodec`). */
  codec?: MessageCodec;
  /** Turns a `ctx.send` recipient (a key or a contact name) into a key. */
  resolveRecipient?: (to: string) => string;
  /** Emit `ctx.log.debug` lines as `log` events (default true). */
  debugLogs?: boolean;
}

export interface Assembled {
  runtime: Runtime;
  journal: RuntimeJournal;
  source: MessageSource;
}

/**
 * Opens the journal and builds the source and the runtime (not started). The journal is closed
 * again when anything after it fails.
 */
export function assembleRuntime(o: AssembleOptions): Assembled {
  let journal = o.journal;
  if (!journal) {
    if (o.journalDir === undefined)
      throw new UsageError('assembleRuntime: give journalDir or journal', { code: 'invalid_argument' });
    journal = Journal.open(o.journalDir, {
      ...(o.clock ? { clock: o.clock } : {}),
      fsync: o.fsync === true,
      relay: o.client.relayUrl,
    });
  }
  try {
    // A fleet's runner recovers the polls of runners that died with a page unclaimed.
    journal.recoverTakesWith?.(takeRecoverer(o.client, o.clock));
    const source = o.source ?? createSource(o.mode, o.client, journal, o);
    const runtime = new Runtime({
      handler: o.handler,
      source,
      client: o.client,
      journal,
      ...(o.clock === undefined ? {} : { clock: o.clock }),
      ...(o.concurrency === undefined ? {} : { concurrency: o.concurrency }),
      ...(o.timeoutMs === undefined ? {} : { timeoutMs: o.timeoutMs }),
      ...(o.graceMs === undefined ? {} : { graceMs: o.graceMs }),
      ...(o.maxCrashes === undefined ? {} : { maxCrashes: o.maxCrashes }),
      ...(o.maxQueuedBytes === undefined ? {} : { maxQueuedBytes: o.maxQueuedBytes }),
      codec: o.codec ?? defaultCodec(o.client.keypair),
      ...(o.resolveRecipient === undefined ? {} : { resolveRecipient: o.resolveRecipient }),
      ...(o.debugLogs === undefined ? {} : { debugLogs: o.debugLogs }),
    });
    return { runtime, journal, source };
  } catch (err) {
    const opened = journal;
    void Promise.resolve()
      .then(() => opened.close())
      .catch(() => {});
    throw err;
  }
}
