/**
 * Fleet throughput (issue 13): three `mrp run --journal postgres://…` runners of one identity
 * (two on WebSockets, one polling) sharing a journal in a throwaway PostgreSQL cluster, against
 * one `mrp relay`; the same requester as the single-runner round trip. Skipped (undefined) when no
 * PostgreSQL server binaries are installed.
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { Keypair } from '../src/protocol/signing.js';
import { postgresAvailable, startPostgres } from '../test/helpers/postgres.js';
import { type Child, MRP, startNode, tempDir } from './lib.js';
import { nodeFlags, startRelay } from './processes.js';
import { type ExchangeResult, Requester } from './requester.js';

export interface FleetResult {
  runners: number;
  throughput: ExchangeResult;
}

export async function fleetThroughput(count: number, window: number): Promise<FleetResult | { skipped: string }> {
  const why = postgresAvailable();
  if (why) return { skipped: why };
  const cluster = await startPostgres();
  const relay = await startRelay();
  const runners: Child[] = [];
  try {
    const journal = await cluster.database();
    const home = tempDir('fleet-home');
    const env = { MRP_HOME: home, MRP_KEY_FILE: join(home, 'agent.key') };
    const keygen = spawnSync(process.execPath, [MRP, 'keygen', '--json'], {
      env: { ...process.env, ...env },
      encoding: 'utf8',
    });
    if (keygen.status !== 0) throw new Error(`mrp keygen failed: ${keygen.stderr}`);
    const publicKey = String((JSON.parse(keygen.stdout) as { public_key: string }).public_key);
    for (let i = 0; i < 3; i++) {
      const args = [
        'run',
        '--handler',
        'handlers/echo.ts',
        '--relay',
        relay.url,
        '--log-format',
        'json',
        '--concurrency',
        '64',
        '--journal',
        journal,
      ];
      const child = startNode(`mrp run (fleet #${i})`, [...nodeFlags, MRP, ...args], env);
      runners.push(child);
      await child.waitForJson((v) => v['event'] === 'ready', 30_000);
    }
    const requester = await Requester.open(relay.wsUrl, Keypair.generate(), publicKey);
    try {
      const crashed = [relay.child.crashed(), ...runners.map((r) => r.crashed())];
      await Promise.race([requester.exchange(Math.min(200, count), 50, 60_000), ...crashed]);
      const throughput = await Promise.race([requester.exchange(count, window, 150_000), ...crashed]);
      return { runners: runners.length, throughput };
    } finally {
      requester.close();
    }
  } finally {
    for (const r of runners) await r.stop();
    await relay.child.stop();
    await cluster.stop();
  }
}
