/**
 * TTY-aware output. Results go to stdout: JSON with `--json`, otherwise human text. Progress,
 * warnings and errors go to stderr so piped stdout stays clean. Colour only when stdout is a TTY
 * and neither NO_COLOR nor --no-color says otherwise; chalk is loaded only then.
 */
import { MrpError, RelayError } from '../core/errors.js';
import type { Deps, OutStream } from './deps.js';
import { hintFor } from './hints.js';
import { clockTime, jsonText, safeText } from './render.js';

type Paint = (text: string) => string;

export interface Style {
  bold: Paint;
  dim: Paint;
  red: Paint;
  green: Paint;
  yellow: Paint;
  cyan: Paint;
  magenta: Paint;
  gray: Paint;
}

const plain: Paint = (t) => t;
/** No colour, no emphasis: every paint returns its text. */
export const PLAIN_STYLE: Style = {
  bold: plain,
  dim: plain,
  red: plain,
  green: plain,
  yellow: plain,
  cyan: plain,
  magenta: plain,
  gray: plain,
};

export interface OutputOptions {
  json: boolean;
  quiet: boolean;
  debug: boolean;
  /** --no-color was given. */
  noColor: boolean;
}

/** Whether to colour a stream: a TTY, no NO_COLOR, no --no-color, not a dumb terminal. */
export function wantsColor(stream: OutStream, env: Deps['env'], noColor: boolean): boolean {
  if (noColor || (env['NO_COLOR'] ?? '') !== '' || env['TERM'] === 'dumb') return false;
  if ((env['FORCE_COLOR'] ?? '') !== '' && env['FORCE_COLOR'] !== '0') return true;
  return stream.isTTY === true;
}

export class Output {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly debugEnabled: boolean;
  readonly style: Style;
  readonly errStyle: Style;
  readonly #stdout: OutStream;
  readonly #stderr: OutStream;

  private constructor(deps: Deps, options: OutputOptions, style: Style, errStyle: Style) {
    this.json = options.json;
    this.quiet = options.quiet;
    this.debugEnabled = options.debug;
    this.#stdout = deps.stdout;
    this.#stderr = deps.stderr;
    this.style = style;
    this.errStyle = errStyle;
  }

  static async create(deps: Deps, options: OutputOptions): Promise<Output> {
    const out = wantsColor(deps.stdout, deps.env, options.noColor);
    const err = wantsColor(deps.stderr, deps.env, options.noColor);
    if (!out && !err) return new Output(deps, options, PLAIN_STYLE, PLAIN_STYLE);
    const { Chalk } = await import('chalk');
    const chalk = new Chalk({ level: 1 });
    const colored: Style = {
      bold: (t) => chalk.bold(t),
      dim: (t) => chalk.dim(t),
      red: (t) => chalk.red(t),
      green: (t) => chalk.green(t),
      yellow: (t) => chalk.yellow(t),
      cyan: (t) => chalk.cyan(t),
      magenta: (t) => chalk.magenta(t),
      gray: (t) => chalk.gray(t),
    };
    return new Output(deps, options, out ? colored : PLAIN_STYLE, err ? colored : PLAIN_STYLE);
  }

  /** True when stdout is a terminal (human, interactive). */
  get isTTY(): boolean {
    return this.#stdout.isTTY === true;
  }

  get columns(): number {
    return this.#stdout.columns ?? 100;
  }

  /** Writes raw text to stdout. */
  write(text: string): void {
    this.#stdout.write(text);
  }

  /** One line to stdout. */
  line(text = ''): void {
    this.#stdout.write(`${text}\n`);
  }

  /** One JSON document (one line) to stdout. */
  jsonLine(value: unknown): void {
    this.#stdout.write(`${jsonText(value)}\n`);
  }

  /**
   * A command's result: JSON with --json; with --quiet only the bare value asked for (`bare`: a
   * key, an id, a value; nothing when the command has none); otherwise the human rendering.
   */
  result(value: unknown, human: () => string | string[], bare?: () => string | string[]): void {
    if (this.json) {
      this.jsonLine(value);
      return;
    }
    if (this.quiet) {
      const values = bare ? bare() : [];
      for (const v of Array.isArray(values) ? values : [values]) this.line(this.#bare(v));
      return;
    }
    const text = human();
    for (const l of Array.isArray(text) ? text : [text]) this.line(l);
  }

  /**
   * A bare value (`-q`) as printed: exact when piped (`$(mrp … -q)` gets what was asked for); on a
   * terminal it may have come from a peer or the relay (a status, a key, a tag), so through `safeText`.
   */
  #bare(value: string): string {
    return this.isTTY ? safeText(value) : value;
  }

