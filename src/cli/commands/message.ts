import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { MessageOpener, sealedNote, shownJson } from '../opener.js';
import { fullTime, messageBlock, safeText } from '../render.js';

/** `mrp status <id>`: delivery status of a message you sent or received. */
export async function runStatus(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const client = await ctx.client();
  const status = await client.messageStatus(args[0]!);
  const { style } = ctx.out;
  const paint = status.status === 'delivered' ? style.green : status.status === 'expired' ? style.red : style.yellow;
  ctx.out.result(status, () =>
    ctx.out.keyValues([
      ['message', safeText(status.message_id)],
      ['status', paint(safeText(status.status))],
      ['created', fullTime(status.created_at)],
      ['delivered', fullTime(status.delivered_at)],
      ['expires', fullTime(status.expires_at)],
    ]),
    () => status.status,
  );
}

/** `mrp get <id>`: a whole message you sent or received. */
export async function runGet(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const client = await ctx.client();
  const shown = await new MessageOpener(client.keypair).open(await client.getMessage(args[0]!));
  const contacts = await ctx.contacts();
  ctx.out.result(
    shownJson(shown),
    () => messageBlock(shown.message, { style: ctx.out.style, contacts, self: client.publicKey }, shown),
    () => JSON.stringify(shown.message.body),
  );
  if (shown.sealed && ctx.globals.quiet && !ctx.globals.json) ctx.out.warn(sealedNote(shown)!);
}

export function register(program: Command, deps: Deps): void {
  const status = program.command('status').description('delivery status of a message (sent, delivered, expired)').argument('<message-id>');
  examples(addGlobalOptions(status), ['mrp status msg_1772712000_0a1b2c3d4e5f', 'mrp status "$(mrp send bob hi)" --json']);
  status.action(action(deps, runStatus));
  const get = program.command('get').description('show a message you sent or received').argument('<message-id>');
  examples(addGlobalOptions(get), ['mrp get msg_1772712000_0a1b2c3d4e5f', 'mrp get msg_1772712000_0a1b2c3d4e5f --json | jq .body']);
  get.action(action(deps, runGet));
}
