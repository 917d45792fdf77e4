/**
 * How a running agent looks. On a terminal: a spinner while connecting, one coloured line per
 * message (time, sender — contact name when known —, outcome, duration), visible reconnects.
 * Otherwise (or with `--log-format json`): one JSON object per event on stdout. Message bodies
 * appear only with `--log-payloads`; secrets never.
 */
import { formatDuration } from '../core/duration.js';
import { MrpError } from '../core/errors.js';
import { isoTime } from '../core/iso-time.js';
import { type ContactBook, nameForKey } from '../protocol/contacts.js';
import type { Message } from '../protocol/types.js';
import type { HandledEvent, Runtime } from '../runtime/runtime.js';
import type { Deps } from './deps.js';
import { hintFor } from './hints.js';
import type { Output } from './output.js';
import { clockTime, jsonText, safeText } from './render.js';
import { neverConnectedHint } from './watch.js';

export type LogFormat = 'pretty' | 'json';

interface Spinner {
  start(text?: string): unknown;
  stop(): unknown;
  clear(): unknown;
  render(): unknown;
  succeed(text?: string): unknown;
  isSpinning: boolean;
  text: string;
}

export interface ReporterOptions {
  format: LogFormat;
  payloads: boolean;
  contacts: ContactBook;
}

const OUTCOME_LABEL: Record<HandledEvent['outcome'], string> = {
  replied: 'replied',
  no_reply: 'no reply',
  error: 'error',
  timeout: 'timeout',
  reply_failed: 'reply failed',
};

export class Reporter {
  readonly #out: Output;
  readonly #deps: Deps;
  readonly #o: ReporterOptions;
  /** The runtime's fatal error, once its `fatal` event is out (`problem` does not repeat it). */
  #fatal: unknown;
  #spinner: Spinner | undefined;

  private constructor(out: Output, deps: Deps, options: ReporterOptions, spinner: Spinner | undefined) {
    this.#out = out;
    this.#deps = deps;
    this.#o = options;
    this.#spinner = spinner;
  }

  static async create(out: Output, deps: Deps, options: ReporterOptions): Promise<Reporter> {
    let spinner: Spinner | undefined;
    // A terminal that reports no width (a pty nobody sized) would make ora redraw forever.
    if (options.format === 'pretty' && deps.stderr.isTTY && (deps.stderr.columns ?? 0) > 0 && !out.quiet) {
      const { default: ora } = await import('ora');
      spinner = ora({
        stream: deps.stderr as NodeJS.WritableStream,
        discardStdin: false,
        color: 'cyan',
      }) as unknown as Spinner;
    }
    return new Reporter(out, deps, options, spinner);
  }

  get format(): LogFormat {
    return this.#o.format;
  }

