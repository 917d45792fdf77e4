/**
 * `Agent`: the library as the MRP guides teach it — one object per identity that announces its
 * profile, serves a handler (`onMessage` + `run`) with the very machinery of `mrp run` (built by
 * assemble.ts: exactly-once journal, reconnects, rate-limit handling, the codec seam that brings
 * end-to-end encryption), iterates its inbox (`messages()`), and sends, replies, discovers and
 * keeps its ACL.
 *
 * It never prints (unless `log` asks it to) and never exits: what happens is reported through
 * events (`handled`, `connected`, `disconnected`, `announced`, `warning`, …). Nothing heavy is
 * loaded by importing it: no relay, no SQLite, no HPKE.
 *
 * State on disk: the key file (created 0600 if missing) and, next to it, `<keyFile>.state/`:
 * `run/` is the journal of `run()` and `messages/` that of `messages()` (each locked while in
 * use, so a second process with the same key is refused instead of answering twice).
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { downloadAttachmentBytes, sealUpload } from '../client/blob-e2e.js';
import type { BlobInput, UploadOptions } from '../client/blobs.js';
import { checkOpened, type MessageCodec } from '../client/codec.js';
import { isEncryptedMessage } from '../client/e2e-codec.js';
import { RelayClient } from '../client/http.js';
import { PollSource, type SourceConsumer } from '../client/source.js';
import { type Clock, systemClock } from '../core/clock.js';
import { TypedEmitter } from '../core/emitter.js';
import { AbortError, MrpError, toMrpError, UsageError } from '../core/errors.js';
import { printable } from '../core/printable.js';
import { booleanArg, didYouMean, knownArgs, unknownKey } from '../core/suggest.js';
import { LIMITS } from '../protocol/constants.js';
import { type ContactBook, emptyBook, parseContacts, resolveRecipient } from '../protocol/contacts.js';
import type { EncodedSend } from '../protocol/frames.js';
import type { Keypair } from '../protocol/signing.js';
import type {
  AclEntry,
  AclEntryType,
  AclListResponse,
  AgentProfile,
  Attachment,
  BlobInfo,
  DiscoverResponse,
  InboxPolicy,
  JsonObject,
  JsonValue,
  Message,
  MessageStatusResponse,
  ProfilePatch,
  ThreadResponse,
  Visibility,
  WebhookConfig,
} from '../protocol/types.js';
import { ValidationError, validateProfilePatch } from '../protocol/validate.js';
import { assembleRuntime, defaultCodec, journalTakes } from './assemble.js';
import { RUNTIME_DEFAULTS } from './defaults.js';
import type { RuntimeEvents } from './events.js';
import type { Handler, SendOptions } from './handler.js';
import { loadOrCreateKeyFile } from './identity.js';
import { estimateBytes } from './intake.js';
import { Journal } from './journal.js';
import { type AgentMode, parseMode } from './mode.js';
import { Outbox } from './outbox.js';
import { encodedReplyTo, replyProblem } from './reply.js';
import type { Runtime } from './runtime.js';

/** A capability as the library spells it (camelCase; `inputSchema` is `input_schema` on the wire). */
export interface AgentCapability {
  name: string;
  description: string;
  tags: string[];
  inputSchema?: JsonObject;
  version?: string;
}

export interface AgentOptions {
  /**
   * The identity file: read in any form `mrp keygen` or an MRP SDK writes; created (0600) if
   * missing. Default, without `keypair` either: `agent.key` in the working directory (as the
   * Python SDK).
   */
  keyFile?: string;
  /** The identity itself, instead of `keyFile`. */
  keypair?: Keypair;
  /** Announced as the profile's `display_name`. */
  name?: string;
  capabilities?: AgentCapability[];
  /** String values only (§3.4). */
  metadata?: Record<string, string>;
  visibility?: Visibility;
  inboxPolicy?: InboxPolicy;
  /** Handlers running at once under `run()` (default 8). */
  concurrency?: number;
  /** Per-message handler deadline (default 30 s). */
  timeoutMs?: number;
  /** How long `stop()` lets running handlers finish (default 30 s). */
  graceMs?: number;
  /** Handler runs on one message that may kill the process before it is answered with `handler_crashed` (default 3). */
  maxCrashes?: number;
  /**
   * Bytes of messages `run()` and `messages()` hold waiting at most (default 32 MiB): past it no
   * more are taken, they wait on the relay (each counted as large as a message may be when fetched).
   */
  maxQueuedBytes?: number;
  /**
   * How long `send` and `reply` keep retrying a failure (the relay unreachable, a 5xx) and waiting
   * out rate limits before they reject with that failure (a `RateLimitError`, with `retryAfter`,
   * for a rate limit). Default 60 s; `Infinity`: until `stop()`.
   */
  sendTimeoutMs?: number;
  /** Poll mode and `messages()`: pause between polls when the relay has no long poll. */
  intervalMs?: number;
  /**
   * Where the journal lives: a directory (`run/` and `messages/` go in it); default
   * `<keyFile>.state`. `false`: a temporary directory removed on `stop()` — handling is
   * exactly-once within this process only. With `keypair` and no `keyFile` the default is `false`.
   */
  journal?: string | false;
  /** Sync the journal to disk before each step (survives power cuts, not only crashes; slower). */
  fsync?: boolean;
  /** How message bodies are opened and sealed (default: the one `mrp run` uses). */
  codec?: MessageCodec;
  /** Contact names for `send`, `ctx.send` and the ACL calls: a contacts file (the CLI's format) or a book. */
  contacts?: string | ContactBook;
  /** Print one line per event: `true` to stderr, or a function given each line. Default: silent. */
  log?: boolean | ((line: string) => void);
  clock?: Clock;
  /** Per-request timeout of the HTTP client (default 30 s). */
  requestTimeoutMs?: number;
}

export interface RunOptions {
  /** `websocket` (or `ws`, the default) or `poll`. */
  mode?: AgentMode | 'ws';
  /** Poll mode: the pause between polls when the relay has no long poll (overrides `intervalMs`). */
  pollIntervalMs?: number;
}

/** `agent.messages()`'s options (the MRP SDKs' `messages({ status, limit, wait })`). */
export interface MessagesOptions {
  /** Only `'sent'` (the default): the loop yields new messages, each once (history: `thread`, `status`). */
  status?: 'sent';
  /** Messages per poll at most, 1–100 (default 100). */
  limit?: number;
  /** Long-poll wait in seconds, 0–30 (default 20; 0 polls every `intervalMs`). */
  wait?: number;
}

