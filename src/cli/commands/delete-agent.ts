/**
 * `mrp delete-agent --yes`: deletes this identity's agent on the relay and everything the relay
 * keeps for it (`DELETE /v1/agents/{key}`, docs/protocol.md §3.2) — what to do with a leaked key,
 * since keys cannot be rotated. The key file stays where it is. Without `--yes` nothing is sent.
 */
import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';

export interface DeleteAgentOptions {
  yes?: boolean;
}

export async function runDeleteAgent(ctx: CliContext, options: DeleteAgentOptions): Promise<void> {
  const [{ relay }, { keypair, path }] = await Promise.all([ctx.settings(), ctx.identity()]);
  if (options.yes !== true)
    throw new UsageError(
      `delete-agent deletes agent ${keypair.publicKey} on ${relay.value} with its profile, messages, ACL, webhook and blobs; it cannot be undone`,
      { code: 'missing_argument', hint: 'add --yes to delete it' },
    );
  const client = await ctx.client();
  await client.deleteAgent();
  const { style } = ctx.out;
  ctx.out.result(
    { deleted: true, public_key: keypair.publicKey, relay: relay.value, key_file: path },
    () => [
      `${style.green('✔')} Agent ${keypair.publicKey} deleted on ${relay.value}: profile, messages, ACL, webhook and blobs`,
      style.dim(`  The key file ${path} is kept; delete it too if the key leaked.`),
    ],
    // -q: nothing, as every command that changes something (README "Global options").
  );
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('delete-agent')
    .description("delete this identity's agent on the relay, with everything the relay keeps for it (needs --yes)")
    .option('--yes', 'really delete it (nothing is sent without it)');
  examples(addGlobalOptions(cmd), ['mrp delete-agent --yes', 'mrp delete-agent --yes --key ./leaked.key --json']);
  cmd.action(action(deps, runDeleteAgent));
}
