/**
 * Runtime test helpers: an agent (Runtime + real client + real journal in a temp dir) against an
 * in-process relay, and a peer that sends requests and collects replies over a raw WebSocket.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import { PollSource, WebSocketSource } from '../../src/client/source.js';
import type { Clock } from '../../src/core/clock.js';
import { Keypair } from '../../src/protocol/signing.js';
import type { Message } from '../../src/protocol/types.js';
import type { Handler } from '../../src/runtime/handler.js';
import { Journal, type JournalOptions } from '../../src/runtime/journal.js';
import { type HandledEvent, Runtime, type RuntimeOptions } from '../../src/runtime/runtime.js';
import { RawSocket, type TestRelay } from './relay.js';

export interface TestAgent {
  runtime: Runtime;
  keypair: Keypair;
  client: RelayClient;
  journalDir: string;
  source: WebSocketSource | PollSource;
}

export interface AgentSetup {
  mode?: 'websocket' | 'poll';
  keypair?: Keypair;
  journalDir?: string;
  clock?: Clock;
  options?: Partial<Omit<RuntimeOptions, 'handler' | 'source' | 'client' | 'journal'>>;
  /** Session options for websocket mode. */
  session?: ConstructorParameters<typeof WebSocketSource>[1];
  pollWaitSeconds?: number;
  /** Journal options (e.g. an injected fs). */
  journal?: Omit<JournalOptions, 'clock'>;
}

/** Starts a runtime; stopped (gracefully) when the test ends unless already stopped. */
export async function startAgent(
  t: TestContext,
  relay: Pick<TestRelay, 'url'>,
  handler: Handler,
  setup: AgentSetup = {},
): Promise<TestAgent> {
  const keypair = setup.keypair ?? Keypair.generate();
  const journalDir = setup.journalDir ?? (await mkdtemp(join(tmpdir(), 'mrp-journal-')));
  if (!setup.journalDir) t.after(() => rm(journalDir, { recursive: true, force: true }));
  const clock = setup.clock;
  const client = new RelayClient({ relayUrl: relay.url, keypair, ...(clock ? { clock } : {}) });
  const journal = Journal.open(journalDir, { ...(clock ? { clock } : {}), fsync: false, ...setup.journal });
  let runtime: Runtime | undefined;
  const source =
    setup.mode === 'poll'
      ? new PollSource(client, {
          ...(clock ? { clock } : {}),
          waitSeconds: setup.pollWaitSeconds ?? 5,
          capacity: () => runtime?.capacity() ?? 0,
          takes: { begin: (at, wait, id) => journal.takeBegun(at, wait, id), end: () => journal.takeEnded() },
          ...(journal.openTake ? { openTake: journal.openTake } : {}),
        })
      : new WebSocketSource(client, { ...(clock ? { clock } : {}), ...setup.session });
  runtime = new Runtime({ handler, source, client, journal, ...(clock ? { clock } : {}), ...setup.options });
  t.after(() => runtime!.stop());
  return { runtime, keypair, client, journalDir, source };
}

/** Resolves once the runtime is connected. */
export function connected(runtime: Runtime): Promise<unknown> {
  return runtime.next('connected');
}

/** Resolves after `n` more `handled` events, with them. */
export function handledN(runtime: Runtime, n: number): Promise<HandledEvent[]> {
  return new Promise((resolve) => {
    const seen: HandledEvent[] = [];
    const on = (e: HandledEvent): void => {
      seen.push(e);
      if (seen.length >= n) {
        runtime.off('handled', on);
        resolve(seen);
      }
    };
    runtime.on('handled', on);
  });
}

/** Another agent: sends over HTTP, receives replies on a raw socket (and acks them). */
export class Peer {
  readonly keypair = Keypair.generate();
  readonly client: RelayClient;
  readonly replies: Message[] = [];
  readonly #waiters: Array<{ n: number; resolve: () => void }> = [];

  private constructor(relayUrl: string, clock?: Clock) {
    this.client = new RelayClient({ relayUrl, keypair: this.keypair, ...(clock ? { clock } : {}) });
  }

  static async connect(t: TestContext, relay: Pick<TestRelay, 'url' | 'wsUrl'>, clock?: Clock): Promise<Peer> {
    const socket = await RawSocket.open(relay.wsUrl);
    t.after(() => socket.ws.terminate());
    const peer = new Peer(relay.url, clock);
    const ok = await socket.auth(peer.keypair, clock?.now() ?? Date.now());
    if (ok.status !== 'ok') throw new Error(`peer auth failed: ${JSON.stringify(ok)}`);
    socket.ws.on('message', (data) => {
      const frame = JSON.parse(data.toString());
      if (frame.type !== 'message') return;
      peer.replies.push(frame.message);
      socket.send({ type: 'ack', message_id: frame.message.message_id });
      for (const w of [...peer.#waiters]) {
        if (peer.replies.length >= w.n) {
          peer.#waiters.splice(peer.#waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    });
    // The raw socket's own queue is not used from here on.
    socket.frames.length = 0;
    return peer;
  }

  get publicKey(): string {
    return this.keypair.publicKey;
  }

  send(to: string, body: unknown, extra: Record<string, unknown> = {}): Promise<{ message_id: string }> {
    return this.client.send({ recipient_key: to, body: body as never, ...extra });
  }

  /** Waits until `n` replies have arrived in total. */
  waitForReplies(n: number, timeoutMs = 10_000): Promise<Message[]> {
    if (this.replies.length >= n) return Promise.resolve(this.replies);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${this.replies.length}/${n} replies within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this.#waiters.push({
        n,
        resolve: () => {
          clearTimeout(timer);
          resolve(this.replies);
        },
      });
    });
  }

  replyTo(messageId: string): Message[] {
    return this.replies.filter((m) => m.in_reply_to === messageId);
  }
}

/** A gate handlers can wait on; tests open it. */
export function gate(): { wait: Promise<void>; open(): void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}