/** `agent.send`'s options: the handler's `ctx.send` ones, and `expiresIn` (the MRP guides' name for `ttl`). */
export interface AgentSendOptions extends Omit<SendOptions, 'attachments'> {
  /** Seconds the message lives: the same as `ttl`. */
  expiresIn?: number;
  /** Blobs to attach: `{ blob_id, filename? }` objects, or blob ids (the Python SDK's form). */
  attachments?: Array<Attachment | string>;
}

/** `agent.upload`'s options. */
export interface AgentUploadOptions extends UploadOptions {
  /** Kept in the returned `attachment` (what the recipient sees). */
  filename?: string;
  /** Seal the blob for this recipient (a key or contact name): the relay stores ciphertext. */
  encryptFor?: string;
}

/** `agent.send({ to, body, ...options })`: the MRP SDKs' one-object form. */
export interface AgentMessage extends AgentSendOptions {
  to: string;
  /** Any JSON value; may be left out when there are attachments (it is `null` then). */
  body?: JsonValue;
}

export interface AgentEvents extends RuntimeEvents {
  /** The profile was announced (PATCH accepted); the relay's view of it. */
  announced: [AgentProfile];
}

/** The runtime events an `Agent` passes on (all of them). */
const FORWARDED = [
  'connecting',
  'connected',
  'disconnected',
  'recovered',
  'received',
  'duplicate',
  'handled',
  'handler_error',
  'handler_crashed',
  'invalid_message',
  'reply_retry',
  'readiness',
  'log',
  'warning',
  'fatal',
  'draining',
] as const satisfies ReadonlyArray<keyof RuntimeEvents>;

/** A contacts file is small; anything bigger is not one. */
const MAX_CONTACTS_BYTES = 1024 * 1024;

/** The key file when neither `keyFile` nor `keypair` is given (the Python SDK's `key_file="agent.key"`). */
const DEFAULT_KEY_FILE = 'agent.key';

/** `sendTimeoutMs`'s default: as long as the relay client waits out one 429 at most. */
const SEND_TIMEOUT_MS = 60_000;

/** Every option `AgentOptions` has: anything else is a typo the constructor names (JavaScript callers have no compiler to catch it). */
const OPTION_KEYS = [
  'keyFile',
  'keypair',
  'name',
  'capabilities',
  'metadata',
  'visibility',
  'inboxPolicy',
  'concurrency',
  'timeoutMs',
  'graceMs',
  'maxCrashes',
  'maxQueuedBytes',
  'sendTimeoutMs',
  'intervalMs',
  'journal',
  'fsync',
  'codec',
  'contacts',
  'log',
  'clock',
  'requestTimeoutMs',
] as const satisfies ReadonlyArray<keyof AgentOptions>;
const CAPABILITY_KEYS = ['name', 'description', 'tags', 'inputSchema', 'version'] as const satisfies ReadonlyArray<
  keyof AgentCapability
>;

/** An unknown key in `given` is an `invalid_option` error naming it, with a "did you mean". */
function knownKeys(given: object, known: readonly string[], field: (key: string) => string, what: string): void {
  const key = unknownKey(given, known);
  if (key !== undefined)
    throw optionError(field(key), `unknown ${what}${didYouMean(key, known)}; known: ${known.join(', ')}`);
}

function optionError(field: string, reason: string): UsageError {
  return new UsageError(`Agent option ${field}: ${reason}`, { code: 'invalid_option' });
}

const SEND_KEYS = [
  'contentType',
  'threadId',
  'inReplyTo',
  'ttl',
  'metadata',
  'encrypt',
  'attachments',
  'expiresIn',
] as const satisfies ReadonlyArray<keyof AgentSendOptions>;
const REPLY_KEYS = ['contentType', 'encrypt', 'attachments'] as const;
const DISCOVER_KEYS = ['tag', 'q', 'name', 'activeSince', 'limit', 'cursor'] as const;
const ACL_LIST_KEYS = ['type', 'limit', 'cursor'] as const;

/** The profile patch the options ask for (only what they set), checked with the relay's rules. */
function profilePatch(o: AgentOptions): ProfilePatch | undefined {
  const patch: Record<string, unknown> = {};
  if (o.name !== undefined) patch['display_name'] = o.name;
  if (o.visibility !== undefined) patch['visibility'] = o.visibility;
  if (o.inboxPolicy !== undefined) patch['inbox_policy'] = o.inboxPolicy;
  if (o.metadata !== undefined) patch['metadata'] = o.metadata;
  if (o.capabilities !== undefined) {
    if (!Array.isArray(o.capabilities))
      throw optionError('capabilities', 'must be an array of { name, description, tags }');
    patch['capabilities'] = o.capabilities.map((c, i) => {
      if (c === null || typeof c !== 'object') return c;
      knownKeys(c, CAPABILITY_KEYS, (key) => `capabilities[${i}].${key}`, 'capability key');
      const { inputSchema, ...rest } = c;
      return inputSchema === undefined ? rest : { ...rest, input_schema: inputSchema };
    });
  }
  if (Object.keys(patch).length === 0) return undefined;
  try {
    return validateProfilePatch(patch);
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    const field = err.field
      .replace(/^display_name/, 'name')
      .replace(/^inbox_policy/, 'inboxPolicy')
      .replace(/input_schema/, 'inputSchema');
    throw optionError(field || 'profile', err.reason);
  }
}

/** An attachment as given to `agent.send`: a blob id stands for `{ blob_id }`. */
function attachmentOf(a: Attachment | string): Attachment {
  return typeof a === 'string' ? { blob_id: a } : { ...a };
}

/** `attachments` must be an array (a lone blob id would otherwise fail as a TypeError mid-send). */
function attachmentsArg(method: string, value: unknown): Array<Attachment | string> | undefined {
  if (value === undefined) return undefined;
  if (!Array.isArray(value))
    throw new UsageError(
      `${method}: attachments must be an array of blob ids or { blob_id, filename } objects (got ${typeof value})`,
      { code: 'invalid_argument' },
    );
  return value as Array<Attachment | string>;
}

/** A method's integer argument within [min, max], or undefined when left out. */
function boundedArg(method: string, name: string, value: unknown, min: number, max: number): number | undefined {
  if (value === undefined) return undefined;
  if (!Number.isInteger(value) || (value as number) < min || (value as number) > max)
    throw new UsageError(`${method}: ${name} must be an integer from ${min} to ${max} (got ${String(value)})`, {
      code: 'invalid_argument',
    });
  return value as number;
}

