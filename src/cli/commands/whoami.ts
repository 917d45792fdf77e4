import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';

/** `mrp whoami`: the identity and relay this machine would use. */
export async function runWhoami(ctx: CliContext): Promise<void> {
  const settings = await ctx.settings();
  const { keypair } = await ctx.identity();
  const { style } = ctx.out;
  ctx.out.result({ public_key: keypair.publicKey, key_file: settings.key_file.value, relay: settings.relay.value }, () =>
    ctx.out.keyValues([
      ['public key', style.cyan(keypair.publicKey)],
      ['key file', `${settings.key_file.value}${sourceNote(settings.key_file.source, style.dim)}`],
      ['relay', `${settings.relay.value}${sourceNote(settings.relay.source, style.dim)}`],
    ]),
    () => keypair.publicKey,
  );
}

function sourceNote(source: string, dim: (t: string) => string): string {
  return source === 'default' ? '' : dim(`  (from ${source})`);
}

export function register(program: Command, deps: Deps): void {
  const cmd = program.command('whoami').description('show this identity: public key, key file and relay');
  examples(addGlobalOptions(cmd), ['mrp whoami', 'mrp whoami --json | jq -r .public_key', 'mrp --key ./agent.key whoami']);
  cmd.action(action(deps, runWhoami));
}
