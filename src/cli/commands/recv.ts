import type { Command } from 'commander';
import { sleep } from '../../core/async.js';
import { UsageError } from '../../core/errors.js';
import { LIMITS, MESSAGE_STATUSES } from '../../protocol/constants.js';
import type { Message, MessageStatus } from '../../protocol/types.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { intOption } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { messageBlock } from '../render.js';
import { watchMessages } from '../watch.js';

export interface RecvOptions {
  status?: string;
  limit?: string;
  from?: string;
  thread?: string;
  wait?: string;
  ack?: boolean;
  ws?: boolean;
}

/** How long a `--no-ack` peek listens after the backlog stops arriving. */
const PEEK_QUIET_MS = 400;

/** Reads pending messages over a WebSocket without acknowledging them (they stay `sent`). */
async function peek(ctx: CliContext, limit: number, filter: (m: Message) => boolean): Promise<Message[]> {
  const client = await ctx.client();
  const { Session } = await import('../../client/session.js');
  const session = new Session({ url: client.wsUrl, keypair: client.keypair, clock: ctx.deps.clock, ...ctx.sessionTrace });
  const got: Message[] = [];
  let last = ctx.deps.clock.now();
  session.on('message', (m) => {
    last = ctx.deps.clock.now();
    if (filter(m) && got.length < limit) got.push(m);
  });
  const fatal = session.next('fatal');
  try {
    session.start();
    await Promise.race([session.ready(), fatal.then(([e]) => Promise.reject(e))]);
    last = ctx.deps.clock.now();
    while (got.length < limit && ctx.deps.clock.now() - last < PEEK_QUIET_MS) await sleep(50, { clock: ctx.deps.clock });
  } finally {
    await session.close();
  }
  return got;
}

/** `mrp recv`: fetch the inbox once (marking it delivered), or stream it with --ws. */
export async function runRecv(ctx: CliContext, options: RecvOptions): Promise<void> {
  const from = options.from === undefined ? undefined : await ctx.resolve(options.from);
  const filter = (m: Message): boolean =>
    (from === undefined || m.sender_key === from) && (options.thread === undefined || m.thread_id === options.thread || m.message_id === options.thread);
  if (options.ws) {
    await watchMessages(ctx, { ack: options.ack !== false, filter });
    return;
  }
  const status = (options.status ?? 'sent') as MessageStatus;
  if (!(MESSAGE_STATUSES as readonly string[]).includes(status)) {
    throw new UsageError(`--status: "${status}" must be one of ${MESSAGE_STATUSES.join(', ')}`, { code: 'invalid_argument' });
  }
  const limit = intOption(options.limit, '--limit', LIMITS.pollLimitDefault, 1, LIMITS.pollLimitMax);
  const wait = intOption(options.wait, '--wait', 0, 0, LIMITS.pollWaitMaxSeconds);
  let messages: Message[];
  let hasMore = false;
  if (options.ack === false && status === 'sent') {
    messages = await peek(ctx, limit, filter);
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
  if (ctx.globals.json) {
    ctx.out.jsonLine({ messages, has_more: hasMore });
    return;
  }
  if (!ctx.out.isTTY) {
    for (const m of messages) ctx.out.jsonLine(m);
    return;
  }
  if (messages.length === 0) {
    ctx.out.info(ctx.out.style.dim(status === 'sent' ? 'No new messages.' : `No ${status} messages.`));
    return;
  }
  for (const m of messages) {
    for (const l of messageBlock(m, { style: ctx.out.style, contacts, self: keypair.publicKey })) ctx.out.line(l);
    ctx.out.line();
  }
  if (hasMore) ctx.out.info(ctx.out.style.dim('More are waiting: run `mrp recv` again.'));
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('recv')
    .description('fetch new messages once (they become delivered), or stream them with --ws')
    .option('--status <status>', 'sent (new, default), delivered or expired (history)')
    .option('--limit <n>', `at most this many (1-${LIMITS.pollLimitMax})`)
    .option('--from <sender>', 'only from this key or contact')
    .option('--thread <id>', 'only this thread')
    .option('--wait <seconds>', `long-poll: wait up to this long for something to arrive (max ${LIMITS.pollWaitMaxSeconds})`)
    .option('--no-ack', 'peek: show new messages without marking them delivered')
    .option('--ws', 'stay connected over WebSocket and print messages as they arrive');
  examples(addGlobalOptions(cmd), ['mrp recv', 'mrp recv --wait 20 --from alice', 'mrp recv --no-ack', 'mrp recv --ws', 'mrp recv --status delivered --limit 10 --json']);
  cmd.action(action(deps, runRecv));
}
