/**
 * A short run of the hot-path scenarios only, for iterating on performance:
 *
 *   npm run build && node --import tsx bench/quick.ts [ws|poll|relay|floor ...] [--n 20000] [--profile dir] [--heap dir] [--flag=--a-node-flag]
 *
 * Prints p50, throughput and CPU per message for each; `npm run bench` is the full report.
 */

import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Keypair } from '../src/protocol/signing.js';
import { cleanupAll, cpuSeconds, installCleanup, rssMb } from './lib.js';
import { nodeFlags, startFloor, startRelay, startRunner } from './processes.js';
import { relayThroughput } from './relay-throughput.js';
import { Requester } from './requester.js';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    n: { type: 'string', default: '20000' },
    profile: { type: 'string' },
    heap: { type: 'string' },
    flag: { type: 'string', multiple: true },
  },
});
const n = Number(values.n);
if (values.flag) nodeFlags.push(...values.flag);
if (values.heap) nodeFlags.push('--heap-prof', `--heap-prof-dir=${resolve(values.heap)}`, '--heap-prof-interval=65536');
if (values.profile) nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${resolve(values.profile)}`);
const which = positionals.length ? positionals : ['floor', 'ws', 'poll', 'relay'];
installCleanup();

async function trip(wsUrl: string, recipient: string, pids: { relay: number; responder: number }, count: number) {
  const r = await Requester.open(wsUrl, Keypair.generate(), recipient);
  try {
    await r.exchange(200, 1, 60_000);
    await r.exchange(Math.min(count, 2000), 200, 60_000);
    const lat = await r.exchange(1000, 1, 60_000);
    const c0 = { relay: cpuSeconds(pids.relay), responder: cpuSeconds(pids.responder) };
    const tp = await r.exchange(count, 1000, 120_000);
    const us = (s: number): string => ((s * 1e6) / count).toFixed(0);
    return `p50 ${lat.p50.toFixed(2)} ms · ${Math.round(tp.perSecond)}/s (lost ${tp.lost}, dup ${tp.duplicates}) · CPU relay ${us(cpuSeconds(pids.relay) - c0.relay)} µs, responder ${us(cpuSeconds(pids.responder) - c0.responder)} µs · RSS ${rssMb(pids.responder).toFixed(1)} MB`;
  } finally {
    r.close();
  }
}

for (const w of which) {
  if (w === 'floor') {
    const key = Keypair.generate();
    const f = await startFloor(key.publicKey);
    console.log(`floor  ${await trip(f.wsUrl, key.publicKey, { relay: f.relay.pid, responder: f.responder.pid }, n)}`);
    await f.responder.stop();
    await f.relay.stop();
  } else if (w === 'ws' || w === 'poll') {
    const relay = await startRelay();
    const runner = await startRunner(relay.url, w === 'ws' ? 'websocket' : 'poll');
    const count = w === 'ws' ? n : Math.min(n, 2000);
    console.log(
      `${w.padEnd(6)} ${await trip(relay.wsUrl, runner.publicKey, { relay: relay.child.pid, responder: runner.child.pid }, count)}`,
    );
    await runner.child.stop();
    await relay.child.stop();
  } else if (w === 'relay') {
    const relay = await startRelay();
    await relayThroughput(relay.wsUrl, Math.min(n, 2000), 200, 90_000);
    const c0 = cpuSeconds(relay.child.pid);
    const r = await relayThroughput(relay.wsUrl, n, 1000, 90_000);
    console.log(
      `relay  ${Math.round(r.perSecond)}/s (lost ${r.lost}, dup ${r.duplicates}) · CPU relay ${(((cpuSeconds(relay.child.pid) - c0) * 1e6) / n).toFixed(0)} µs`,
    );
    await relay.child.stop();
  }
}
cleanupAll();
