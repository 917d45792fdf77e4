/**
 * What one authenticated WebSocket connection is pushed, and in which order: its stored backlog,
 * then live messages — without assuming that store order (`seq`) is commit order. With several
 * writers (processes sharing a database, or concurrent transactions) a message with a smaller
 * `seq` can commit after one with a larger `seq`; a connection that only remembered "the last
 * `seq` pushed" would skip it forever.
 *
 * How nothing is skipped:
 * 1. The connection is subscribed (the hub routes `message.stored` events here) BEFORE its first
 *    backlog read. Every message committed before that read is in the store; every message
 *    committed after the subscription has an event. Together they are everything.
 * 2. Backlog mode reads pages of `sent` messages with `seq > cursor`, in `seq` order. An event that
 *    arrives is queued; when the next page read is issued, queued events with `seq > cursor` are
 *    dropped (that read, or a later one of the same pass, sees them: they are committed), while
 *    those with `seq <= cursor` (committed out of order behind the cursor) stay queued.
 * 3. When a page comes back short, the pass is over and the connection goes live: queued events
 *    are fetched by id (`Store.getMessages`) and pushed in event order, if still `sent`, unexpired
 *    and not pushed already; every later event is handled the same way as it arrives (at once,
 *    without a fetch, when this process committed it and nothing is queued before it).
 * 4. Duplicates (a message both read by a page and announced by an event that arrived late) are
 *    dropped with a bounded set of the `seq`s recently pushed (RECENT, two pages: numbers, not
 *    ids, so a connection's set costs a few kilobytes).
 * 5. Flow control: a socket holding more than HIGH_WATER unsent bytes goes back to backlog mode
 *    (from its cursor, which live pushes advance to the largest `seq` handled) and catches up
 *    from the store once the socket has drained: nothing is buffered without bound.
 *
 * 6. A `bus.resync` (the shared bus reconnected: events may have been lost) sends the connection
 *    back to backlog mode from `seq` 0 (`resync`).
 *
 * Bounds: at most MAX_QUEUED queued events; past that, an event is dropped and the next pass
 * re-reads from the smallest `seq` dropped (duplicates beyond the recent set are then possible:
 * at-least-once, receivers de-duplicate on `message_id`). The state of a connection is a cursor,
 * a queue of ids and the recent set: no bodies are held except the page being written.
 *
 * One pump runs per connection at a time; every error ends in `onError` (the hub closes the
 * connection with 1011), never in an exception out of a listener.
 */
import type { BusEventOf } from './bus.js';
import type { MessageRecord } from './store/store.js';

/** Messages per backlog page. */
export const BACKLOG_PAGE = 256;
/** Above this many unsent bytes a connection stops taking pushes and catches up from the store. */
export const HIGH_WATER = 1024 * 1024;
/** `seq`s of recently pushed messages remembered per connection (duplicates are dropped against it). */
export const RECENT = 2 * BACKLOG_PAGE;
/** Events queued per connection before the connection falls back to re-reading from the store. */
export const MAX_QUEUED = 1024;

/** The socket side, as delivery needs it. */
export interface PushSink {
  readonly closed: boolean;
  /** Bytes written but not yet sent. */
  readonly buffered: number;
  /** Writes a frame; `cb` runs once it has been handed to the OS (or failed). */
  write(frame: string, cb?: (err?: Error) => void): void;
}

export interface DeliverySource {
  /** `Store.pending`: a backlog page. */
  pending(recipient: string, afterSeq: number, limit: number, now: number, maxBytes: number): Promise<MessageRecord[]>;
  /** `Store.getMessages`: records by id (missing ones left out). */
  fetch(ids: readonly string[]): Promise<MessageRecord[]>;
  /** The record at once if this process has it in hand (just committed it), else undefined. */
  fetchNow(id: string): MessageRecord | undefined;
  now(): number;
  /** The `message` frame for a record. */
  frame(record: MessageRecord, now: number): string;
}

type Stored = Pick<BusEventOf<'message.stored'>, 'message_id' | 'seq'>;

export class Delivery {
  readonly #agent: string;
  readonly #sink: PushSink;
  readonly #source: DeliverySource;
  readonly #onError: (err: unknown) => void;
  #mode: 'backlog' | 'live' = 'backlog';
  /** Every `sent` message with `seq <= cursor` committed before the subscription has been read. */
  #cursor = 0;
  #queue: Stored[] = [];
  /** Smallest `seq` of an event dropped because the queue was full (re-read from there). */
  #rescanFrom: number | undefined;
  readonly #recent = new Set<number>();
  #pumping = false;
  #started = false;

  constructor(agent: string, sink: PushSink, source: DeliverySource, onError: (err: unknown) => void) {
    this.#agent = agent;
    this.#sink = sink;
    this.#source = source;
    this.#onError = onError;
  }

  get mode(): 'backlog' | 'live' {
    return this.#mode;
  }

  /** Starts the first backlog pass. Call once the connection receives events (see step 1). */
  start(): void {
    this.#started = true;
    this.#run();
  }

