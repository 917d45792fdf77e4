import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import { LIMITS } from '../../protocol/constants.js';
import { shortKey } from '../../protocol/encoding.js';
import { parseTimestamp } from '../../protocol/signing.js';
import type { DiscoveredAgent } from '../../protocol/types.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { collect, intOption } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';

export interface DiscoverOptions {
  tag?: string[];
  prefix?: string;
  name?: string;
  q?: string;
  activeSince?: string;
  limit?: string;
  all?: boolean;
}

function since(iso: string | null, now: number): string {
  const ms = iso ? Date.parse(iso) : NaN;
  if (!Number.isFinite(ms)) return '—';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86_400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86_400)}d ago`;
}

/** `mrp discover`: public agents by tag, tag prefix, name or free text (spec §3.5). */
export async function runDiscover(ctx: CliContext, options: DiscoverOptions): Promise<void> {
  if (options.activeSince !== undefined && parseTimestamp(options.activeSince) === undefined) {
    throw new UsageError(`--active-since "${options.activeSince}" must be an RFC 3339 time, e.g. 2026-03-05T12:00:00Z`, { code: 'invalid_argument' });
  }
  const limit = intOption(options.limit, '--limit', LIMITS.discoverLimitDefault, 1, options.all ? 100_000 : LIMITS.discoverLimitMax);
  const client = await ctx.client();
  const agents: DiscoveredAgent[] = [];
  let cursor: string | undefined;
  do {
    const page = await client.discover({
      ...(options.tag?.length ? { tag: options.tag } : {}),
      ...(options.prefix ? { tag_prefix: options.prefix } : {}),
      ...(options.name ? { name: options.name } : {}),
      ...(options.q ? { q: options.q } : {}),
      ...(options.activeSince ? { active_since: options.activeSince } : {}),
      limit: Math.min(LIMITS.discoverLimitMax, limit - agents.length),
      ...(cursor ? { cursor } : {}),
    });
    // `tag_prefix` is this relay's extension: filter here too, for relays that ignore it.
    const prefix = options.prefix;
    agents.push(...(prefix ? page.agents.filter((a) => a.capabilities.some((c) => c.tags.some((t) => t.startsWith(prefix)))) : page.agents));
    cursor = options.all && page.has_more ? (page.next_cursor ?? undefined) : undefined;
  } while (cursor && agents.length < limit);
  const now = ctx.deps.clock.now();
  ctx.out.result({ agents }, () =>
    agents.length === 0
      ? ctx.out.style.dim('No public agents match.')
      : ctx.out.table(
          ['NAME', 'KEY', 'ACTIVE', 'CAPABILITIES'],
          agents.map((a) => [
            a.display_name ?? ctx.out.style.dim('(unnamed)'),
            ctx.out.isTTY ? shortKey(a.public_key) : a.public_key,
            since(a.last_active_at, now),
            [...new Set(a.capabilities.flatMap((c) => c.tags))].join(' '),
          ]),
        ),
  );
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('discover')
    .description('find public agents by capability tag, tag prefix, name or text')
    .option('--tag <tag>', 'must have this tag (repeatable: all must match)', collect)
    .option('--prefix <prefix>', 'has a tag starting with this (e.g. code:)')
    .option('--name <text>', 'display name contains this')
    .option('--q <text>', 'free text over names and capability descriptions')
    .option('--active-since <time>', 'active at or after this RFC 3339 time')
    .option('--limit <n>', 'at most this many', String(LIMITS.discoverLimitDefault))
    .option('--all', 'follow pages until --limit');
  examples(addGlobalOptions(cmd), ['mrp discover --tag translate', 'mrp discover --prefix code: --json', 'mrp discover --q "pdf summary" --all --limit 200']);
  cmd.action(action(deps, runDiscover));
}
