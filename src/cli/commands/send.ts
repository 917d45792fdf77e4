import { readFile } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import { e2eCodec } from '../../client/e2e-codec.js';
import type { RelayClient } from '../../client/http.js';
import { sleep } from '../../core/async.js';
import type { Clock } from '../../core/clock.js';
import { formatDuration, parseDuration } from '../../core/duration.js';
import { AbortError, TimeoutError, UsageError } from '../../core/errors.js';
import { LIMITS } from '../../protocol/constants.js';
import type { JsonObject, JsonValue, Message, SendRequest } from '../../protocol/types.js';
import { ValidationError, validateSendRequest } from '../../protocol/validate.js';
import { checkUploadSize, encryptedFile, progressFor, uploadFiles } from '../attachments.js';
import type { CliContext } from '../context.js';
import type { Deps, InStream } from '../deps.js';
import { EXIT } from '../exit.js';
import { MessageOpener, sealedNote, shownJson } from '../opener.js';
import { collect, durationOption, keyValuePairs } from '../options.js';
import { action, addGlobalOptions, examples, ReportedError } from '../program.js';
import { jsonText, messageBlock, safeText } from '../render.js';
import { shutdownSignals } from '../signals.js';

export interface SendOptions {
  to?: string;
  text?: string;
  /** `--json <value>` is the body; a bare `--json` asks for JSON output. */
  json?: string | boolean;
  body?: string;
  file?: string;
  contentType?: string;
  thread?: string;
  inReplyTo?: string;
  replyTo?: string;
  ttl?: string;
  meta?: string[];
  wait?: string | boolean;
  /** Blob ids to attach (repeatable). */
  attach?: string[];
  /** Files to upload and attach (repeatable). */
  attachFile?: string[];
  /** End-to-end encrypt the body for the recipient (docs/protocol.md §8). */
  encrypt?: boolean;
}

const DEFAULT_WAIT_MS = 30_000;

async function readStdin(stdin: InStream): Promise<string> {
  if (stdin.isTTY)
    throw new UsageError('"-" reads the body from stdin, but stdin is a terminal; pipe something in', {
      code: 'invalid_argument',
    });
  let text = '';
  for await (const chunk of stdin) text += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
  return text;
}

function isJsonType(contentType: string): boolean {
  return contentType === 'application/json' || contentType.endsWith('+json');
}

/** Parses text as the body: JSON for JSON content types, a JSON string otherwise. */
function bodyFrom(text: string, contentType: string, where: string): JsonValue {
  if (!isJsonType(contentType)) return text;
  try {
    return JSON.parse(text) as JsonValue;
  } catch (err) {
    throw new UsageError(`${where} is not valid JSON (${(err as Error).message})`, {
      code: 'invalid_argument',
      hint: 'use --text for plain text, or --content-type text/plain',
    });
  }
}

/** Works out recipient and body from positionals and flags: exactly one body source (none is fine with attachments). */
async function compose(
  ctx: CliContext,
  options: SendOptions,
  args: string[],
): Promise<{ recipient: string; body: JsonValue | undefined }> {
  const positional = [...args];
  const recipientArg = options.to ?? positional.shift();
  if (!recipientArg)
    throw new UsageError('who to send to? give a public key or contact name (first argument or --to)', {
      code: 'missing_argument',
    });
  const contentType = options.contentType ?? 'application/json';
  const sources: Array<[string, () => Promise<JsonValue>]> = [];
  const text = positional.join(' ');
  if (positional.length === 1 && positional[0] === '-')
    sources.push(['-', async () => bodyFrom(await readStdin(ctx.deps.stdin), contentType, 'stdin')]);
  else if (positional.length > 0) sources.push(['text', async () => (isJsonType(contentType) ? { text } : text)]);
  if (options.text !== undefined)
    sources.push(['--text', async () => (isJsonType(contentType) ? { text: options.text! } : options.text!)]);
  const jsonBody = typeof options.json === 'string' ? options.json : undefined;
  if (jsonBody !== undefined)
    sources.push(['--json', async () => bodyFrom(jsonBody, 'application/json', '--json value')]);
  const body = options.body;
  if (body !== undefined) sources.push(['--body', async () => bodyFrom(body, 'application/json', '--body value')]);
  if (options.file !== undefined) {
    const file = options.file;
    sources.push([
      '--file',
      async () =>
        bodyFrom(
          file === '-'
            ? await readStdin(ctx.deps.stdin)
            : await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
                throw new UsageError(`--file: cannot read ${file} (${err.code ?? err.message})`, {
                  code: 'invalid_argument',
                });
              }),
          contentType,
          file === '-' ? 'stdin' : file,
        ),
    ]);
  }
  if (sources.length === 0 && (options.attach?.length || options.attachFile?.length)) {
    return { recipient: await ctx.resolve(recipientArg), body: undefined };
  }
  if (sources.length === 0) {
    throw new UsageError('nothing to send: give a text, --text, --json <value>, --file <path>, or - to read stdin', {
      code: 'missing_argument',
    });
  }
  if (sources.length > 1) {
    throw new UsageError(`give one body, not several (${sources.map(([n]) => n).join(', ')})`, {
      code: 'invalid_argument',
    });
  }
  return { recipient: await ctx.resolve(recipientArg), body: await sources[0]![1]() };
}

