import type { Command } from 'commander';
import { deferred } from '../../core/async.js';
import { UsageError } from '../../core/errors.js';
import { LIMITS, MESSAGE_STATUSES } from '../../protocol/constants.js';
import type { Message, MessageStatus } from '../../protocol/types.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { MessageOpener, sealedNote, shownJson } from '../opener.js';
import { durationOption, intOption } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { jsonText, messageBlock } from '../render.js';
import { firstConnectError, watchMessages } from '../watch.js';

export interface RecvOptions {
  status?: string;
  limit?: string;
  from?: string;
  thread?: string;
  wait?: string | boolean;
  ack?: boolean;
  ws?: boolean;
}

/** How long a `--no-ack` peek listens after the backlog stops arriving. */
const PEEK_QUIET_MS = 400;

/**
 * Reads pending messages over a WebSocket without acknowledging them (they stay `sent`). Reads one
 * more than asked so `hasMore` is true only when something really is left. Fails fast when the
 * socket cannot be opened (e.g. the key already has its 2 connections) instead of waiting. With
 * `waitMs` (`--wait`), an empty inbox is watched that long for a first matching message, as the
 * long poll of a plain `recv --wait` does.
 */
async function peek(
  ctx: CliContext,
  limit: number,
  filter: (m: Message) => boolean,
  waitMs = 0,
): Promise<{ messages: Message[]; hasMore: boolean }> {
  const client = await ctx.client();
  const { Session } = await import('../../client/session.js');
  const session = new Session({
    url: client.wsUrl,
    keypair: client.keypair,
    clock: ctx.deps.clock,
    ...ctx.sessionTrace,
  });
  const clock = ctx.deps.clock;
  const got: Message[] = [];
  const finished = deferred<void>();
  let quiet: ReturnType<typeof clock.setTimeout> | undefined;
  let deadline: ReturnType<typeof clock.setTimeout> | undefined;
  const rearm = (): void => {
    quiet?.cancel();
    quiet = clock.setTimeout(() => finished.resolve(), PEEK_QUIET_MS);
  };
  // Still waiting for a first match: only the deadline ends the peek.
  const waiting = (): boolean => waitMs > 0 && got.length === 0;
  session.on('ready', () => {
    if (waiting()) deadline ??= clock.setTimeout(() => finished.resolve(), waitMs);
    else rearm();
  });
  session.on('message', (m) => {
    if (!filter(m)) return waiting() ? undefined : rearm();
    got.push(m);
    if (got.length > limit) finished.resolve();
    else rearm();
  });
  session.on('disconnect', (d) => {
    if (session.status !== 'ready') finished.reject(firstConnectError(d, client.relayUrl));
  });
  session.on('fatal', (err) => finished.reject(err));
  try {
    session.start();
    await finished.promise;
  } finally {
    quiet?.cancel();
    deadline?.cancel();
    await session.close();
  }
  return { messages: got.slice(0, limit), hasMore: got.length > limit };
}