  /** A `message.stored` event for this connection's agent. */
  onStored(event: Stored): void {
    if (this.#sink.closed) return;
    // Live, idle, and the record in hand (committed by this process): pushed at once, in order.
    if (this.#mode === 'live' && !this.#pumping && this.#queue.length === 0 && this.#sink.buffered <= HIGH_WATER) {
      const record = this.#source.fetchNow(event.message_id);
      if (record) {
        if (event.seq > this.#cursor) this.#cursor = event.seq;
        if (this.#pushable(record, this.#source.now())) this.#push(record, this.#source.now());
        return;
      }
    }
    if (this.#queue.length >= MAX_QUEUED) {
      this.#rescanFrom = Math.min(this.#rescanFrom ?? event.seq, event.seq);
    } else {
      this.#queue.push({ message_id: event.message_id, seq: event.seq });
    }
    if (this.#started) this.#run();
  }

  /**
   * Events may have been missed (the bus reconnected): the next pass re-reads the whole backlog
   * (from `seq` 0: a missed message may sit behind the cursor). Messages pushed recently are
   * dropped against the recent set; older unacknowledged ones may be pushed again (at-least-once).
   */
  resync(): void {
    if (this.#sink.closed) return;
    this.#rescanFrom = 1;
    if (this.#started) this.#run();
  }

  #run(): void {
    if (this.#pumping || this.#sink.closed) return;
    this.#pumping = true;
    this.#pump().then(
      () => {
        this.#pumping = false;
      },
      (err: unknown) => {
        this.#pumping = false;
        this.#onError(err);
      },
    );
  }

  async #pump(): Promise<void> {
    while (!this.#sink.closed) {
      if (this.#rescanFrom !== undefined) {
        this.#cursor = Math.min(this.#cursor, this.#rescanFrom - 1);
        this.#rescanFrom = undefined;
        this.#mode = 'backlog';
      }
      if (this.#mode === 'backlog') {
        if (!(await this.#readPage())) this.#mode = 'live';
        continue;
      }
      if (this.#queue.length === 0) return;
      await this.#pushQueued();
    }
  }

  /** Reads and writes one backlog page; true when the pass goes on (the page was full). */
  async #readPage(): Promise<boolean> {
    const from = this.#cursor;
    // Step 2: this read (or a later one of the pass) sees every committed message past the cursor.
    this.#queue = this.#queue.filter((e) => e.seq <= from);
    const budget = Math.max(1, HIGH_WATER - this.#sink.buffered);
    const page = await this.#source.pending(this.#agent, from, BACKLOG_PAGE, this.#source.now(), budget);
    if (this.#sink.closed) return false;
    let bytes = 0;
    for (const record of page) bytes += record.body_json.length;
    const full = page.length === BACKLOG_PAGE || bytes >= budget;
    const now = this.#source.now();
    let last = -1;
    for (let i = 0; i < page.length; i++) if (!this.#recent.has(page[i]!.seq)) last = i;
    let written: Promise<void> | undefined;
    for (let i = 0; i < page.length; i++) {
      const record = page[i]!;
      if (record.seq > this.#cursor) this.#cursor = record.seq;
      // The next page is read once this one has left (a 100 000-message backlog never sits in memory).
      if (i === last && full) written = this.#pushAndWait(record, now);
      else this.#push(record, now);
    }
    if (written) await written;
    return full;
  }

  /** Step 3: queued events, fetched by id, pushed in event order. */
  async #pushQueued(): Promise<void> {
    const events = this.#queue;
    this.#queue = [];
    const wanted = [...new Set(events.filter((e) => !this.#recent.has(e.seq)).map((e) => e.message_id))];
    const records = new Map<string, MessageRecord>();
    if (wanted.length > 0) for (const r of await this.#source.fetch(wanted)) records.set(r.message_id, r);
    if (this.#sink.closed) return;
    const now = this.#source.now();
    for (let i = 0; i < events.length; i++) {
      const event = events[i]!;
      if (event.seq > this.#cursor) this.#cursor = event.seq;
      const record = records.get(event.message_id);
      records.delete(event.message_id);
      if (!record || !this.#pushable(record, now)) continue;
      if (this.#sink.buffered <= HIGH_WATER) {
        this.#push(record, now);
        continue;
      }
      // Step 5: back to the store once this frame has left. What is left is re-read (seq > cursor)
      // or stays queued (behind the cursor).
      this.#queue = [...events.slice(i + 1), ...this.#queue];
      this.#mode = 'backlog';
      await this.#pushAndWait(record, now);
      return;
    }
  }

  /** Still for this agent, `sent` and unexpired. */
  #pushable(record: MessageRecord, now: number): boolean {
    return record.recipient_key === this.#agent && record.status === 'sent' && record.expires_at > now;
  }

  /** Writes one message unless it was pushed recently. */
  #push(record: MessageRecord, now: number, cb?: () => void): void {
    if (this.#recent.has(record.seq)) {
      cb?.();
      return;
    }
    this.#recent.add(record.seq);
    if (this.#recent.size > RECENT) this.#recent.delete(this.#recent.values().next().value as number);
    this.#sink.write(this.#source.frame(record, now), cb && (() => cb()));
  }

  /** `#push`, resolving once the frame has been handed to the OS (or the socket failed). */
  #pushAndWait(record: MessageRecord, now: number): Promise<void> {
    return new Promise((resolve) => this.#push(record, now, resolve));
  }
}