function metadata(pairs: string[] | undefined): JsonObject | undefined {
  return pairs?.length ? Object.fromEntries(keyValuePairs(pairs, '--meta')) : undefined;
}

function ttlSeconds(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined || ms < 1000)
    throw new UsageError(`--ttl "${value}" must be a duration of at least 1s (e.g. 3600, 1h, 7d)`, {
      code: 'invalid_argument',
    });
  const max = LIMITS.ttlMaxSeconds;
  if (Math.round(ms / 1000) > max)
    throw new UsageError(`--ttl "${value}" is too long: at most ${max / 86_400}d (${max} seconds)`, {
      code: 'invalid_argument',
    });
  return Math.round(ms / 1000);
}

/** The flag that sets each field of the send request (`thread_id: …` is said as `--thread: …`). */
const FLAG_OF_FIELD: Record<string, string> = {
  content_type: '--content-type',
  thread_id: '--thread',
  in_reply_to: '--in-reply-to',
  expires_in: '--ttl',
  metadata: '--meta',
  attachments: '--attach',
};

/**
 * `validateSendRequest`, its complaints naming the flag the user typed instead of the wire field
 * (same code, same exit 2); a field no flag sets (the body) is said as it is.
 */
function checkRequest(request: SendRequest): void {
  try {
    validateSendRequest(request);
  } catch (err) {
    if (!(err instanceof ValidationError)) throw err;
    const top = err.field.split(/[.[]/)[0]!;
    const flag = FLAG_OF_FIELD[top];
    if (flag === undefined) throw err;
    const where = err.field === top ? flag : `${flag} (${err.field})`;
    throw new UsageError(`${where}: ${err.reason}`, { code: err.code, details: { field: err.field, flag } });
  }
}

/** Waits for the reply to `messageId` with long polls filtered on `in_reply_to`. */
async function waitForReply(
  client: RelayClient,
  messageId: string,
  waitMs: number,
  clock: Clock,
  signal: AbortSignal,
): Promise<Message> {
  const now = (): number => clock.now();
  const deadline = now() + waitMs;
  for (;;) {
    const left = Math.ceil((deadline - now()) / 1000);
    if (left <= 0) break;
    const started = now();
    const page = await client.poll({ in_reply_to: messageId, limit: 1, wait: Math.min(20, left) }, signal);
    if (page.messages[0]) return page.messages[0];
    // A relay without long polls answers at once: do not spin.
    if (now() - started < 900) await sleep(1000, { clock, signal });
  }
  const status = await client.messageStatus(messageId).catch(() => undefined);
  const state =
    status?.status === 'sent'
      ? 'the recipient has not picked it up yet'
      : status?.status === 'delivered'
        ? 'it was delivered but not answered'
        : 'no status';
  throw new TimeoutError(`no reply to ${messageId} within ${formatDuration(waitMs)} (${state})`, {
    code: 'reply_timeout',
    hint: `wait longer with --wait <duration>, or check on it later with \`mrp status ${messageId}\``,
  });
}

export async function runSend(ctx: CliContext, options: SendOptions, args: string[]): Promise<void> {
  const { recipient, body } = await compose(ctx, options, args);
  const request: SendRequest = { recipient_key: recipient, content_type: options.contentType ?? 'application/json' };
  if (body !== undefined) request.body = body;
  const attachCount = (options.attach?.length ?? 0) + (options.attachFile?.length ?? 0);
  if (attachCount > LIMITS.maxAttachments) {
    throw new UsageError(`at most ${LIMITS.maxAttachments} attachments per message (got ${attachCount})`, {
      code: 'invalid_argument',
    });
  }
  if (options.attach?.length) request.attachments = options.attach.map((blob_id) => ({ blob_id }));
  if (options.thread !== undefined) request.thread_id = options.thread;
  if (options.inReplyTo !== undefined && options.replyTo !== undefined && options.inReplyTo !== options.replyTo)
    throw new UsageError('--in-reply-to and --reply-to name different messages; give one of them', {
      code: 'invalid_argument',
    });
  const inReplyTo = options.inReplyTo ?? options.replyTo;
  if (inReplyTo !== undefined) request.in_reply_to = inReplyTo;
  const ttl = ttlSeconds(options.ttl);
  if (ttl !== undefined) request.expires_in = ttl;
  const meta = metadata(options.meta);
  if (meta) request.metadata = meta;
  // Checked before any file is uploaded (each file stands in as a placeholder attachment).
  const files = options.attachFile ?? [];
  checkRequest(
    files.length
      ? {
          ...request,
          attachments: [...(request.attachments ?? []), ...files.map(() => ({ blob_id: 'blob_000000000000' }))],
        }
      : request,
  );
  if (options.encrypt && options.attach?.length) {
    // An uploaded blob cannot be encrypted after the fact (its bytes and hash are fixed): sent as it is.
    ctx.out.warn(
      `-e: --attach ${options.attach.join(', ')} ${options.attach.length === 1 ? 'is' : 'are'} attached as uploaded, NOT encrypted (use --attach-file to encrypt a file)`,
    );
  }
  if (options.encrypt) await seal(ctx, request);

  const waitMs =
    options.wait === undefined || options.wait === false
      ? undefined
      : options.wait === true
        ? DEFAULT_WAIT_MS
        : durationOption(options.wait, '--wait', DEFAULT_WAIT_MS);
  if (waitMs !== undefined && waitMs < 1000)
    throw new UsageError(`--wait "${String(options.wait)}" must be at least 1s`, { code: 'invalid_argument' });
  const jsonOut = ctx.globals.json;
  // Every file within the per-blob limit before anything is uploaded or signed.
  for (const path of options.attachFile ?? []) await checkUploadSize(path, '--attach-file', options.encrypt === true);
  const client = await ctx.client();
  if (options.attachFile?.length) {
    // Uploaded first (each file streamed, a bar on a terminal for big ones), then attached.
    const bars: Array<{ done(): void }> = [];
    const quiet = jsonOut || ctx.globals.quiet;
    try {
      const uploaded = await uploadFiles(client, options.attachFile, recipient, {
        ...(options.encrypt ? { prepare: encryptedFile(client.keypair) } : {}),
        progress: (label, total) => progressFor(ctx.deps.stderr, quiet, label, total, bars),
      });
      request.attachments = [...(request.attachments ?? []), ...uploaded];
    } finally {
      for (const b of bars) b.done();
    }
  }
  const sent = await client.send(request);
  const { style } = ctx.out;
  const plain = !ctx.out.isTTY;
  const encrypted = options.encrypt === true;
  if (waitMs === undefined) {
    ctx.out.result(
      encrypted ? { ...sent, encrypted } : sent,
      () =>
        plain
          ? sent.message_id
          : `${style.green('✔')} Sent ${style.bold(safeText(sent.message_id))} to ${recipient}${encrypted ? style.green('  🔒 encrypted') : ''}`,
      () => sent.message_id,
    );
    return;
  }
  if (!jsonOut && !plain)
    ctx.out.info(style.dim(`Sent ${safeText(sent.message_id)}; waiting up to ${formatDuration(waitMs)} for a reply…`));
  // Ctrl-C while waiting: there is nothing to finish, so stop at once (exit 130), but say which
  // message was sent so it is not lost.
  const signals = shutdownSignals(ctx.deps);
  const stop = new AbortController();
  void signals.first.then(() => stop.abort());
  let reply: Message;
  try {
    reply = await waitForReply(client, sent.message_id, waitMs, ctx.deps.clock, stop.signal);
  } catch (err) {
    if (!stop.signal.aborted) throw err;
    ctx.out.error(
      new AbortError(`interrupted while waiting for the reply to ${sent.message_id} (the message was sent)`, {
        hint: `check on it later with \`mrp status ${sent.message_id}\``,
        details: { message_id: sent.message_id },
      }),
    );
    throw new ReportedError(EXIT.interrupted);
  } finally {
    signals.dispose();
  }
  const contacts = await ctx.contacts();
  const shown = await new MessageOpener(client.keypair).open(reply);
  const replyBody = shown.message.body;
  ctx.out.result(
    { ...sent, ...(encrypted ? { encrypted } : {}), reply: shownJson(shown) },
    () =>
      plain ? jsonText(replyBody) : messageBlock(shown.message, { style, contacts, self: client.publicKey }, shown),
    () => jsonText(replyBody),
  );
  if (shown.sealed && !ctx.globals.json && (plain || ctx.globals.quiet)) ctx.out.warn(sealedNote(shown)!);
}

/**
 * `-e`: replaces the request's body by its v2 envelope sealed for the recipient (§8.2); thread,
 * reply-to, metadata and TTL stay in clear (§8.3). The plaintext request was validated first, so
 * a bad body is reported as such, not as a bad envelope.
 */
async function seal(ctx: CliContext, request: SendRequest): Promise<void> {
  const { keypair } = await ctx.identity();
  const sealed = await e2eCodec(keypair).seal(
    { bodyJson: JSON.stringify(request.body ?? null), contentType: request.content_type ?? 'application/json' },
    { to: request.recipient_key, encrypt: true },
  );
  request.body = JSON.parse(sealed.bodyJson) as JsonValue;
  request.content_type = sealed.contentType;
  checkRequest(request);
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('send')
    .description('send a message (optionally wait for the reply)')
    .argument('[recipient-and-text...]', 'public key or contact name, then the text (or - for stdin)')
    .option('--to <recipient>', 'public key or contact name (instead of the first argument)')
    .option('--text <text>', 'send {"text": <text>}')
    .addOption(new Option('--json [value]', 'send this JSON value as the body (bare --json: JSON output)'))
    .option('--body <json>', 'same as --json <value>')
    .option('--file <path>', 'body from a file (- for stdin); parsed as JSON for JSON content types')
    .option('--content-type <type>', 'content type (of the plaintext, with -e)', 'application/json')
    .option(
      '-e, --encrypt',
      'end-to-end encrypt the body and every --attach-file for the recipient (only they can read them)',
    )
    .option('--thread <id>', 'thread id')
    .option('--in-reply-to <message-id>', 'the message this answers')
    .option('--reply-to <message-id>', "same as --in-reply-to (the official CLI's name)")
    .option(
      '--ttl <duration>',
      `time to live: seconds or e.g. 1h, 7d (default ${LIMITS.ttlDefaultSeconds / 86_400}d, max ${LIMITS.ttlMaxSeconds / 86_400}d)`,
    )
    .option('--meta <key=value>', 'metadata entry (repeatable)', collect)
    .option('--attach <blob-id>', 'attach a blob you uploaded (repeatable)', collect)
    .option(
      '--attach-file <path>',
      'upload a file and attach it (after any --attach), with its name and a media type from its extension (repeatable)',
      collect,
    )
    .option(
      '-w, --wait [duration]',
      `wait for the reply and print it (default ${formatDuration(DEFAULT_WAIT_MS)}; e.g. 10s, 2m)`,
    );
  // `--json '<body>'` and a bare `--json` on one command line: commander keeps the last one, so
  // the other would be lost ("nothing to send", or no JSON output). Both count: the value is
  // the body (as `--body`) and the bare one asks for JSON output.
  // With `--body` too, the value stays in `json`, so two bodies are refused as always.
  let jsonBody: string | undefined;
  let jsonOutput = false;
  let merged = false;
  cmd.on('option:json', (value: string | null | undefined) => {
    if (typeof value === 'string') jsonBody = value;
    else jsonOutput = true;
    if (jsonBody === undefined || !jsonOutput) return;
    if (cmd.getOptionValueSource('body') === 'cli' && !merged) {
      cmd.setOptionValueWithSource('json', jsonBody, 'cli');
      return;
    }
    merged = true;
    cmd.setOptionValueWithSource('body', jsonBody, 'cli');
    cmd.setOptionValueWithSource('json', true, 'cli');
  });
  cmd.on('option:body', () => {
    if (merged) cmd.setOptionValueWithSource('json', jsonBody, 'cli');
  });
  examples(addGlobalOptions(cmd, { json: false }), [
    'mrp send alice "hello there"',
    'mrp send --to 5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA --text hi',
    `mrp send bot --content-type application/x-mrp-request+json --json '{"action":"ping"}' --wait`,
    'echo \'{"n": 1}\' | mrp send bot - --wait 10s --json',
    'id=$(mrp send -q alice hi)   # -q: only the message id (with --wait: only the reply body)',
    'mrp send alice --file report.json --thread q3 --meta priority=high',
    'mrp send alice "the report" --attach-file report.pdf --attach-file data.csv',
    'mrp send -e alice "for your eyes only" --attach-file secret.pdf',
    'mrp send -e alice "only you can read this"   # end-to-end encrypted',
  ]);
  cmd.action(action(deps, runSend));
}
