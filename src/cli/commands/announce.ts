import type { Command } from 'commander';
import { applyManifest, manifestChanges, projectManifest } from '../manifest.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';

export interface AnnounceOptions {
  manifest?: string;
  dryRun?: boolean;
}

function show(value: unknown): string {
  if (value === null || value === undefined) return '∅';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** `mrp announce`: validate mrp.yaml, show what changes on the relay, apply it. */
export async function runAnnounce(ctx: CliContext, options: AnnounceOptions): Promise<void> {
  const manifest = await projectManifest(ctx, options.manifest ?? 'mrp.yaml');
  const file = manifest.file;
  const client = await ctx.client();
  const [profile, acl] = await Promise.all([client.getAgent(client.publicKey), manifest.acl ? client.listAcl({ limit: 1000 }) : undefined]);
  const changes = manifestChanges(manifest, profile, acl?.entries ?? []);
  const apply = !options.dryRun && changes.length > 0;
  if (apply) await applyManifest(client, manifest);
  const { style } = ctx.out;
  ctx.out.result({ manifest: file, agent: client.publicKey, changes, applied: apply }, () => {
    if (changes.length === 0) return `${style.green('✔')} ${client.publicKey} already matches ${options.manifest ?? 'mrp.yaml'}`;
    const lines = changes.map((c) => `  ${style.yellow('~')} ${c.field.padEnd(13)} ${style.red(show(c.from))} ${style.dim('→')} ${style.green(show(c.to))}`);
    return options.dryRun
      ? [`Would change ${changes.length} field${changes.length === 1 ? '' : 's'} (dry run, nothing sent):`, ...lines]
      : [`${style.green('✔')} Announced ${options.manifest ?? 'mrp.yaml'}: ${changes.length} change${changes.length === 1 ? '' : 's'}`, ...lines];
  });
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('announce')
    .description("publish mrp.yaml: name, visibility, inbox policy, capabilities, metadata, ACL")
    .option('-m, --manifest <file>', 'the manifest', 'mrp.yaml')
    .option('--dry-run', 'validate and show the changes without applying them');
  examples(addGlobalOptions(cmd), ['mrp announce', 'mrp announce --dry-run', 'mrp announce -m agents/translator.yaml --json']);
  cmd.addHelpText('after', '\nEditors: point YAML language servers at schema/mrp.schema.json (mrp init adds the comment that does it).\n');
  cmd.action(action(deps, runAnnounce));
}