  /**
   * How a list of items (messages, agents) is printed, the same in every command: `json` (NDJSON,
   * one document per line) with --json or when stdout is not a terminal, `bare` values with
   * --quiet, else `human` lines.
   */
  get listMode(): 'json' | 'bare' | 'human' {
    if (this.json) return 'json';
    if (this.quiet) return 'bare';
    return this.isTTY ? 'human' : 'json';
  }

  /** Prints a list in `listMode`; `human` renders them all (it may add a header or an empty note). */
  list<T>(items: readonly T[], human: () => string[], bare: (item: T) => string): void {
    const mode = this.listMode;
    if (mode === 'json') for (const item of items) this.jsonLine(item);
    else if (mode === 'bare') for (const item of items) this.line(this.#bare(bare(item)));
    else for (const l of human()) this.line(l);
  }

  /** Progress and status for people, on stderr; silent with --quiet or --json. */
  info(text: string): void {
    if (this.quiet || this.json) return;
    this.#stderr.write(`${text}\n`);
  }

  /**
   * A status event of a long-running command (connected, reconnecting, …) on stderr: one JSON
   * object `{"time","event",…}` with --json, otherwise `HH:MM:SS text`; silent with --quiet.
   */
  status(event: string, fields: Record<string, unknown>, text: string, nowMs: number): void {
    if (this.quiet) return;
    if (this.json) {
      this.#stderr.write(`${jsonText({ time: new Date(nowMs).toISOString(), event, ...fields })}\n`);
      return;
    }
    this.#stderr.write(`${this.errStyle.dim(clockTime(nowMs))}  ${text}\n`);
  }

  warn(text: string): void {
    if (this.json) {
      this.#stderr.write(`${jsonText({ warning: text })}\n`);
      return;
    }
    // Warnings quote ids and errors from the relay or a message: through safeText (idempotent).
    this.#stderr.write(`${this.errStyle.yellow('warning:')} ${safeText(text)}\n`);
  }

  debug(text: string): void {
    if (this.debugEnabled) this.#stderr.write(`${this.errStyle.gray(`debug: ${text}`)}\n`);
  }

  /** Reports a failure: one line for people, one JSON object with --json. */
  error(err: unknown): void {
    const e = err instanceof MrpError ? err : undefined;
    const message = err instanceof Error ? err.message : String(err);
    if (this.json) {
      const body: Record<string, unknown> = { code: e?.code ?? 'internal_error', message };
      const hint = hintFor(err);
      if (hint) body['hint'] = hint;
      if (e?.details) body['details'] = e.details;
      if (err instanceof RelayError && err.requestId) body['request_id'] = err.requestId;
      this.#stderr.write(`${jsonText({ error: body })}\n`);
    } else {
      this.#stderr.write(`${formatErrorLine(err, this.errStyle)}\n`);
    }
    if (this.debugEnabled && err instanceof Error && err.stack)
      this.#stderr.write(`${this.errStyle.gray(safeText(err.stack, { multiline: true }))}\n`);
  }

  /** Aligned `label  value` lines. */
  keyValues(rows: Array<[string, string]>): string[] {
    const width = Math.max(0, ...rows.map(([k]) => k.length));
    return rows.map(([k, v]) => `${this.style.dim(k.padEnd(width))}  ${v}`);
  }

  /** A plain table with a dim header row; columns padded to the widest cell. */
  table(header: string[], rows: string[][]): string[] {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ''))));
    const fmt = (cells: string[], paint: Paint = plain): string =>
      cells
        .map((c, i) => (i === cells.length - 1 ? paint(c) : paint(c) + ' '.repeat(widths[i]! - visibleLength(c))))
        .join('  ')
        .trimEnd();
    return [fmt(header, this.style.dim), ...rows.map((r) => fmt(r))];
  }
}

const ANSI_RE = /\u001b\[[0-9;]*m/g;

function visibleLength(text: string): number {
  return text.replace(ANSI_RE, '').length;
}

/**
 * `error: <message> — <hint>` on one line; relay errors lead with their code. An error that lists
 * several problems (`details.errors`, e.g. a manifest) keeps one line per problem. Messages may
 * quote what a relay or a file said, so they pass through `safeText`.
 */
export function formatErrorLine(err: unknown, style: Style = PLAIN_STYLE): string {
  const message = err instanceof Error ? err.message : String(err);
  const text = err instanceof RelayError && !message.startsWith(err.code) ? `${err.code}: ${message}` : message;
  const hint = hintFor(err);
  const tail = hint ? ` — ${safeText(hint)}` : '';
  if (err instanceof MrpError && Array.isArray(err.details?.['errors']) && text.includes('\n')) {
    const [head, ...rest] = text.split('\n').map((l) => safeText(l));
    return [`${style.red('error:')} ${head}${tail}`, ...rest.map((l) => `  ${l}`)].join('\n');
  }
  return `${style.red('error:')} ${safeText(text.replace(/\s*\n\s*/g, ' '))}${tail}`;
}