function positive(name: string, value: number | undefined, min: number): void {
  if (value !== undefined && !(typeof value === 'number' && Number.isFinite(value) && value >= min)) {
    throw optionError(name, `must be a number ≥ ${min} (got ${String(value)})`);
  }
}

/** One line for `log`: what a person running the agent wants to see. Never a body or a key seed. */
function describe(event: string, args: unknown[]): string | undefined {
  const a = args[0] as Record<string, unknown> | undefined;
  switch (event) {
    case 'connected':
      return `connected ${String(a?.['detail'] ?? '')}`;
    case 'disconnected':
      return `disconnected: ${String(a?.['explanation'] ?? '')}`;
    case 'handled': {
      const m = a?.['message'] as Message | undefined;
      return `handled ${m?.message_id ?? '?'} from ${m?.sender_key ?? '?'}: ${String(a?.['outcome'])} in ${String(a?.['durationMs'])} ms`;
    }
    case 'invalid_message':
      // A message not handed over (one that cannot be opened, or malformed): without this line a
      // `messages()` loop's skipped message would leave no trace in the log.
      return `invalid message ${String(a?.['messageId'] ?? '?')} from ${String(a?.['senderKey'] ?? '?')} (${String(a?.['code'] ?? 'invalid_message')}): ${String(a?.['reason'] ?? '')}; ${a?.['answered'] ? 'answered with an error reply' : 'skipped'}`;
    case 'announced':
      return 'announced the profile';
    case 'warning':
    case 'fatal':
      return `${event}: ${(args[0] as Error)?.message ?? String(args[0])}`;
    case 'log':
      return `[${String(a?.['level'])}] ${String(a?.['message'])}`;
    case 'stopped':
      return 'stopped';
    default:
      return undefined;
  }
}

export class Agent extends TypedEmitter<AgentEvents> {
  /** The relay client this agent uses (every endpoint, signed). */
  readonly client: RelayClient;
  readonly relayUrl: string;
  readonly #keypair: Keypair;
  readonly #options: AgentOptions;
  readonly #patch: ProfilePatch | undefined;
  readonly #clock: Clock;
  readonly #codec: MessageCodec;
  /** The way out for `send` and `reply` (rate limits waited out, failures retried, within `sendTimeoutMs`); a new one after `stop()`. */
  #outbox: Outbox;
  /** `send`/`reply` calls not settled yet: `stop()` gives them `graceMs`, then gives up on them. */
  readonly #sending = new Set<Promise<unknown>>();
  /** The profile has been announced (by any path) since this object was made. */
  #announced = false;
  /** The announcement a first `send` waits for (see `#announceBeforeSend`). */
  #announcing: Promise<void> | undefined;
  /** The journal directory, or undefined for a temporary one. */
  readonly #stateDir: string | undefined;
  #tempDir: string | undefined;
  /** `stop()` returned while a `messages()` loop was still open: the loop removes the temporary journal as it ends. */
  #stopping = false;
  #contacts: { book: ContactBook; file: string } | undefined;
  #handler: Handler | undefined;
  /** What is using the journal now. */
  #busy: 'run' | 'messages' | undefined;
  #runtime: Runtime | undefined;
  /** Ends a `messages()` loop; set while one runs. */
  #endMessages: ((graceMs: number) => Promise<void>) | undefined;
  /** Messages `messages()` yielded opened from an encrypted body: `reply` seals to them. */
  readonly #encrypted = new WeakSet<Message>();

  /**
   * `new Agent(relayUrl, options)`, or `new Agent({ relayUrl, ...options })` (the MRP SDKs' form,
   * docs/protocol.md §9).
   */
  constructor(options: AgentOptions & { relayUrl: string });
  constructor(relayUrl: string, options?: AgentOptions);
  constructor(first: string | (AgentOptions & { relayUrl: string }), second?: AgentOptions) {
    super();
    let relayUrl: unknown = first;
    let options: AgentOptions = second ?? {};
    if (first !== null && typeof first === 'object') {
      if (second !== undefined)
        throw optionError(
          'options',
          'give new Agent({ relayUrl, ...options }) or new Agent(relayUrl, options), not both',
        );
      knownKeys(first, [...OPTION_KEYS, 'relayUrl'], (key) => key, 'option');
      const { relayUrl: url, ...rest } = first;
      relayUrl = url;
      options = rest;
    }
    if (typeof relayUrl !== 'string' || relayUrl === '')
      throw optionError('relayUrl', 'a relay URL is required (e.g. https://relay.mrphub.io)');
    if (options === null || typeof options !== 'object') throw optionError('options', 'must be an object');
    knownKeys(options, OPTION_KEYS, (key) => key, 'option');
    // Neither: `agent.key` in the working directory, created if missing (the Python SDK's default).
    if (options.keyFile === undefined && options.keypair === undefined)
      options = { ...options, keyFile: DEFAULT_KEY_FILE };
    if (options.keyFile !== undefined && (typeof options.keyFile !== 'string' || options.keyFile.trim() === ''))
      throw optionError(
        'keyFile',
        `must be a file path (got ${JSON.stringify(options.keyFile) ?? String(options.keyFile)})`,
      );
    if (
      options.keypair !== undefined &&
      (options.keypair === null ||
        typeof options.keypair !== 'object' ||
        typeof (options.keypair as { publicKey?: unknown }).publicKey !== 'string')
    )
      throw optionError('keypair', 'must be a Keypair (Keypair.generate(), Keypair.fromSeed(seed))');
    positive('concurrency', options.concurrency, 1);
    positive('timeoutMs', options.timeoutMs, 1);
    positive('graceMs', options.graceMs, 0);
    positive('maxCrashes', options.maxCrashes, 1);
    positive('maxQueuedBytes', options.maxQueuedBytes, 1);
    if (options.sendTimeoutMs !== Number.POSITIVE_INFINITY) positive('sendTimeoutMs', options.sendTimeoutMs, 1);
    positive('intervalMs', options.intervalMs, 0);
    if (
      options.journal !== undefined &&
      options.journal !== false &&
      (typeof options.journal !== 'string' || options.journal === '')
    ) {
      throw optionError('journal', 'must be a directory path or false');
    }
    // A URL would be taken as a relative directory (./postgres:/…): a fleet's shared journal is
    // `mrp run --journal postgres://…`, not an Agent option.
    if (typeof options.journal === 'string' && /^[a-z][a-z0-9+.-]*:\/\//i.test(options.journal)) {
      throw optionError(
        'journal',
        'must be a directory path or false, not a URL (a shared journal for a fleet is `mrp run --journal postgres://…`)',
      );
    }
    this.#options = options;
    this.#patch = profilePatch(options);
    const keyFile = options.keyFile === undefined ? undefined : resolve(options.keyFile);
    this.#keypair = options.keypair ?? loadOrCreateKeyFile(keyFile!).keypair;
    this.#clock = options.clock ?? systemClock;
    this.#codec = options.codec ?? defaultCodec(this.#keypair);
    this.relayUrl = relayUrl;
    this.client = new RelayClient({
      relayUrl,
      keypair: this.#keypair,
      clock: this.#clock,
      ...(options.requestTimeoutMs === undefined ? {} : { timeoutMs: options.requestTimeoutMs }),
    });
    this.#outbox = this.#newOutbox();
    this.#stateDir =
      options.journal === false
        ? undefined
        : options.journal !== undefined
          ? resolve(options.journal)
          : keyFile
            ? `${keyFile}.state`
            : undefined;
    if (options.log) {
      const print =
        typeof options.log === 'function' ? options.log : (line: string) => process.stderr.write(`${line}\n`);
      for (const event of [...FORWARDED, 'announced', 'stopped'] as const) {
        this.on(event, (...args: unknown[]) => {
          const line = describe(event, args);
          // Peer and relay text (bodies a handler logs, close reasons, error messages) reaches a
          // terminal here: escaped, and one line.
          if (line !== undefined) print(`mrp ${printable(line)}`);
        });
      }
    }
  }