/** `mrp recv`: fetch the inbox once (marking it delivered), or stream it with --ws. */
export async function runRecv(ctx: CliContext, options: RecvOptions): Promise<void> {
  const from = options.from === undefined ? undefined : await ctx.resolve(options.from);
  const filter = (m: Message): boolean =>
    (from === undefined || m.sender_key === from) &&
    (options.thread === undefined || m.thread_id === options.thread || m.message_id === options.thread);
  const status = (options.status ?? 'sent') as MessageStatus;
  if (!(MESSAGE_STATUSES as readonly string[]).includes(status)) {
    throw new UsageError(`--status: "${status}" must be one of ${MESSAGE_STATUSES.join(', ')}`, {
      code: 'invalid_argument',
    });
  }
  if (options.ws) {
    // The stream shows new messages as they come, until Ctrl-C: flags of a one-time fetch that it
    // cannot honour are refused rather than ignored; --limit ends it after that many (tail -n).
    if (status !== 'sent') {
      throw new UsageError(
        `--status ${status} with --ws: the stream shows new messages only; drop --ws to read ${status} messages`,
        { code: 'invalid_argument' },
      );
    }
    if (options.wait !== undefined) {
      throw new UsageError('--wait with --ws: the stream already waits for messages (until Ctrl-C); drop one of them', {
        code: 'invalid_argument',
      });
    }
    const count = options.limit === undefined ? undefined : intOption(options.limit, '--limit', 0, 1);
    await watchMessages(ctx, { ack: options.ack !== false, filter, ...(count === undefined ? {} : { count }) });
    return;
  }
  const limit = intOption(options.limit, '--limit', LIMITS.pollLimitDefault, 1, LIMITS.pollLimitMax);
  // A bare --wait waits as long as the relay allows.
  const waitMs =
    options.wait === true ? LIMITS.pollWaitMaxSeconds * 1000 : durationOption(options.wait || undefined, '--wait', 0);
  if (waitMs > LIMITS.pollWaitMaxSeconds * 1000) {
    throw new UsageError(`--wait: at most ${LIMITS.pollWaitMaxSeconds}s (the relay's longest poll)`, {
      code: 'invalid_argument',
    });
  }
  const wait = Math.ceil(waitMs / 1000);
  let messages: Message[];
  let hasMore: boolean;
  if (options.ack === false && status === 'sent') {
    ({ messages, hasMore } = await peek(ctx, limit, filter, waitMs));
  } else {
    const client = await ctx.client();
    const page = await client.poll({
      status,
      limit,
      ...(from === undefined ? {} : { sender_key: from }),
      ...(options.thread === undefined ? {} : { thread_id: options.thread }),
      ...(wait > 0 ? { wait } : {}),
    });
    messages = page.messages;
    hasMore = page.has_more;
  }
  const contacts = await ctx.contacts();
  const { keypair } = await ctx.identity();
  const self = keypair.publicKey;
  const shown = await new MessageOpener(keypair).openAll(messages);
  const { style } = ctx.out;
  ctx.out.list(
    shown.map(shownJson),
    () =>
      shown.length === 0
        ? [style.dim(status === 'sent' ? 'No new messages.' : `No ${status} messages.`)]
        : shown.flatMap((s) => [...messageBlock(s.message, { style, contacts, self }, s), '']),
    (m) => jsonText(m['body']),
  );
  if (ctx.out.listMode === 'bare') for (const s of shown) if (s.sealed) ctx.out.warn(sealedNote(s)!);
  if (hasMore) {
    ctx.out.status(
      'has_more',
      { has_more: true, count: messages.length },
      style.dim(`More are waiting: run \`mrp recv${options.ack === false ? ' --no-ack --limit <n>' : ''}\` again.`),
      ctx.deps.clock.now(),
    );
  }
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('recv')
    .description('fetch new messages once (they become delivered), or stream them with --ws')
    .option('--status <status>', 'sent (new, default), delivered or expired (history)')
    .option('--limit <n>', `at most this many (1-${LIMITS.pollLimitMax}; with --ws: stop after this many)`)
    .option('--from <sender>', 'only from this key or contact')
    .option('--thread <id>', 'only this thread')
    .option(
      '-w, --wait [duration]',
      `long-poll: wait up to this long for something to arrive (e.g. 20s; bare: the most, ${LIMITS.pollWaitMaxSeconds}s)`,
    )
    .option('--no-ack', 'peek: show new messages without marking them delivered')
    .option('--ws', 'stay connected over WebSocket and print messages as they arrive');
  examples(addGlobalOptions(cmd), [
    'mrp recv',
    'mrp recv --wait 20s --from alice',
    'mrp recv --no-ack',
    'mrp recv --ws',
    'mrp recv --status delivered --limit 10 --json',
  ]);
  cmd.addHelpText(
    'after',
    '\nOn a terminal: each message in full. With --json or when piped: one JSON message per line (NDJSON); "more are\nwaiting" goes to stderr (a JSON line {"event":"has_more"} with --json). -q: one body per line.\n',
  );
  cmd.action(action(deps, runRecv));
}
