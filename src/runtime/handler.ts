/**
 * The handler contract and loading a handler module by path (see loader.ts), so
 * `.ts/.mts/.cts/.js/.mjs/.cjs` files work with no set-up, including TypeScript that imports
 * other TypeScript files and npm packages. Load failures name the file (and line, for syntax
 * errors) and say what was found.
 */

import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { extname, relative, resolve } from 'node:path';
import { ConfigError } from '../core/errors.js';
import type { Attachment, JsonValue, Message, SendResponse } from '../protocol/types.js';
import type { CtxDownloadOptions, CtxUploadOptions, ReplyWithAttachments } from './attachments.js';
import { importModule, ModuleSyntaxError } from './loader.js';

export interface HandlerLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

export interface SendOptions {
  contentType?: string;
  threadId?: string;
  inReplyTo?: string;
  /** Time to live in seconds. */
  ttl?: number;
  metadata?: Record<string, JsonValue>;
  /**
   * Seal the body end-to-end for the recipient. The runner's message codec must be able to (the
   * default one cannot: the send then fails with `encryption_unavailable`, never goes out plain).
   */
  encrypt?: boolean;
  /** Attachments (from `ctx.upload`); an encrypted one must have been uploaded `to` this recipient. */
  attachments?: Attachment[];
}

export interface HandlerContext {
  /** This agent's public key. */
  readonly self: string;
  /** Aborted when the handler times out or the runner shuts down. */
  readonly signal: AbortSignal;
  readonly log: HandlerLogger;
  /** True when this message was seen before (a crash interrupted its handling). */
  readonly redelivered: boolean;
  /**
   * True when the message arrived end-to-end encrypted (the handler sees it opened, and replies
   * to it are sealed for its sender automatically). Always false with the default codec.
   */
  readonly encrypted: boolean;
  /** Sends a threaded reply now (in addition to whatever the handler returns), optionally with attachments. */
  reply(body: JsonValue, options?: { contentType?: string; attachments?: Attachment[] }): Promise<SendResponse>;
  /**
   * The bytes of one of the message's attachments: hash-checked, and decrypted when it is
   * encrypted (§8.4), all before it resolves. Refuses attachments over `maxBytes` (100 MiB).
   */
  download(attachment: Attachment, options?: CtxDownloadOptions): Promise<Buffer>;
  /**
   * Uploads `data` (a string is UTF-8) and returns the attachment to reply with. `encrypt`
   * defaults to `encrypted` (this message's); encrypted uploads are for `to` (default: the sender).
   * A handler re-run after a crash that uploads the same data gets the same attachment back.
   */
  upload(data: Uint8Array | string, options?: CtxUploadOptions): Promise<Attachment>;
  /** Sends a new message to a public key (or a contact name, under `mrp run`). */
  send(to: string, body: JsonValue, options?: SendOptions): Promise<SendResponse>;
}

/**
 * What a handler may return: a JSON value becomes the reply; a string becomes `{"text": …}`;
 * `withAttachments(body, attachments)` replies with attachments.
 */
// biome-ignore lint/suspicious/noConfusingVoidType: a handler may return nothing (void), the natural TypeScript type for that
export type HandlerResult = JsonValue | ReplyWithAttachments | undefined | void;

/** A message handler: `export default` it (or `export const handler`, or `module.exports =`). */
export type Handler = (message: Message, ctx: HandlerContext) => HandlerResult | Promise<HandlerResult>;

export const HANDLER_EXTENSIONS = ['.ts', '.mts', '.cts', '.js', '.mjs', '.cjs'] as const;

