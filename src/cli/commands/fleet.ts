import type { Command } from 'commander';
import { ConfigError, UsageError } from '../../core/errors.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { sharedJournalUrl } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { safeText } from '../render.js';

export interface FleetOptions {
  journal?: string;
  all?: boolean;
}

function age(ms: number): string {
  if (ms < 1000) return `${ms} ms`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  return `${Math.round(ms / 60_000)} min`;
}

/** This key's public key; without a key, the hint names `--all` (listing needs no identity) before keygen. */
async function ownIdentity(ctx: CliContext): Promise<string> {
  try {
    return (await ctx.identity()).keypair.publicKey;
  } catch (err) {
    if (err instanceof ConfigError && err.code === 'key_not_found') {
      throw new ConfigError(err.code, err.message, {
        ...(err.file === undefined ? {} : { file: err.file }),
        hint: `pass --all to list every identity in that journal (no key needed), or --key <file> for the fleet's key`,
      });
    }
    throw err;
  }
}

/** `mrp fleet`: the runners sharing a journal, who holds a WebSocket slot, and what is in flight. */
export async function runFleet(ctx: CliContext, options: FleetOptions): Promise<void> {
  const url = sharedJournalUrl(options.journal ?? ctx.deps.env['MRP_JOURNAL']);
  if (!url)
    throw new UsageError('--journal postgres://… is required (the shared journal the fleet uses)', {
      code: 'missing_argument',
    });
  const identity = options.all ? undefined : await ownIdentity(ctx);
  const { fleetStatus, describePostgresUrl } = await import('../../runtime/shared-journal.js');
  const status = await fleetStatus(url, { now: ctx.deps.clock.now(), ...(identity ? { identity } : {}) });
  const { style } = ctx.out;
  ctx.out.result({ journal: describePostgresUrl(url), ...(identity ? { identity } : {}), ...status }, () => [
    `${style.dim('journal')}  ${describePostgresUrl(url)}${identity ? style.dim(` · ${identity}`) : ''}`,
    ...(!status.initialized
      ? ['no runners: no fleet has used this database yet (no mrp_fleet_* tables; `mrp run --journal` creates them)']
      : status.runners.length === 0
        ? ['no runners']
        : ctx.out.table(
            ['RUNNER', ...(identity ? [] : ['IDENTITY']), 'HOST', 'PID', 'MODE', 'SLOT', 'LEASED', 'HEARTBEAT'],
            status.runners.map((r) => [
              safeText(r.runner_id),
              ...(identity ? [] : [`${safeText(r.identity.slice(0, 12))}…`]),
              safeText(r.host),
              String(r.pid),
              safeText(r.mode),
              r.slot === null ? '-' : `ws ${r.slot}`,
              String(r.leased),
              r.alive ? `${age(r.heartbeat_age_ms)} ago` : style.yellow(`${age(r.heartbeat_age_ms)} ago (gone)`),
            ]),
          )),
    `${style.dim('messages')}  ${status.entries.in_flight} in flight · ${status.entries.expired} waiting for a takeover · ${status.entries.done} done (kept until they expire)`,
  ]);
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('fleet')
    .description('list the runners sharing a journal (mrp run --journal postgres://…): modes, WebSocket slots, leases')
    .option('--journal <url>', 'the shared journal (postgres://…; default: $MRP_JOURNAL)')
    .option('--all', 'every identity in that journal, not only this key');
  examples(addGlobalOptions(cmd), [
    'mrp fleet --journal postgres://mrp@db/mrp',
    'MRP_JOURNAL=postgres://mrp@db/mrp mrp fleet --all --json',
  ]);
  cmd.action(action(deps, runFleet));
}
