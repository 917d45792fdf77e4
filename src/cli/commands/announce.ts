import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { aclDrift, allAclEntries, applyManifest, manifestChanges, projectManifest } from '../manifest.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { safeText } from '../render.js';

export interface AnnounceOptions {
  manifest?: string;
  dryRun?: boolean;
  prune?: boolean;
}

function show(value: unknown): string {
  if (value === null || value === undefined) return '∅';
  return safeText(typeof value === 'string' ? value : JSON.stringify(value));
}

/** `mrp announce`: validate mrp.yaml, show what changes on the relay (and ACL drift), apply it. */
export async function runAnnounce(ctx: CliContext, options: AnnounceOptions): Promise<void> {
  const shown = options.manifest ?? 'mrp.yaml';
  const manifest = await projectManifest(ctx, shown);
  const client = await ctx.client();
  const [profile, acl] = await Promise.all([
    client.getAgent(client.publicKey),
    manifest.acl ? allAclEntries(client) : [],
  ]);
  const changes = manifestChanges(manifest, profile, acl);
  const drift = aclDrift(manifest, acl);
  const prune = options.prune === true ? drift : [];
  const apply = !options.dryRun && changes.length + prune.length > 0;
  if (apply) await applyManifest(client, manifest, { prune });
  const { style } = ctx.out;
  const result = {
    manifest: manifest.file,
    agent: client.publicKey,
    changes,
    drift: drift.map((e) => ({ peer_key: e.peer_key, entry_type: e.entry_type })),
    pruned: apply ? prune.length : 0,
    applied: apply,
  };
  ctx.out.result(
    result,
    () => {
      const lines = changes.map(
        (c) =>
          `  ${style.yellow('~')} ${c.field.padEnd(13)} ${style.red(show(c.from))} ${style.dim('→')} ${style.green(show(c.to))}`,
      );
      const pruning = options.prune === true;
      lines.push(
        ...drift.map(
          (e) =>
            `  ${style.red('-')} ${`acl.${e.entry_type}`.padEnd(13)} ${e.peer_key} ${style.dim(pruning ? (options.dryRun ? '(not in the manifest: would be removed)' : '(not in the manifest: removed)') : '(on the relay, not in the manifest)')}`,
        ),
      );
      const n = changes.length + (pruning ? drift.length : 0);
      const stale = drift.length > 0 && !pruning;
      // With drift left on the relay the agent does not match the manifest: never "already matches".
      const head =
        n === 0
          ? stale
            ? `${style.yellow('!')} ${client.publicKey}: the profile matches ${shown}, the ACL on the relay does not`
            : `${style.green('✔')} ${client.publicKey} already matches ${shown}`
          : options.dryRun
            ? `Would change ${n} field${n === 1 ? '' : 's'} (dry run, nothing sent):`
            : `${style.green('✔')} Announced ${shown}: ${n} change${n === 1 ? '' : 's'}`;
      if (stale) {
        const again = `mrp announce${options.manifest && options.manifest !== 'mrp.yaml' ? ` --manifest ${options.manifest}` : ''} --prune`;
        lines.push(
          style.dim(
            `  ${drift.length} ACL entr${drift.length === 1 ? 'y is' : 'ies are'} not in ${shown}; \`${again}\` removes ${drift.length === 1 ? 'it' : 'them'}`,
          ),
        );
      }
      return [head, ...lines];
    },
    () => [],
  );
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('announce')
    .description('publish mrp.yaml: name, visibility, inbox policy, capabilities, metadata, ACL')
    .option('--manifest <file>', 'the manifest', 'mrp.yaml')
    .option('--dry-run', 'validate and show the changes without applying them')
    .option('--prune', 'also remove ACL entries on the relay that the manifest does not list');
  examples(addGlobalOptions(cmd), [
    'mrp announce',
    'mrp announce --dry-run',
    'mrp announce --prune',
    'mrp announce --manifest agents/translator.yaml --json',
  ]);
  cmd.addHelpText(
    'after',
    '\nWhen the manifest has an `acl` section, it is the whole ACL: entries on the relay it does not list are shown\n(drift) and removed with --prune. Editors: point YAML language servers at schema/mrp.schema.json (mrp init adds\nthe comment that does it).\n',
  );
  cmd.action(action(deps, runAnnounce));
}
