import type { Command } from 'commander';
import type { Message } from '../../protocol/types.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { MessageOpener, sealedNote, shownJson } from '../opener.js';
import { intOption } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { jsonText, messageLine, safeText } from '../render.js';

export interface ThreadOptions {
  limit?: string;
}

/** `mrp thread <id>`: every message of a thread you took part in, oldest first (all pages). */
export async function runThread(ctx: CliContext, options: ThreadOptions, args: string[]): Promise<void> {
  const threadId = args[0]!;
  const max = intOption(options.limit, '--limit', 1000, 1, 100_000);
  const client = await ctx.client();
  const messages: Message[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.thread(threadId, {
      limit: Math.min(100, max - messages.length),
      ...(cursor ? { cursor } : {}),
    });
    messages.push(...page.messages);
    cursor = page.has_more ? (page.next_cursor ?? undefined) : undefined;
  } while (cursor && messages.length < max);
  const contacts = await ctx.contacts();
  const shown = await new MessageOpener(client.keypair).openAll(messages);
  const { style } = ctx.out;
  ctx.out.list(
    shown.map(shownJson),
    () =>
      shown.length === 0
        ? [style.dim(`No messages in thread ${safeText(threadId)} that you sent or received.`)]
        : shown.map((s) =>
            messageLine(s.message, { style, contacts, self: client.publicKey }, Math.max(40, ctx.out.columns - 50), s),
          ),
    (m) => jsonText(m['body']),
  );
  if (ctx.out.listMode === 'bare') for (const s of shown) if (s.sealed) ctx.out.warn(sealedNote(s)!);
  if (cursor) {
    ctx.out.status(
      'has_more',
      { has_more: true, count: messages.length },
      style.dim(`Showing the first ${messages.length}; raise --limit to see more.`),
      ctx.deps.clock.now(),
    );
  }
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('thread')
    .description('show a conversation: the messages of a thread, oldest first')
    .argument('<thread-id>', 'thread id (or the id of its first message)')
    .option('--limit <n>', 'at most this many messages', '1000');
  examples(addGlobalOptions(cmd), ['mrp thread msg_1772712000_0a1b2c3d4e5f', 'mrp thread conv-42 --json | jq .body']);
  cmd.addHelpText(
    'after',
    '\nOn a terminal: one line per message. With --json or when piped: one JSON message per line (NDJSON). -q: one body per line.\n',
  );
  cmd.action(action(deps, runThread));
}
