import type { Command } from 'commander';
import { RelayClient } from '../../client/http.js';
import { Keypair } from '../../protocol/signing.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { fullTime, safeText } from '../render.js';

/** `mrp health`: is the relay up? (Unauthenticated: works without a key.) */
export async function runHealth(ctx: CliContext): Promise<void> {
  const { relay } = await ctx.settings();
  // Health needs no identity; a throwaway key satisfies the client's constructor.
  const client = new RelayClient({
    relayUrl: relay.value,
    keypair: Keypair.generate(),
    clock: ctx.deps.clock,
    failFast: true,
    ...(ctx.tracers.http ? { trace: ctx.tracers.http } : {}),
  });
  const started = performance.now();
  const health = await client.health();
  const ms = Math.round(performance.now() - started);
  const { style } = ctx.out;
  ctx.out.result(
    { relay: relay.value, latency_ms: ms, ...health },
    () =>
      ctx.out.keyValues([
        ['relay', relay.value],
        ['status', health.status === 'ok' ? style.green(health.status) : style.yellow(safeText(String(health.status)))],
        ['version', safeText(String(health.version))],
        ['time', fullTime(health.timestamp)],
        ['latency', `${ms} ms`],
      ]),
    () => safeText(String(health.status)),
  );
}

export function register(program: Command, deps: Deps): void {
  const cmd = program.command('health').description("check the relay's health (no key needed)");
  examples(addGlobalOptions(cmd), ['mrp health', 'mrp health --relay http://127.0.0.1:8080 --json']);
  cmd.action(action(deps, runHealth));
}
