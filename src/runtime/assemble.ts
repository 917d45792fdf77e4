/**
 * How a running agent is put together, shared by `mrp run`/`mrp dev` (cli/agent.ts) and the
 * library's `Agent` (agent.ts): the journal, the message source for a mode, the codec and the
 * runtime, built the same way for both so that whatever one gets (exactly-once journal,
 * reconnects, rate-limit handling, end-to-end encryption through the codec) the other gets too.
 *
 * The mode switch is here and only here (`createSource`; the names in mode.ts): a new kind of source (a webhook
 * server, say) is one more case in it, with no change to its callers.
 */
import type { Clock } from '../core/clock.js';
import { type MessageCodec, plainCodec } from '../client/codec.js';
import type { RelayClient } from '../client/http.js';
import type { SessionOptions } from '../client/session.js';
import type { Keypair } from '../protocol/signing.js';
import { type MessageSource, PollSource, WebSocketSource } from '../client/source.js';
import type { Handler } from './handler.js';
import { Journal } from './journal.js';
import type { AgentMode } from './mode.js';

export type { AgentMode };
import { Runtime } from './runtime.js';


/**
 * The codec an agent gets when none is given — `mrp run`, `mrp dev` and `Agent` alike. Today the
 * pass-through; end-to-end encryption (a codec built from the agent's keypair, loaded lazily)
 * plugs in here, and every kind of agent has it at once.
 */
export function defaultCodec(_keypair: Keypair): MessageCodec {
  return plainCodec;
}

export interface SourceOptions {
  clock?: Clock;
  /** Poll mode: pause between polls when the relay has no long poll. */
  intervalMs?: number;
  /** WebSocket mode: trace callbacks for the session. */
  wsTrace?: SessionOptions['trace'];
}

/** The message source for `mode`; poll sources note each take in `journal` (crash recovery). */
export function createSource(mode: AgentMode, client: RelayClient, journal: Journal, o: SourceOptions = {}): MessageSource {
  const clock = o.clock === undefined ? {} : { clock: o.clock };
  switch (mode) {
    case 'poll':
      return new PollSource(client, {
        ...clock,
        takes: { begin: (at, wait) => journal.takeBegun(at, wait), end: () => journal.takeEnded() },
        ...(journal.openTake ? { openTake: journal.openTake } : {}),
        ...(o.intervalMs === undefined ? {} : { intervalMs: o.intervalMs }),
      });
    case 'websocket':
      return new WebSocketSource(client, { ...clock, ...(o.wsTrace ? { trace: o.wsTrace } : {}) });
  }
}

export interface AssembleOptions extends SourceOptions {
  client: RelayClient;
  handler: Handler;
  mode: AgentMode;
  /** The journal's directory (one per identity; locked while open). */
  journalDir: string;
  /** Sync the journal to disk on the message's path (survives power cuts, not only crashes). */
  fsync?: boolean;
  concurrency?: number;
  timeoutMs?: number;
  graceMs?: number;
  maxCrashes?: number;
  /** How message bodies are opened and sealed (default: see `defaultCodec`). */
  codec?: MessageCodec;
  /** Turns a `ctx.send` recipient (a key or a contact name) into a key. */
  resolveRecipient?: (to: string) => string;
}

export interface Assembled {
  runtime: Runtime;
  journal: Journal;
  source: MessageSource;
}

/**
 * Opens the journal and builds the source and the runtime (not started). The journal is closed
 * again when anything after it fails.
 */
export function assembleRuntime(o: AssembleOptions): Assembled {
  const journal = Journal.open(o.journalDir, { ...(o.clock ? { clock: o.clock } : {}), fsync: o.fsync === true });
  try {
    const source = createSource(o.mode, o.client, journal, o);
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
      codec: o.codec ?? defaultCodec(o.client.keypair),
      ...(o.resolveRecipient === undefined ? {} : { resolveRecipient: o.resolveRecipient }),
    });
    return { runtime, journal, source };
  } catch (err) {
    journal.close();
    throw err;
  }
}
