import type { Command } from 'commander';
import type { Setting } from '../config.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';

/** `mrp whoami`: the identity and relay this machine would use, and where each setting came from. */
export async function runWhoami(ctx: CliContext): Promise<void> {
  const selected = await ctx.selectedContext();
  const settings = await ctx.settings();
  const { keypair } = await ctx.identity();
  const { style } = ctx.out;
  const source = (s: Setting): { source: string; origin: string } => ({ source: s.source, origin: s.origin });
  ctx.out.result(
    {
      public_key: keypair.publicKey,
      key_file: settings.key_file.value,
      relay: settings.relay.value,
      context: selected?.name ?? null,
      sources: {
        key_file: source(settings.key_file),
        relay: source(settings.relay),
        ...(selected ? { context: { source: selected.source, origin: selected.origin } } : {}),
      },
    },
    () =>
      ctx.out.keyValues([
        ['public key', style.cyan(keypair.publicKey)],
        ['key file', `${settings.key_file.value}${sourceNote(settings.key_file, style.dim)}`],
        ['relay', `${settings.relay.value}${sourceNote(settings.relay, style.dim)}`],
        ...(selected
          ? ([['context', `${selected.name}${style.dim(`  (from ${selected.origin})`)}`]] as Array<[string, string]>)
          : []),
      ]),
    () => keypair.publicKey,
  );
}

function sourceNote(s: Setting, dim: (t: string) => string): string {
  if (s.source === 'default') return dim('  (default)');
  // A context's origin names the context and its file; the name is enough here.
  const origin =
    s.source === 'context' ? s.origin.replace(/ \(.*\)$/, '') : s.source === 'config' ? 'config.json' : s.origin;
  return dim(`  (from ${origin})`);
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('whoami')
    .description('show this identity: public key, key file and relay, and where each came from');
  examples(addGlobalOptions(cmd), [
    'mrp whoami',
    'mrp whoami --json | jq -r .public_key',
    'mrp --key ./agent.key whoami',
    'mrp --context prod whoami',
  ]);
  cmd.action(action(deps, runWhoami));
}