export interface LoadedHandler {
  handler: Handler;
  file: string;
  /** Which export was used. */
  exportName: 'default' | 'handler' | 'default.handler' | 'module.exports';
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/** Picks the handler function out of a module namespace. */
export function pickHandler(mod: unknown, file: string): Pick<LoadedHandler, 'handler' | 'exportName'> {
  if (typeof mod === 'function') return { handler: mod as Handler, exportName: 'module.exports' };
  const ns = (mod ?? {}) as Record<string, unknown>;
  const def = ns['default'];
  if (typeof def === 'function') return { handler: def as Handler, exportName: 'default' };
  if (typeof ns['handler'] === 'function') return { handler: ns['handler'] as Handler, exportName: 'handler' };
  if (def && typeof def === 'object' && typeof (def as Record<string, unknown>)['handler'] === 'function') {
    return { handler: (def as Record<string, unknown>)['handler'] as Handler, exportName: 'default.handler' };
  }
  const found = Object.keys(ns)
    .filter((k) => k !== '__esModule')
    .map((k) => `${k} (${describe(ns[k])})`);
  throw new ConfigError(
    'handler_invalid',
    `${file} exports no handler function (found ${found.length ? found.join(', ') : 'no exports'})`,
    { file, hint: 'export a function: `export default async (msg, ctx) => …` or `export const handler = …`' },
  );
}

/** Turns a module loading failure into one clear line naming the file (and line). */
function loadError(err: unknown, file: string, cwd: string): ConfigError {
  const e = err as Error & { code?: string };
  const message = String(e?.message ?? err);
  const shown = relative(cwd, file) || file;
  if (err instanceof ModuleSyntaxError) {
    return new ConfigError(
      'handler_syntax',
      `syntax error in handler ${relative(cwd, err.file) || err.file}:${err.line}:${err.column}: ${err.text}`,
      {
        file,
        cause: err,
        details: { file: err.file, line: err.line },
      },
    );
  }
  const where = /(\S+\.[cm]?[jt]s):(\d+):(\d+)/.exec(message);
  if (/ParseError|SyntaxError|Unexpected token|Expected/i.test(`${e?.name} ${message}`)) {
    const first = message
      .replace(/^(ParseError|SyntaxError):\s*/, '')
      .split('\n')[0]!
      .trim();
    const at = where ? `${relative(cwd, where[1]!) || where[1]}:${where[2]}:${where[3]}` : shown;
    return new ConfigError('handler_syntax', `syntax error in handler ${at}: ${first}`, {
      file,
      cause: err,
      details: { file, line: where ? Number(where[2]) : undefined },
    });
  }
  if (
    e?.code === 'MODULE_NOT_FOUND' ||
    e?.code === 'ERR_MODULE_NOT_FOUND' ||
    /Cannot find (module|package)/.test(message)
  ) {
    const missing = /Cannot find (?:module|package) '([^']+)'/.exec(message)?.[1];
    return new ConfigError(
      'handler_import',
      `handler ${shown} imports ${missing ? `"${missing}"` : 'a module'} that cannot be found`,
      {
        file,
        cause: err,
        hint:
          missing && !missing.startsWith('.') && !missing.startsWith('/')
            ? `install it: npm install ${missing
                .split('/')
                .slice(0, missing.startsWith('@') ? 2 : 1)
                .join('/')}`
            : 'check the import path',
      },
    );
  }
  return new ConfigError('handler_load', `handler ${shown} failed while loading: ${message.split('\n')[0]}`, {
    file,
    cause: err,
  });
}

/**
 * Loads a handler module. `fresh` bypasses the module cache (for reloading after an edit).
 * Throws ConfigError: `handler_not_found`, `handler_unsupported`, `handler_syntax`,
 * `handler_import`, `handler_load` or `handler_invalid`.
 */
export async function loadHandler(
  path: string,
  options: { cwd?: string; fresh?: boolean } = {},
): Promise<LoadedHandler> {
  const cwd = options.cwd ?? process.cwd();
  const file = resolve(cwd, path);
  let info: Stats;
  try {
    info = await stat(file);
  } catch {
    throw new ConfigError('handler_not_found', `handler file ${path} does not exist (looked for ${file})`, {
      file,
      hint: 'check the path, or create one with `mrp init`',
    });
  }
  if (info.isDirectory()) {
    throw new ConfigError('handler_not_found', `handler ${path} is a directory; point --handler at a file`, { file });
  }
  const ext = extname(file);
  if (!(HANDLER_EXTENSIONS as readonly string[]).includes(ext)) {
    throw new ConfigError(
      'handler_unsupported',
      `handler ${path} has extension "${ext}"; use one of ${HANDLER_EXTENSIONS.join(' ')}`,
      { file },
    );
  }
  let mod: unknown;
  try {
    mod = await importModule(file, { fresh: options.fresh === true });
  } catch (err) {
    throw loadError(err, file, cwd);
  }
  return { file, ...pickHandler(mod, path) };
}
