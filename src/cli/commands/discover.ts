import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import { LIMITS } from '../../protocol/constants.js';
import { parseTimestamp } from '../../protocol/signing.js';
import type { DiscoveredAgent } from '../../protocol/types.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { collect, intOption } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { fullTime, safeText } from '../render.js';

export interface DiscoverOptions {
  tag?: string[];
  prefix?: string;
  name?: string;
  q?: string;
  activeSince?: string;
  limit?: string;
  all?: boolean;
}

/** `mrp discover`: public agents by tag, tag prefix, name or free text (docs/protocol.md §3.5). */
export async function runDiscover(ctx: CliContext, options: DiscoverOptions): Promise<void> {
  if (options.activeSince !== undefined && parseTimestamp(options.activeSince) === undefined) {
    throw new UsageError(
      `--active-since "${options.activeSince}" must be an RFC 3339 time, e.g. 2026-03-05T12:00:00Z`,
      { code: 'invalid_argument' },
    );
  }
  if (options.all && options.limit !== undefined)
    throw new UsageError('--all and --limit contradict each other: --all fetches every match', {
      code: 'invalid_argument',
    });
  // --limit follows pages until it is reached; --all follows them to the end.
  const limit = options.all
    ? Number.POSITIVE_INFINITY
    : intOption(options.limit, '--limit', LIMITS.discoverLimitDefault, 1, 100_000);
  const client = await ctx.client();
  const agents: DiscoveredAgent[] = [];
  const seen = new Set<string>();
  let cursor: string | undefined;
  let more = false;
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
    agents.push(
      ...(prefix
        ? page.agents.filter((a) => a.capabilities.some((c) => c.tags.some((t) => t.startsWith(prefix))))
        : page.agents),
    );
    const next = page.has_more ? (page.next_cursor ?? undefined) : undefined;
    // A cursor seen before (or an empty page claiming more) would loop forever.
    more = next !== undefined && !seen.has(next) && page.agents.length > 0;
    if (next) seen.add(next);
    cursor = more ? next : undefined;
  } while (cursor && agents.length < limit);
  const { style } = ctx.out;
  ctx.out.list(
    agents,
    () =>
      agents.length === 0
        ? [style.dim('No public agents match.')]
        : ctx.out.table(
            ['NAME', 'KEY', 'ACTIVE', 'CAPABILITIES'],
            agents.map((a) => [
              a.display_name === null ? style.dim('(unnamed)') : safeText(a.display_name),
              safeText(a.public_key),
              fullTime(a.last_active_at),
              safeText([...new Set(a.capabilities.flatMap((c) => c.tags))].join(' ')),
            ]),
          ),
    (a) => safeText(a.public_key),
  );
  if (more) {
    ctx.out.status(
      'has_more',
      { has_more: true, count: agents.length },
      style.dim(`Showing the first ${agents.length}; more agents match: --all lists every one (or --limit <n>).`),
      ctx.deps.clock.now(),
    );
  }
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
    .option('--limit <n>', `at most this many (default ${LIMITS.discoverLimitDefault}; follows pages)`)
    .option('--all', 'every match (follows every page)');
  examples(addGlobalOptions(cmd), [
    'mrp discover --tag translate',
    'mrp discover --prefix code: --json',
    'mrp discover --q "pdf summary" --limit 200',
    'mrp discover --tag i18n --all -q   # every key',
  ]);
  cmd.addHelpText(
    'after',
    '\nOn a terminal: a table with full keys. With --json or when piped: one JSON agent per line (NDJSON); "more match"\ngoes to stderr (a JSON line {"event":"has_more"} with --json). -q: one key per line.\n',
  );
  cmd.action(action(deps, runDiscover));
}