  /** `new Date(now).toISOString()` (the seconds' part cached: one line per message). */
  #time(): string {
    return isoTime(Math.floor(this.#deps.clock.now()));
  }

  /**
   * A JSON event line (json format) — the machine-readable contract. Lines are gathered and
   * written once per event-loop turn (stdout to a pipe or file is a synchronous write per call:
   * at thousands of messages a second, one write per line cost the runner more than the message
   * did). `stopped` and `fatal` write everything at once; so does `flush()`.
   */
  event(event: string, fields: Record<string, unknown>): void {
    if (this.#o.format !== 'json') return;
    this.#queue(`${jsonText({ time: this.#time(), event, ...fields })}\n`, event === 'stopped' || event === 'fatal');
  }

  #queue(line: string, now: boolean): void {
    this.#pending.push(line);
    if (now) this.flush();
    else if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(this.#flushSoon);
    }
  }

  readonly #pending: string[] = [];
  #flushScheduled = false;
  readonly #flushSoon = (): void => this.flush();

  /** Writes the JSON lines gathered so far (before the process ends, or before other output). */
  flush(): void {
    this.#flushScheduled = false;
    if (this.#pending.length === 0) return;
    const text = this.#pending.join('');
    this.#pending.length = 0;
    this.#out.write(text);
  }

  /** A human line (pretty format), printed around the spinner. */
  line(text: string): void {
    if (this.#o.format !== 'pretty' || this.#out.quiet) return;
    const spinning = this.#spinner?.isSpinning === true;
    if (spinning) this.#spinner!.clear();
    this.#out.line(text);
    if (spinning) this.#spinner!.render();
  }

  spin(text: string): void {
    if (this.#spinner) {
      if (this.#spinner.isSpinning) this.#spinner.text = text;
      else this.#spinner.start(text);
    } else this.line(this.#out.style.dim(text));
  }

  succeed(text: string): void {
    if (this.#spinner?.isSpinning) this.#spinner.succeed(text);
    else this.line(`${this.#out.style.green('✔')} ${text}`);
  }

  stopSpinner(): void {
    if (this.#spinner?.isSpinning) this.#spinner.stop();
  }

  /** A contact name or the full key (copyable), safe for a terminal. */
  sender(key: string): string {
    return safeText(nameForKey(this.#o.contacts, key) ?? key);
  }

  #messageFields(m: Message): Record<string, unknown> {
    const name = nameForKey(this.#o.contacts, m.sender_key);
    return {
      id: m.message_id,
      from: m.sender_key,
      ...(name ? { from_name: name } : {}),
      content_type: m.content_type,
      thread_id: m.thread_id,
      ...(this.#o.payloads ? { body: m.body } : {}),
    };
  }

  /** Wires a runtime's events to the output. */
  attach(runtime: Runtime, describe: { mode: string; relay: string; agent: string; handler: string }): void {
    const { style } = this.#out;
    // Until the first connection works, every failure says to check the relay URL.
    let everConnected = false;
    runtime.on('connecting', () => {
      this.spin(`Connecting to ${describe.relay} as ${describe.agent}…`);
      this.event('connecting', { relay: describe.relay, agent: describe.agent });
    });
    runtime.on('connected', ({ reconnected, detail }) => {
      everConnected = true;
      this.succeed(
        reconnected
          ? `${style.dim(this.#clockLabel())}  Reconnected ${style.dim(`(${safeText(detail)})`)}`
          : `Ready ${style.dim('·')} ${describe.mode} ${style.dim('·')} ${describe.agent} ${style.dim('·')} handler ${describe.handler}`,
      );
      this.event(reconnected ? 'reconnected' : 'ready', {
        mode: describe.mode,
        relay: describe.relay,
        agent: describe.agent,
        detail,
      });
    });
    runtime.on('disconnected', (d) => {
      this.stopSpinner();
      const next = d.willReconnect ? `; reconnecting in ${formatDuration(d.delayMs)}` : '';
      const hint = everConnected ? undefined : neverConnectedHint(describe.relay, d);
      this.line(
        `${style.dim(this.#clockLabel())}  ${style.yellow('↻')} ${safeText(d.explanation)}${next}${hint ? style.dim(` — ${hint}`) : ''}`,
      );
      this.event('disconnected', {
        reason: d.explanation,
        code: d.code,
        will_reconnect: d.willReconnect,
        delay_ms: d.delayMs,
        ...(hint ? { hint } : {}),
      });
      if (d.willReconnect) this.spin('Reconnecting…');
    });
    runtime.on('recovered', ({ count }) => {
      this.line(
        `${style.dim(this.#clockLabel())}  ${style.yellow('↺')} resuming ${count} message${count === 1 ? '' : 's'} a previous run did not finish`,
      );
      this.event('recovered', { count });
    });
    // One line per message by default (`handled`); arrivals too with --debug.
    if (this.#out.debugEnabled) {
      runtime.on('received', ({ message, redelivered }) => {
        this.event('received', { ...this.#messageFields(message), redelivered });
      });
    }
    runtime.on('duplicate', ({ message, reason }) => {
      this.event('duplicate', { id: message.message_id, from: message.sender_key, reason });
      if (reason === 'done')
        this.line(
          style.dim(
            `${this.#clockLabel()}  ${this.sender(message.sender_key)}  already answered ${safeText(message.message_id)} (acked again)`,
          ),
        );
    });
    runtime.on('handled', (h) => {
      if (this.#o.format === 'json') {
        // The busiest line of all: one object, in the order `event` would give it.
        const m = h.message;
        const line: Record<string, unknown> = {
          time: this.#time(),
          event: 'handled',
          id: m.message_id,
          from: m.sender_key,
        };
        const name = nameForKey(this.#o.contacts, m.sender_key);
        if (name) line['from_name'] = name;
        line['content_type'] = m.content_type;
        line['thread_id'] = m.thread_id;
        if (this.#o.payloads) line['body'] = m.body;
        line['outcome'] = h.outcome;
        line['ms'] = h.durationMs;
        line['redelivered'] = h.redelivered;
        if (h.replyId) line['reply_id'] = h.replyId;
        if (h.error) line['error'] = h.error;
        this.#queue(`${jsonText(line)}\n`, false);
        return;
      }
      const ok = h.outcome === 'replied' || h.outcome === 'no_reply';
      const paint = ok ? style.green : h.outcome === 'timeout' ? style.yellow : style.red;
      const err = h.error ? `  ${style.dim(safeText(`${h.error.code}: ${h.error.message}`))}` : '';
      const body = this.#o.payloads
        ? `  ${style.dim(safeText((JSON.stringify(h.message.body) ?? '').slice(0, 200)))}`
        : '';
      this.line(
        `${style.dim(this.#clockLabel())}  ${style.cyan(this.sender(h.message.sender_key).padEnd(12))}  ${paint(OUTCOME_LABEL[h.outcome].padEnd(12))} ${formatDuration(h.durationMs).padStart(6)}  ${style.dim(safeText(h.message.content_type))}${h.redelivered ? style.yellow(' (redelivered)') : ''}${err}${body}`,
      );
    });
    runtime.on('handler_error', ({ message, error }) => {
      const stack = this.#out.debugEnabled && error.stack ? error.stack : undefined;
      if (stack) this.line(style.gray(stack));
      this.event('handler_error', {
        id: message.message_id,
        error: { name: error.name, message: error.message, ...(stack ? { stack } : {}) },
      });
    });
    runtime.on('handler_crashed', ({ message, crashes }) => {
      this.line(
        `${style.red('✖')} the handler stopped the runner ${crashes} times on ${safeText(message.message_id)}; answering it with handler_crashed`,
      );
      this.event('handler_crashed', { id: message.message_id, from: message.sender_key, crashes });
    });
    runtime.on('invalid_message', ({ messageId, senderKey, reason, answered }) => {
      // The id and the reason come from whatever the relay delivered: hostile text.
      const what = messageId ? `message ${safeText(messageId)}` : 'an unreadable message';
      this.line(
        `${style.yellow('!')} ${what} cannot be handled (${safeText(reason)})${answered ? '; answered with invalid_message' : messageId ? '; acknowledged' : ''}`,
      );
      this.event('invalid_message', {
        ...(messageId ? { id: messageId } : {}),
        ...(senderKey ? { from: senderKey } : {}),
        reason,
        answered,
      });
    });
    runtime.on('readiness', ({ ready, error, retryInMs }) => {
      if (ready) this.line(`${style.green('✔')} the journal is writable again; taking messages`);
      else
        this.line(
          `${style.red('✖')} not ready: ${error?.message ?? 'the journal cannot be written'} (next try in ${formatDuration(retryInMs ?? 0)}; no messages are taken meanwhile)`,
        );
      this.event(ready ? 'ready_again' : 'not_ready', {
        ...(error ? { code: error.code, message: error.message } : {}),
        ...(retryInMs === undefined ? {} : { retry_ms: retryInMs }),
      });
    });
    runtime.on('reply_retry', ({ messageId, error, delayMs }) => {
      this.line(
        `${style.dim(this.#clockLabel())}  ${style.yellow('…')} reply to ${safeText(messageId ?? 'a message')} not sent yet (${safeText(error.code)}); retrying in ${formatDuration(delayMs)}`,
      );
      this.event('reply_retry', { id: messageId, code: error.code, message: error.message, delay_ms: delayMs });
    });
    runtime.on('log', ({ level, message, fields, messageId }) => {
      // ctx.log.debug is for --debug only, in both formats.
      if (level === 'debug' && !this.#out.debugEnabled) return;
      const paint =
        level === 'error'
          ? style.red
          : level === 'warn'
            ? style.yellow
            : level === 'debug'
              ? style.gray
              : (t: string) => t;
      const extra = Object.keys(fields).length ? ` ${style.dim(safeText(JSON.stringify(fields) ?? ''))}` : '';
      this.line(`${style.dim(this.#clockLabel())}  ${paint(`${level}`.padEnd(5))} ${safeText(message)}${extra}`);
      this.event('log', { level, msg: message, id: messageId, ...fields });
    });
    runtime.on('warning', (err) => {
      this.line(`${style.dim(this.#clockLabel())}  ${style.yellow('warning:')} ${safeText(err.message)}`);
      this.event('warning', { code: err.code, message: err.message });
    });
    runtime.on('fatal', (err) => {
      this.stopSpinner();
      this.#fatal = err;
      const hint = hintFor(err);
      this.event('fatal', { code: err.code, message: err.message, ...(hint ? { hint } : {}) });
    });
    runtime.on('draining', ({ running, queued, replies }) => {
      this.stopSpinner();
      this.line(
        style.dim(
          `Stopping: ${running} handler${running === 1 ? '' : 's'} running, ${replies} repl${replies === 1 ? 'y' : 'ies'} pending…`,
        ),
      );
      this.event('draining', { running, queued, replies });
    });
    runtime.on('stopped', ({ error }) => {
      this.stopSpinner();
      const s = runtime.stats;
      this.line(style.dim(`Stopped. ${s.handled} handled, ${s.errors} errors, ${s.duplicates} duplicates skipped.`));
      this.event('stopped', { ...s, ...(error ? { error: { code: error.code, message: error.message } } : {}) });
    });
  }

  /** An error that happens outside the runtime (announce failures, uncaught handler errors). */
  problem(event: string, err: unknown): void {
    const e = err instanceof MrpError ? err : undefined;
    const message = err instanceof Error ? err.message : String(err);
    // The error's own hint, else the error-code table's (a relay's refusal carries none itself).
    const hint = hintFor(err);
    this.line(
      `${this.#out.style.dim(this.#clockLabel())}  ${this.#out.style.red('error:')} ${safeText(message)}${hint ? ` — ${safeText(hint)}` : ''}`,
    );
    // The runtime's fatal error already has its event (the runtime's `fatal` listener above).
    if (event === 'fatal' && err === this.#fatal) return;
    this.event(event, { code: e?.code ?? 'internal_error', message, ...(hint ? { hint } : {}) });
  }

  #clockLabel(): string {
    return clockTime(this.#deps.clock.now());
  }
}
