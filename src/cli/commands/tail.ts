import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { intOption } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { watchMessages } from '../watch.js';

export interface TailOptions {
  from?: string;
  thread?: string;
  contentType?: string;
  ack?: boolean;
  count?: string;
}

/** `mrp tail`: watch arriving messages without acknowledging them (a runner still gets them). */
export async function runTail(ctx: CliContext, options: TailOptions): Promise<void> {
  const from = options.from === undefined ? undefined : await ctx.resolve(options.from);
  const count = options.count === undefined ? undefined : intOption(options.count, '--count', 0, 1);
  if (options.contentType === '')
    throw new UsageError('--content-type must not be empty', { code: 'invalid_argument' });
  await watchMessages(ctx, {
    ack: options.ack === true,
    ...(count === undefined ? {} : { count }),
    filter: (m) =>
      (from === undefined || m.sender_key === from) &&
      (options.thread === undefined || m.thread_id === options.thread || m.message_id === options.thread) &&
      (options.contentType === undefined || m.content_type === options.contentType),
  });
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('tail')
    .description('watch messages arriving for this agent, live (does not acknowledge them)')
    .option('--from <sender>', 'only from this key or contact')
    .option('--thread <id>', 'only this thread')
    .option('--content-type <type>', 'only this content type')
    .option('--ack', 'acknowledge what is shown (then a runner will not get it)')
    .option('-n, --count <n>', 'print (and with --ack acknowledge) exactly this many messages, then exit');
  examples(addGlobalOptions(cmd), [
    'mrp tail',
    'mrp tail --from alice --content-type application/x-mrp-request+json',
    'mrp tail --json | jq .body',
    'mrp tail -n 1 --ack   # take exactly one message',
  ]);
  cmd.addHelpText(
    'after',
    '\nOn a terminal: one coloured line per message. With --json or when piped: one JSON message per line (NDJSON).\nConnection status goes to stderr with a time (JSON lines with --json). -q: one body per line, no status.\n',
  );
  cmd.action(action(deps, runTail));
}
