/**
 * External mode against embedded mode: round trips (sender → relay → pushed to the receiver →
 * ack) over WebSockets, small JSON, limits off.
 *
 * - `sqlite`: one `mrp relay` on SQLite; sender and receiver on it.
 * - `postgres ×2`: two `mrp relay --database-url` processes on one PostgreSQL database (a
 *   throwaway cluster, test/helpers/postgres.ts); the sender on one, the receiver on the other,
 *   so every message crosses processes through the store and LISTEN/NOTIFY.
 *
 * Latency: one message in flight, p50/p99 in ms. Throughput: a window of 200 in flight.
 * `node --import tsx bench/pg.ts [--quick]`, or `npm run bench -- --pg`. Skips (says why) without
 * PostgreSQL server binaries.
 */
import { parseArgs } from 'node:util';
import type WebSocket from 'ws';
import { Keypair } from '../src/protocol/signing.js';
import { postgresAvailable, startPostgres } from '../test/helpers/postgres.js';
import { type Child, MRP, percentile, startNode, tempDir } from './lib.js';
import { nodeFlags } from './processes.js';
import { connect } from './requester.js';

export interface PgBenchRow {
  setup: string;
  messages: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  lost: number;
}

const UNLIMITED = ['--send-rate', '0', '--receive-rate', '0', '--request-rate', '0', '--json', '--log-level', 'warn'];

async function relay(args: string[]): Promise<{ child: Child; wsUrl: string }> {
  const child = startNode('mrp relay', [...nodeFlags, MRP, 'relay', '--port', '0', ...UNLIMITED, ...args]);
  const { url } = await child.waitForJson((v) => typeof v['url'] === 'string', 20_000);
  return { child, wsUrl: `${String(url).replace(/^http/, 'ws')}/v1/ws` };
}

/** Latency samples (one in flight), then a throughput run (window of 200). */
async function measure(
  setup: string,
  senderUrl: string,
  receiverUrl: string,
  latencyN: number,
  throughputN: number,
): Promise<PgBenchRow> {
  const recipient = Keypair.generate();
  const arrived = new Map<number, number>();
  let waiter: (() => void) | undefined;
  let wanted = 0;
  const receiver: WebSocket = await connect(receiverUrl, recipient, (frame, at) => {
    if (frame.type !== 'message') return;
    const m = frame['message'] as { message_id: string; body: { n: number } };
    receiver.send(`{"type":"ack","message_id":"${m.message_id}"}`);
    if (!arrived.has(m.body.n)) arrived.set(m.body.n, at);
    if (arrived.size >= wanted) waiter?.();
  });
  let inFlight = 0;
  let onResult: (() => void) | undefined;
  const sender: WebSocket = await connect(senderUrl, Keypair.generate(), (frame) => {
    if (frame.type !== 'send_result') return;
    inFlight--;
    onResult?.();
  });
  let n = 0;
  const send = (): number => {
    inFlight++;
    sender.send(`{"type":"send","request_id":"${n}","recipient_key":"${recipient.publicKey}","body":{"n":${n}}}`);
    return n++;
  };
  const until = (count: number, timeoutMs: number): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      wanted = count;
      if (arrived.size >= count) return resolve();
      const timer = setTimeout(() => reject(new Error(`${setup}: ${arrived.size}/${count} arrived`)), timeoutMs);
      waiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  try {
    const latencies: number[] = [];
    for (let i = 0; i < latencyN; i++) {
      const t = performance.now();
      const id = send();
      await until(id + 1, 10_000);
      latencies.push(arrived.get(id)! - t);
    }
    latencies.sort((a, b) => a - b);
    const first = n;
    const started = performance.now();
    const pump = (): void => {
      while (n < first + throughputN && inFlight < 200) send();
    };
    onResult = pump;
    pump();
    let lost = 0;
    await until(first + throughputN, 120_000).catch(() => (lost = first + throughputN - arrived.size));
    const seconds = (performance.now() - started) / 1000;
    return {
      setup,
      messages: throughputN,
      perSecond: Math.round((throughputN - lost) / seconds),
      p50Ms: Number(percentile(latencies, 50).toFixed(2)),
      p99Ms: Number(percentile(latencies, 99).toFixed(2)),
      lost,
    };
  } finally {
    sender.close();
    receiver.close();
  }
}

/** Both setups; `undefined` (with the reason on stderr) without PostgreSQL. */
export async function pgBench(quick: boolean): Promise<PgBenchRow[] | undefined> {
  const why = postgresAvailable();
  if (why) {
    process.stderr.write(`· postgres bench skipped: ${why}\n`);
    return undefined;
  }
  const latencyN = quick ? 200 : 2000;
  const throughputN = quick ? 2000 : 20_000;
  const rows: PgBenchRow[] = [];
  const sqlite = await relay(['--data-dir', tempDir('relay')]);
  try {
    rows.push(await measure('sqlite, 1 process', sqlite.wsUrl, sqlite.wsUrl, latencyN, throughputN));
  } finally {
    await sqlite.child.stop();
  }
  const cluster = await startPostgres();
  try {
    const url = await cluster.database();
    const [one, two] = [await relay(['--database-url', url]), await relay(['--database-url', url])];
    try {
      rows.push(await measure('postgres, 2 processes (cross)', one.wsUrl, two.wsUrl, latencyN, throughputN));
      rows.push(await measure('postgres, same process', one.wsUrl, one.wsUrl, latencyN, throughputN));
    } finally {
      await one.child.stop();
      await two.child.stop();
    }
  } finally {
    await cluster.stop();
  }
  return rows;
}

export function printPgBench(rows: PgBenchRow[]): void {
  console.log('\nExternal mode (PostgreSQL) vs embedded (SQLite): WebSocket round trips, limits off');
  console.log(
    `${'setup'.padEnd(32)} ${'msg/s'.padStart(8)} ${'p50 ms'.padStart(8)} ${'p99 ms'.padStart(8)} ${'lost'.padStart(5)}`,
  );
  for (const r of rows) {
    console.log(
      `${r.setup.padEnd(32)} ${String(r.perSecond).padStart(8)} ${String(r.p50Ms).padStart(8)} ${String(r.p99Ms).padStart(8)} ${String(r.lost).padStart(5)}`,
    );
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean', default: false } } });
  const { cleanupAll, installCleanup } = await import('./lib.js');
  installCleanup();
  try {
    const rows = await pgBench(values.quick ?? false);
    if (rows) printPgBench(rows);
  } finally {
    cleanupAll();
  }
}
