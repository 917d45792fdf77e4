import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { safeText } from '../render.js';

export interface CapabilitiesOptions {
  prefix?: string;
}

/** `mrp capabilities`: capability tags in use by public agents, with counts. */
export async function runCapabilities(ctx: CliContext, options: CapabilitiesOptions): Promise<void> {
  const client = await ctx.client();
  const res = await client.capabilityTags(options.prefix);
  const prefix = options.prefix;
  const tags = prefix ? res.capabilities.filter((c) => c.tag.startsWith(prefix)) : res.capabilities;
  ctx.out.result(
    { capabilities: tags },
    () =>
      tags.length === 0
        ? ctx.out.style.dim('No capability tags in use.')
        : ctx.out.table(
            ['TAG', 'AGENTS'],
            tags.map((c) => [safeText(c.tag), String(c.agent_count)]),
          ),
    () => tags.map((c) => safeText(c.tag)),
  );
  // Our relay lists the most used tags only (docs/protocol.md §3.5).
  if (res.has_more) {
    ctx.out.status(
      'has_more',
      { has_more: true, count: tags.length },
      ctx.out.style.dim(`Showing the ${tags.length} most used tags; more are in use: narrow with --prefix.`),
      ctx.deps.clock.now(),
    );
  }
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('capabilities')
    .description('list capability tags in use by public agents, with counts')
    .option('--prefix <prefix>', 'only tags starting with this');
  examples(addGlobalOptions(cmd), ['mrp capabilities', 'mrp capabilities --prefix code:']);
  cmd.action(action(deps, runCapabilities));
}
