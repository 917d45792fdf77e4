import type { Command } from 'commander';
import type { Message } from '../../protocol/types.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { intOption } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { messageLine } from '../render.js';

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
    const page = await client.thread(threadId, { limit: Math.min(100, max - messages.length), ...(cursor ? { cursor } : {}) });
    messages.push(...page.messages);
    cursor = page.has_more ? (page.next_cursor ?? undefined) : undefined;
  } while (cursor && messages.length < max);
  const contacts = await ctx.contacts();
  ctx.out.result({ thread_id: threadId, messages }, () =>
    messages.length === 0
      ? ctx.out.style.dim(`No messages in thread ${threadId} that you sent or received.`)
      : messages.map((m) => messageLine(m, { style: ctx.out.style, contacts, self: client.publicKey }, Math.max(40, ctx.out.columns - 50))),
  );
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('thread')
    .description('show a conversation: the messages of a thread, oldest first')
    .argument('<thread-id>', 'thread id (or the id of its first message)')
    .option('--limit <n>', 'at most this many messages', '1000');
  examples(addGlobalOptions(cmd), ['mrp thread msg_1772712000_0a1b2c3d4e5f', 'mrp thread conv-42 --json | jq ".messages[].body"']);
  cmd.action(action(deps, runThread));
}