  #newOutbox(): Outbox {
    return new Outbox({
      // Every retry is the outbox's, within `sendTimeoutMs`: none inside the client's call.
      send: (r) => this.client.send(r, undefined, { once: true }),
      client: this.client,
      clock: this.#clock,
      authIsFinal: true,
    });
  }

  /**
   * Before the first `send` of an agent whose options describe a profile (`name`, `capabilities`,
   * …): the profile, once, as the Python SDK pushes it when the agent is made, so the peer that
   * gets the message can already look the sender up by name. `run()` and `messages()` announce it
   * on connecting. A failure is a `warning` and does not stop the send; a network failure is
   * tried again at the next send.
   */
  #announceBeforeSend(): Promise<void> {
    if (!this.#patch || this.#announced) return Promise.resolve();
    this.#announcing ??= this.announce().then(
      () => undefined,
      (err: unknown) => {
        const e = toMrpError(err);
        if (e.kind === 'network' || e.kind === 'timeout') this.#announcing = undefined;
        this.emit('warning', e);
      },
    );
    return this.#announcing;
  }

  /** Sends through the outbox, counted for `stop()`; `announce`: the profile first (`#announceBeforeSend`). */
  async #sendOut(request: EncodedSend, threadId: string | undefined, announce = false): Promise<string> {
    const outbox = this.#outbox;
    const reply = threadId === undefined ? undefined : { threadId };
    const budget = this.#options.sendTimeoutMs ?? SEND_TIMEOUT_MS;
    const giveUpAt = Number.isFinite(budget) ? this.#clock.now() + budget : undefined;
    const sending = announce
      ? this.#announceBeforeSend().then(() => outbox.send(request, reply, giveUpAt))
      : outbox.send(request, reply, giveUpAt);
    this.#sending.add(sending);
    try {
      return (await sending).message_id;
    } catch (err) {
      if (err instanceof AbortError && this.#outbox !== outbox) {
        const last = err.cause instanceof Error ? ` (last attempt: ${err.cause.message})` : '';
        throw new AbortError(
          `agent.stop() gave up on this message before the relay accepted it; it may not have been sent${last}`,
          { cause: err.cause },
        );
      }
      throw err;
    } finally {
      this.#sending.delete(sending);
    }
  }

  /** This agent's public key (its address). */
  get publicKey(): string {
    return this.#keypair.publicKey;
  }

  /** The runtime of a `run()` in progress (stats, running, queued), if any. */
  get runtime(): Runtime | undefined {
    return this.#runtime;
  }

  /** Sets the handler `run()` serves (the handler contract of `mrp run`). Returns the agent. */
  onMessage(handler: Handler): this {
    if (typeof handler !== 'function')
      throw optionError('onMessage', 'the handler must be a function (msg, ctx) => reply');
    this.#handler = handler;
    this.#runtime?.setHandler(handler);
    return this;
  }

  #journalDir(kind: 'run' | 'messages'): string {
    if (this.#stateDir) return join(this.#stateDir, kind);
    this.#tempDir ??= mkdtempSync(join(tmpdir(), 'mrp-agent-'));
    return join(this.#tempDir, kind);
  }

  #claim(what: 'run' | 'messages'): void {
    if (this.#busy) {
      throw new UsageError(
        `the agent is already ${this.#busy === 'run' ? 'running' : 'iterating messages()'}; one at a time`,
        {
          code: 'agent_busy',
          hint: 'call agent.stop() first',
        },
      );
    }
    this.#busy = what;
  }

  #release(): void {
    this.#busy = undefined;
  }

  /**
   * Announces the profile (when the options set one) on the first connection, then serves the
   * handler until `stop()`. Resolves once stopped and drained; rejects when the agent had to stop
   * (a fatal error: refused authentication, a suspended agent).
   */
  async run(options: RunOptions = {}): Promise<void> {
    knownArgs('agent.run', options, ['mode', 'pollIntervalMs']);
    positive('run({ pollIntervalMs })', options.pollIntervalMs, 0);
    const mode = parseMode(options.mode ?? 'websocket', 'run({ mode })', ['websocket', 'poll'] as const);
    const intervalMs = options.pollIntervalMs ?? this.#options.intervalMs;
    const handler = this.#handler;
    if (!handler)
      throw new UsageError('no handler: call agent.onMessage(handler) before agent.run()', {
        code: 'missing_argument',
      });
    this.#claim('run');
    let fatal: MrpError | undefined;
    try {
      const { runtime } = assembleRuntime({
        client: this.client,
        handler,
        mode,
        journalDir: this.#journalDir('run'),
        clock: this.#clock,
        fsync: this.#options.fsync === true,
        codec: this.#codec,
        resolveRecipient: (to) => this.#resolve(to),
        ...(this.#options.concurrency === undefined ? {} : { concurrency: this.#options.concurrency }),
        ...(this.#options.timeoutMs === undefined ? {} : { timeoutMs: this.#options.timeoutMs }),
        ...(this.#options.graceMs === undefined ? {} : { graceMs: this.#options.graceMs }),
        ...(this.#options.maxCrashes === undefined ? {} : { maxCrashes: this.#options.maxCrashes }),
        ...(this.#options.maxQueuedBytes === undefined ? {} : { maxQueuedBytes: this.#options.maxQueuedBytes }),
        ...(intervalMs === undefined ? {} : { intervalMs }),
      });
      this.#runtime = runtime;
      for (const event of FORWARDED)
        runtime.on(event, (...args) => this.emit(event, ...(args as AgentEvents[typeof event])));
      runtime.on('fatal', (err) => (fatal ??= err));
      this.#announceOnConnect(runtime);
      runtime.start();
      await runtime.finished;
    } finally {
      this.#runtime = undefined;
      this.#release();
    }
    this.emit('stopped', fatal ? { error: fatal } : {});
    if (fatal) throw fatal;
  }

  /** Announces the profile on the first `connected` of `run()`'s runtime or a `messages()` loop's source. */
  #announceOnConnect(source: { on(event: 'connected', listener: () => void): unknown }): void {
    if (!this.#patch) return;
    let announced = false;
    source.on('connected', () => {
      if (announced) return;
      announced = true;
      this.announce().catch((err: unknown) => {
        const e = toMrpError(err);
        // Try again on the next connection unless the relay refused the profile itself.
        if (e.kind === 'network' || e.kind === 'timeout') announced = false;
        this.emit('warning', e);
      });
    });
  }

  /** Sends the profile the options describe (`name`, `capabilities`, …) now; `run()` does it by itself. */
  async announce(): Promise<AgentProfile> {
    const profile = await this.client.updateProfile(this.#patch ?? {});
    this.#announced = true;
    this.emit('announced', profile);
    return profile;
  }

  /**
   * Stops like SIGTERM stops `mrp run`: nothing new is taken, running handlers get `graceMs`,
   * replies and acks are flushed; a `messages()` loop ends when its consumer asks for the next
   * message (or after `graceMs`); a `send`/`reply` still retrying gets `graceMs`, then rejects
   * with `aborted`. Resolves when stopped. The agent may be started again.
   */
  async stop(): Promise<void> {
    const graceMs = this.#options.graceMs ?? 30_000;
    if (this.#runtime) {
      const runtime = this.#runtime;
      await runtime.stop();
      await runtime.finished;
    }
    // A temporary journal lives until `stop()`, not until the end of a loop: what a `messages()`
    // loop fetched but did not yield comes in the next one in this process. A loop still open
    // (its body outlived `graceMs`) removes it as it ends.
    this.#stopping = true;
    if (this.#endMessages) await this.#endMessages(graceMs);
    if (!this.#busy) this.#dropTempDir();
    // Sends still waiting (a rate limit, a relay that is down) get `graceMs`, then reject with
    // `aborted`: nothing keeps retrying (or keeps the process alive) after `stop()`.
    if (this.#sending.size > 0) {
      let timer: ReturnType<Clock['setTimeout']> | undefined;
      const late = new Promise<void>((r) => (timer = this.#clock.setTimeout(r, graceMs)));
      await Promise.race([Promise.allSettled([...this.#sending]), late]);
      timer?.cancel();
    }
    const outbox = this.#outbox;
    this.#outbox = this.#newOutbox();
    outbox.close();
  }

  #dropTempDir(): void {
    this.#stopping = false;
    if (!this.#tempDir) return;
    rmSync(this.#tempDir, { recursive: true, force: true });
    this.#tempDir = undefined;
  }

  // ── the inbox as an async iterator ─────────────────────────────────────────────────────────

  /**
   * Polls the inbox and yields each message once, opened by the codec. Each message is journaled
   * (on disk) before it is yielded and marked done when the loop moves on (asks for the next one,
   * breaks out or throws), so it is yielded once even across loops and restarts; only one the
   * process died holding is yielded again by the next `messages()`. Messages fetched but not yet
   * yielded when a loop ends come first in the next one. Breaking out stops polling cleanly.
   */
  async *messages(options: MessagesOptions = {}): AsyncGenerator<Message, void, undefined> {
    knownArgs('agent.messages', options, ['status', 'limit', 'wait']);
    if (options.status !== undefined && options.status !== 'sent')
      throw new UsageError(
        `agent.messages: status ${JSON.stringify(options.status)} is not supported: the loop yields new messages (status "sent"), each once; read history with agent.thread() or agent.status()`,
        { code: 'invalid_argument' },
      );
    const limit = boundedArg('agent.messages', 'limit', options.limit, 1, LIMITS.pollLimitMax);
    const wait = boundedArg('agent.messages', 'wait', options.wait, 0, LIMITS.pollWaitMaxSeconds);
    this.#claim('messages');
    this.#stopping = false;
    let journal: Journal;
    try {
      journal = Journal.open(this.#journalDir('messages'), {
        clock: this.#clock,
        fsync: this.#options.fsync === true,
        relay: this.client.relayUrl,
      });
    } catch (err) {
      this.#release();
      throw err;
    }
    const source = new PollSource(this.client, {
      clock: this.#clock,
      ...journalTakes(journal),
      ...(this.#options.intervalMs === undefined ? {} : { intervalMs: this.#options.intervalMs }),
      ...(limit === undefined ? {} : { limit }),
      ...(wait === undefined ? {} : { waitSeconds: wait }),
    });
    // What waits for the loop, each with its size: held by count and by bytes, as the runtime's intake.
    const queue = journal.takeRecovered().map((e) => ({ message: e.message, bytes: estimateBytes(e.message) }));
    let heldBytes = queue.reduce((sum, q) => sum + q.bytes, 0);
    let wake: (() => void) | undefined;
    let ending = false;
    let failure: MrpError | undefined;
    const poke = (): void => {
      const w = wake;
      wake = undefined;
      w?.();
    };
    let ended!: () => void;
    const finished = new Promise<void>((r) => (ended = r));
    this.#endMessages = async (graceMs) => {
      ending = true;
      poke();
      // Nothing new is fetched while the loop's body finishes its message.
      void source.stopIntake().catch(() => undefined);
      let timer: ReturnType<Clock['setTimeout']> | undefined;
      const late = new Promise<void>((r) => (timer = this.#clock.setTimeout(r, graceMs)));
      await Promise.race([finished, late]);
      timer?.cancel();
    };
    source.on('connected', (info) => this.emit('connected', info));
    // The options' profile (an inbox policy, a visibility) holds while the inbox is read this way too.
    this.#announceOnConnect(source);
    source.on('disconnected', (info) => this.emit('disconnected', info));
    source.on('warning', (err) => this.emit('warning', err));
    source.on('fatal', (err) => {
      failure = err;
      this.emit('fatal', err);
      poke();
    });
    const budget = 100;
    const maxBytes = this.#options.maxQueuedBytes ?? RUNTIME_DEFAULTS.maxQueuedBytes;
    const consumer: SourceConsumer = {
      deliver: async (batch) => {
        const fresh: typeof queue = [];
        batch.messages.forEach((m, i) => {
          if (!journal.isDone(m.message_id) && !journal.get(m.message_id))
            fresh.push({ message: m, bytes: batch.sizes?.[i] ?? estimateBytes(m) });
        });
        await Promise.all(fresh.map((q) => journal.received(q.message)));
        for (const q of fresh) heldBytes += q.bytes;
        queue.push(...fresh);
        for (const r of batch.rejected ?? []) {
          const who = r.identity
            ? {
                messageId: r.identity.message_id,
                ...(r.identity.sender_key ? { senderKey: r.identity.sender_key } : {}),
              }
            : {};
          this.emit('invalid_message', { ...who, reason: r.reason, answered: false, code: r.code });
        }
        poke();
        return { declined: 0 };
      },
      // As the runtime's: by count, and by bytes assuming each message may be as large as one can be.
      capacity: () => {
        const room = maxBytes - heldBytes;
        if (room <= 0) return 0;
        return Math.min(Math.max(0, budget - queue.length), Math.max(1, Math.floor(room / LIMITS.maxEnvelopeBytes)));
      },
      hasRoom: () => queue.length <= budget / 2 && heldBytes <= maxBytes / 2,
    };
    let current: string | undefined;
    try {
      source.start(consumer);
      for (;;) {
        if (current !== undefined) {
          journal.done(current);
          current = undefined;
        }
        while (queue.length === 0 && !ending && !failure) await new Promise<void>((r) => (wake = r));
        if (failure) throw failure;
        if (ending) return;
        const { message, bytes } = queue.shift()!;
        heldBytes -= bytes;
        source.wake();
        current = message.message_id;
        let opened: Awaited<ReturnType<MessageCodec['open']>>;
        try {
          opened = checkOpened(await this.#codec.open(message));
        } catch (err) {
          this.emit('invalid_message', {
            messageId: message.message_id,
            senderKey: message.sender_key,
            reason: (err as Error)?.message ?? String(err),
            answered: false,
            code: (err as { code?: string })?.code ?? 'invalid_message',
          });
          continue;
        }
        if (opened.encrypted) this.#encrypted.add(opened.message);
        yield opened.message;
      }
    } finally {
      this.#endMessages = undefined;
      // The loop moved on from the message it held (it broke out or threw): that message was
      // yielded, so it is done — the next loop must not yield it again. Only a process that dies
      // holding one leaves it unfinished in the journal (yielded again after the restart).
      if (current !== undefined) journal.done(current);
      try {
        await source.stopIntake();
        await source.close();
      } finally {
        journal.close();
        this.#release();
        if (this.#stopping) this.#dropTempDir();
        ended();
      }
    }
  }

  // ── sending ───────────────────────────────────────────────────────────────────────────────

  #resolve(to: string): string {
    if (this.#contacts === undefined) {
      const c = this.#options.contacts;
      if (c === undefined)
        this.#contacts = { book: emptyBook(), file: 'the contacts (none given: pass the contacts option)' };
      else if (typeof c === 'string') {
        const file = resolve(c);
        let text = '';
        try {
          if (statSync(file).size > MAX_CONTACTS_BYTES)
            throw new UsageError(`contacts file ${file} is larger than 1 MiB`, { code: 'contacts_invalid' });
          text = readFileSync(file, 'utf8');
        } catch (err) {
          if (err instanceof MrpError) throw err;
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
            throw new UsageError(`cannot read contacts file ${file}: ${(err as Error).message}`, {
              code: 'contacts_invalid',
            });
        }
        this.#contacts = { book: text ? parseContacts(text, file) : emptyBook(), file };
      } else this.#contacts = { book: c, file: 'the contacts option' };
    }
    if (typeof to !== 'string' || to === '')
      throw new UsageError(
        `the recipient must be a public key or a contact name (got ${JSON.stringify(to) ?? String(to)})`,
        {
          code: 'invalid_argument',
        },
      );
    try {
      return resolveRecipient(this.#contacts.book, to, this.#contacts.file);
    } catch (err) {
      // The codec's hint is the CLI's (`mrp contacts add`), and the library reads no contacts file
      // unless given one: say what works here.
      if (err instanceof UsageError && err.code === 'unknown_contact')
        throw new UsageError(err.message, {
          code: 'unknown_contact',
          hint:
            this.#options.contacts === undefined
              ? 'pass the 43-character key, or the contacts option: a contacts file (the CLI keeps its own in ~/.mrp/contacts.json) or a book'
              : "pass the 43-character key, or add the name to the contacts you gave (`mrp contacts add <name> <key>` writes the CLI's file)",
        });
      throw err;
    }
  }

  #encode(body: JsonValue): string {
    let json: string | undefined;
    try {
      json = JSON.stringify(body);
    } catch (err) {
      throw new UsageError(`the body is not JSON (${(err as Error).message})`, { code: 'invalid_argument' });
    }
    if (json === undefined)
      throw new UsageError(`the body is not JSON (got ${typeof body})`, { code: 'invalid_argument' });
    const problem = replyProblem(json, 'message');
    if (problem)
      throw new UsageError(problem.message, {
        code: problem.code === 'reply_too_large' ? 'payload_too_large' : 'invalid_argument',
      });
    return json;
  }

  /**
   * The body's JSON. The body may be left out when there are attachments (§3.6: "required unless
   * attachments is non-empty"): it is `null` then, as the relay stores a send without one.
   */
  #bodyJson(method: string, body: unknown, attachments: readonly unknown[] | undefined): string {
    if (body === undefined) {
      if (attachments?.length) return 'null';
      throw new UsageError(`${method}: a body is required unless attachments are given`, {
        code: 'invalid_argument',
      });
    }
    return this.#encode(body as JsonValue);
  }

  /**
   * Sends `body` to `to` (a public key, or a contact name with the `contacts` option). Rate limits
   * are waited out and failures retried for up to `sendTimeoutMs`, then it rejects with the
   * failure (`RateLimitError` for a rate limit); resolves with the relay's message id.
   */
  async send(message: AgentMessage): Promise<string>;
  async send(to: string, body: JsonValue | undefined, options?: AgentSendOptions): Promise<string>;
  async send(first: string | AgentMessage, second?: JsonValue, third: AgentSendOptions = {}): Promise<string> {
    let to: unknown = first;
    let body = second;
    let options = third;
    if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
      if (second !== undefined)
        throw new UsageError('agent.send: give send({ to, body, ...options }) or send(to, body, options), not both', {
          code: 'invalid_argument',
        });
      knownArgs('agent.send', first, [...SEND_KEYS, 'to', 'body']);
      ({ to, body, ...options } = first);
    }
    if (typeof to !== 'string' || to === '')
      throw new UsageError('agent.send: to must be a public key or a contact name', { code: 'invalid_argument' });
    knownArgs('agent.send', options, SEND_KEYS);
    if (options.ttl !== undefined && options.expiresIn !== undefined && options.ttl !== options.expiresIn)
      throw new UsageError('agent.send: ttl and expiresIn are the same setting; give one', {
        code: 'invalid_argument',
      });
    const ttl = options.ttl ?? options.expiresIn;
    const encrypt = booleanArg('agent.send', 'encrypt', options.encrypt) === true;
    const attachments = attachmentsArg('agent.send', options.attachments);
    const recipient = this.#resolve(to);
    const sealed = await this.#codec.seal(
      {
        bodyJson: this.#bodyJson('agent.send', body, attachments),
        contentType: options.contentType ?? 'application/json',
      },
      {
        to: recipient,
        encrypt,
        ...(options.inReplyTo === undefined ? {} : { inReplyTo: options.inReplyTo }),
      },
    );
    const request: EncodedSend = {
      recipient_key: recipient,
      content_type: sealed.contentType,
      body_json: sealed.bodyJson,
    };
    if (attachments?.length) request.attachments = attachments.map(attachmentOf);
    if (options.threadId !== undefined) request.thread_id = options.threadId;
    if (options.inReplyTo !== undefined) request.in_reply_to = options.inReplyTo;
    if (ttl !== undefined) request.expires_in = ttl;
    if (options.metadata !== undefined) request.metadata = options.metadata;
    return this.#sendOut(request, options.threadId, true);
  }

  /**
   * Replies to `message` in its thread (§4.4). A reply to a message that arrived encrypted is
   * sealed for its sender. Resolves with the reply's message id.
   */
  async reply(
    message: Message,
    body: JsonValue | undefined,
    options: { contentType?: string; encrypt?: boolean; attachments?: Array<Attachment | string> } = {},
  ): Promise<string> {
    knownArgs('agent.reply', options, REPLY_KEYS);
    if (
      message === null ||
      typeof message !== 'object' ||
      typeof message.message_id !== 'string' ||
      typeof message.sender_key !== 'string'
    )
      throw new UsageError(
        'agent.reply: the first argument must be a received message (with message_id and sender_key)',
        { code: 'invalid_argument' },
      );
    const encrypt = booleanArg('agent.reply', 'encrypt', options.encrypt);
    const attachments = attachmentsArg('agent.reply', options.attachments);
    const sealed = await this.#codec.seal(
      {
        bodyJson: this.#bodyJson('agent.reply', body, attachments),
        contentType: options.contentType ?? 'application/json',
      },
      {
        to: message.sender_key,
        // Sealed when the message came sealed: opened by `messages()`/`decrypt()`, or still the
        // raw envelope (`agent.thread()`, `client.getMessage()`) — never a clear answer to it.
        encrypt: encrypt ?? (this.#encrypted.has(message) || isEncryptedMessage(message)),
        inReplyTo: message.message_id,
      },
    );
    const request = encodedReplyTo(message, sealed, attachments?.map(attachmentOf));
    return this.#sendOut(request, request.thread_id!);
  }

  // ── discovery and the ACL ─────────────────────────────────────────────────────────────────

  /** Public agents matching all given filters (§3.5). */
  async discover(
    query: {
      tag?: string | string[];
      q?: string;
      name?: string;
      activeSince?: string | Date;
      limit?: number;
      cursor?: string;
    } = {},
  ): Promise<DiscoverResponse> {
    knownArgs('agent.discover', query, DISCOVER_KEYS);
    let activeSince = query.activeSince;
    if (activeSince instanceof Date) {
      if (Number.isNaN(activeSince.getTime()))
        throw new UsageError('agent.discover: activeSince is an invalid Date', { code: 'invalid_argument' });
      activeSince = activeSince.toISOString();
    }
    const tags = query.tag === undefined ? undefined : Array.isArray(query.tag) ? query.tag : [query.tag];
    return this.client.discover({
      ...(tags ? { tag: tags } : {}),
      ...(query.q === undefined ? {} : { q: query.q }),
      ...(query.name === undefined ? {} : { name: query.name }),
      ...(activeSince === undefined ? {} : { active_since: activeSince }),
      ...(query.limit === undefined ? {} : { limit: query.limit }),
      ...(query.cursor === undefined ? {} : { cursor: query.cursor }),
    });
  }

  /** Allows a peer (a key or a contact name) into the inbox (with `inboxPolicy: 'allowlist'`). */
  allow(peer: string): Promise<AclEntry> {
    return this.client.putAcl(this.#resolve(peer), 'allow');
  }

  /** Blocks a peer (a key or a contact name). */
  block(peer: string): Promise<AclEntry> {
    return this.client.putAcl(this.#resolve(peer), 'block');
  }

  /** Removes a peer's ACL entry (allow or block). */
  unblock(peer: string): Promise<void> {
    return this.client.deleteAcl(this.#resolve(peer));
  }

  /**
   * The ACL, one page: every entry, or only one type, `listAcl('allow')` (the Python SDK's
   * `list_acl("allow")`) or `listAcl({ type: 'block', limit, cursor })`.
   */
  async listAcl(
    query: AclEntryType | { type?: AclEntryType; limit?: number; cursor?: string } = {},
  ): Promise<AclListResponse> {
    if (typeof query === 'string') query = { type: query };
    knownArgs('agent.listAcl', query, ACL_LIST_KEYS);
    if (query.type !== undefined && query.type !== 'allow' && query.type !== 'block')
      throw new UsageError(
        `agent.listAcl: the type must be "allow" or "block" (got ${JSON.stringify(query.type) ?? String(query.type)})`,
        { code: 'invalid_argument' },
      );
    return this.client.listAcl({
      ...(query.type === undefined ? {} : { entry_type: query.type }),
      ...(query.limit === undefined ? {} : { limit: query.limit }),
      ...(query.cursor === undefined ? {} : { cursor: query.cursor }),
    });
  }

  /** `agent.register()`, the Python SDK's name for `announce()`: pushes the profile in the options now. */
  register(): Promise<AgentProfile> {
    return this.announce();
  }

  /** The `name` option (announced as the profile's `display_name`), if any. */
  get name(): string | undefined {
    return this.#options.name;
  }

  /**
   * Uploads a blob (bytes, text as UTF-8, or a stream with its size and hash: `fileBlobInput(path)`).
   * `options`: its content type, or `{ contentType, filename, encryptFor, onProgress, signal }`.
   * `encryptFor` (a key or contact; bytes or text only) seals it for that recipient first
   * (docs/protocol.md §8.4): the relay stores ciphertext. Resolves with the blob's info and
   * `attachment`, ready for `send`'s `attachments` (an encrypted one carries its wrapped key).
   */
  async upload(
    data: BlobInput | string,
    options: string | AgentUploadOptions = {},
  ): Promise<BlobInfo & { attachment: Attachment }> {
    const o: AgentUploadOptions = typeof options === 'string' ? { contentType: options } : options;
    knownArgs('agent.upload', o, ['contentType', 'filename', 'encryptFor', 'onProgress', 'signal']);
    // A string is its UTF-8 bytes (the Python SDK's `upload(bytes, …)` takes text encoded).
    const input = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    const meta = {
      ...(o.filename === undefined ? {} : { filename: o.filename }),
      ...(o.contentType === undefined ? {} : { content_type: o.contentType }),
    };
    const pass = {
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
    };
    if (o.encryptFor === undefined) {
      const info = await this.client.uploadBlob(input, {
        ...pass,
        ...(o.contentType === undefined ? {} : { contentType: o.contentType }),
      });
      return { ...info, attachment: { blob_id: info.blob_id, ...meta } };
    }
    if (!(input instanceof Uint8Array))
      throw new UsageError('agent.upload: encryptFor needs the bytes in memory (a Uint8Array or a string)', {
        code: 'invalid_argument',
      });
    const prepared = await sealUpload(this.client.keypair, this.#resolve(o.encryptFor), () => [input], {
      ...(o.filename === undefined ? {} : { filename: o.filename }),
      ...(o.contentType === undefined ? {} : { contentType: o.contentType }),
    });
    const info = await this.client.uploadBlob(prepared.input, { ...pass, contentType: prepared.uploadType });
    return { ...info, attachment: { blob_id: info.blob_id, ...prepared.attachment } };
  }

  /**
   * Downloads a blob whole: its bytes (checked against its hash) and content type. Give a blob id,
   * or an attachment of a message with `{ from: message }`: an encrypted attachment is opened
   * (its content type is the one it was sealed with). Blobs over `maxBytes` (default 100 MiB,
   * the relay's limit) are refused before reading them (`payload_too_large`); stream larger ones
   * with `agent.client.downloadBlob` / `openAttachment`.
   */
  async download(
    blob: string | Attachment,
    options: { maxBytes?: number; signal?: AbortSignal; from?: Message } = {},
  ): Promise<{ data: Buffer; contentType: string }> {
    knownArgs('agent.download', options, ['maxBytes', 'signal', 'from']);
    const maxBytes = options.maxBytes ?? LIMITS.maxBlobBytes;
    const signal = options.signal ? { signal: options.signal } : {};
    if (blob !== null && typeof blob === 'object') {
      const sender = options.from?.sender_key;
      if (blob.encrypted === true && typeof sender !== 'string')
        throw new UsageError(
          'agent.download: an encrypted attachment is opened with its message: download(attachment, { from: message })',
          { code: 'invalid_argument' },
        );
      let head: string | undefined;
      const data = await downloadAttachmentBytes(this.client, blob, sender ?? '', {
        maxBytes,
        ...signal,
        onHead: (info) => {
          head = info.content_type;
        },
      });
      const contentType = (blob.encrypted === true ? blob.content_type : head) ?? 'application/octet-stream';
      return { data, contentType };
    }
    let contentType = 'application/octet-stream';
    const data = await this.client.downloadBlobBytes(blob, {
      maxBytes,
      ...signal,
      onHead: (head) => {
        contentType = head.content_type;
      },
    });
    return { data, contentType };
  }

  /**
   * Opens a message read some other way (`agent.client.getMessage`, `thread`): for an
   * `application/x-m2m-encrypted` one, the plaintext body and its content type (the codec's
   * `decryption_failed` and friends when it cannot be opened); any other comes back as it is.
   * Messages from `run()` and `messages()` arrive opened already.
   */
  async decrypt(message: Message): Promise<{ body: JsonValue; contentType: string; encrypted: boolean }> {
    if (message === null || typeof message !== 'object' || typeof message.content_type !== 'string')
      throw new UsageError('agent.decrypt: the argument must be a message (with content_type and body)', {
        code: 'invalid_argument',
      });
    const opened = checkOpened(await this.#codec.open(message));
    if (opened.encrypted) this.#encrypted.add(message);
    return { body: opened.message.body, contentType: opened.message.content_type, encrypted: opened.encrypted };
  }

  /** A message's status (`sent`, `delivered`, `expired`) and times, for a message you sent or received. */
  status(messageId: string): Promise<MessageStatusResponse> {
    return this.client.messageStatus(messageId);
  }

  /** One page of a thread you are part of (`{ limit, cursor }`), oldest first. */
  async thread(threadId: string, query: { limit?: number; cursor?: string } = {}): Promise<ThreadResponse> {
    knownArgs('agent.thread', query, ['limit', 'cursor']);
    return this.client.thread(threadId, query);
  }

  /** Registers this agent's webhook (§3.8): the relay POSTs new messages to `url`, signed with `secret`. */
  setWebhook(url: string, secret: string): Promise<WebhookConfig> {
    return this.client.setWebhook(url, secret);
  }

  /** This agent's webhook (never its secret). */
  getWebhook(): Promise<WebhookConfig> {
    return this.client.getWebhook();
  }

  /** Removes this agent's webhook and its pending deliveries. */
  deleteWebhook(): Promise<void> {
    return this.client.deleteWebhook();
  }
}
