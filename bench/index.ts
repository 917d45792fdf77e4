/**
 * `npm run bench [-- --json out.json] [--quick] [--profile <dir>] [--pg]`
 *
 * Everything runs on loopback: `mrp relay` and `mrp run` (echo handler) as child processes, this
 * process as the requester. Prints one table with the targets next to the figures; never fails
 * on a missed target. `--profile <dir>` adds `--cpu-prof` to the relay and runner processes.
 * `--pg` adds external mode: two relay processes on PostgreSQL against one on SQLite (bench/pg.ts;
 * skipped without PostgreSQL server binaries).
 */
import { writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Keypair } from '../src/protocol/signing.js';
import { type BlobFigures, blobTransfer } from './blobs.js';
import { cryptoBench } from './crypto.js';
import { fleetThroughput } from './fleet.js';
import { type Child, cleanupAll, cpuSeconds, installCleanup, rssMb } from './lib.js';
import { type PgBenchRow, pgBench, printPgBench } from './pg.js';
import { nodeFlags, startFloor, startRelay, startRunner } from './processes.js';
import { relayThroughput } from './relay-throughput.js';
import { type ExchangeResult, Requester } from './requester.js';
import { startupTimes } from './startup.js';

const { values: opts } = parseArgs({
  options: {
    json: { type: 'string' },
    quick: { type: 'boolean', default: false },
    profile: { type: 'string' },
    pg: { type: 'boolean', default: false },
  },
});
const scale = opts.quick ? 0.1 : 1;
/** Per scenario: warm-up (one in flight, then a window of 200), latency samples, throughput messages. */
interface Plan {
  warmup: number;
  latency: number;
  throughput: number;
}
const WINDOW = 1000;
const PLANS = {
  floor: { warmup: 500 * scale, latency: 3000 * scale, throughput: 50_000 * scale },
  websocket: { warmup: 500 * scale, latency: 3000 * scale, throughput: 100_000 * scale },
  // Poll mode answers about once a second (see the report), so it gets few samples.
  poll: { warmup: 2, latency: opts.quick ? 5 : 20, throughput: 2000 * scale },
} satisfies Record<string, Plan>;
const STARTUP = { runs: opts.quick ? 5 : 20, warmup: 3 };
const RELAY_ONLY = 20_000 * scale;
const TARGETS = { p50VsFloor: 3, perSecond: 5000, rssMb: 100, versionVsNode: 1.5, blobRssMb: 64 };
const BLOB_MIB = opts.quick ? 20 : 100;
const cores = availableParallelism();

installCleanup();
setTimeout(() => {
  console.error('the benchmark ran for 8 minutes without finishing; giving up');
  cleanupAll();
  process.exit(1);
}, 8 * 60_000).unref();
if (opts.profile) nodeFlags.push('--cpu-prof', `--cpu-prof-dir=${resolve(opts.profile)}`);

const log = (text: string): void => void process.stderr.write(`· ${text}\n`);

interface RoundTrip {
  latency: ExchangeResult;
  throughput: ExchangeResult;
  /** Responder RSS (MB) after warm-up and at every 5% of the throughput run (`seconds` into it). */
  rss: Array<{ messages: number; mb: number; seconds: number }>;
  /** CPU time per message during the throughput run, in µs, per process. */
  cpuUs: { relay: number; responder: number; requester: number };
}

interface Processes {
  relay: Child;
  responder: Child;
}

/** Warm-up, then latency (one in flight), then throughput (a window of WINDOW). */
async function roundTrip(wsUrl: string, recipient: string, plan: Plan, procs: Processes): Promise<RoundTrip> {
  const requester = await Requester.open(wsUrl, Keypair.generate(), recipient);
  const pids = { relay: procs.relay.pid, responder: procs.responder.pid };
  // A process under test that dies ends the benchmark with its stderr, not with a timeout.
  const exchange = (
    count: number,
    window: number,
    timeoutMs: number,
    progress?: (n: number) => void,
  ): Promise<ExchangeResult> =>
    Promise.race([
      requester.exchange(count, window, timeoutMs, progress),
      procs.relay.crashed(),
      procs.responder.crashed(),
    ]);
  try {
    await exchange(plan.warmup, 1, 60_000);
    await exchange(plan.warmup * 4, 200, 60_000);
    const latency = await exchange(plan.latency, 1, 90_000);
    const rss: RoundTrip['rss'] = [];
    const step = plan.throughput / 20;
    const started = performance.now();
    const sample = (messages: number): void =>
      void rss.push({ messages, mb: rssMb(pids.responder), seconds: (performance.now() - started) / 1000 });
    sample(0);
    const cpu0 = {
      relay: cpuSeconds(pids.relay),
      responder: cpuSeconds(pids.responder),
      requester: process.cpuUsage(),
    };
    const throughput = await exchange(plan.throughput, WINDOW, 150_000, (n) => n % step === 0 && sample(n));
    const perMessage = (seconds: number): number => (seconds * 1e6) / plan.throughput;
    const own = process.cpuUsage(cpu0.requester);
    const cpuUs = {
      relay: perMessage(cpuSeconds(pids.relay) - cpu0.relay),
      responder: perMessage(cpuSeconds(pids.responder) - cpu0.responder),
      requester: perMessage((own.user + own.system) / 1e6),
    };
    return { latency, throughput, rss, cpuUs };
  } finally {
    requester.close();
  }
}

async function floor(): Promise<RoundTrip> {
  const responder = Keypair.generate();
  const f = await startFloor(responder.publicKey);
  try {
    return await roundTrip(f.wsUrl, responder.publicKey, PLANS.floor, f);
  } finally {
    await f.responder.stop();
    await f.relay.stop();
  }
}

async function product(mode: 'websocket' | 'poll'): Promise<RoundTrip> {
  const relay = await startRelay();
  try {
    const runner = await startRunner(relay.url, mode);
    try {
      return await roundTrip(relay.wsUrl, runner.publicKey, PLANS[mode], {
        relay: relay.child,
        responder: runner.child,
      });
    } finally {
      await runner.child.stop();
    }
  } finally {
    await relay.child.stop();
  }
}

async function relayOnly(): Promise<Awaited<ReturnType<typeof relayThroughput>>> {
  const relay = await startRelay();
  try {
    return await relayThroughput(relay.wsUrl, RELAY_ONLY, WINDOW, 90_000);
  } finally {
    await relay.child.stop();
  }
}

async function blobs(): Promise<BlobFigures> {
  const relay = await startRelay();
  try {
    return await blobTransfer(relay.url, relay.child.pid, BLOB_MIB);
  } finally {
    await relay.child.stop();
  }
}

// ── run ────────────────────────────────────────────────────────────────────────────────────
const t0 = performance.now();
const loadBefore = loadavg();
log(`start-up (${STARTUP.runs} runs each after ${STARTUP.warmup} warm-up)`);
const startup = startupTimes(STARTUP.runs, STARTUP.warmup);
log('end-to-end encryption: seal + open per message, blob streaming (in process)');
const e2eCrypto = await cryptoBench({ quick: opts.quick });
log('floor: bare ws relay + bare responder');
const floorResult = await floor();
log(`round trip: mrp relay + mrp run (websocket), ${PLANS.websocket.throughput} messages for throughput and memory`);
const ws = await product('websocket');
log('round trip: mrp relay + mrp run --mode poll');
const poll = await product('poll');
log('relay only: inline send → push → ack');
const relay = await relayOnly();
const FLEET = 10_000 * scale;
log(`fleet: 3 × mrp run --journal postgres://… (throwaway cluster), ${FLEET} messages`);
const fleet = await fleetThroughput(FLEET, WINDOW);
log(`blobs: one ${BLOB_MIB} MiB upload and download through mrp relay`);
const blob = await blobs();
let external: PgBenchRow[] | undefined;
if (opts.pg) {
  log('external mode: two relays on PostgreSQL vs one on SQLite');
  external = await pgBench(opts.quick ?? false);
}
const totalSeconds = (performance.now() - t0) / 1000;

// ── report ─────────────────────────────────────────────────────────────────────────────────
const fmt = (n: number, digits = 2): string => n.toFixed(digits);
const int = (n: number): string => Math.round(n).toLocaleString('en-US');
const ms = (r: ExchangeResult): string =>
  `${fmt(r.p50)} / ${fmt(r.p95)} / ${fmt(r.p99)} ms (n=${int(r.count)}${r.lost ? `, lost ${r.lost}` : ''})`;
const rate = (r: {
  perSecond: number;
  lost: number;
  duplicates: number;
  count: number;
  window: number;
  timedOut: boolean;
}): string =>
  `${int(r.perSecond)}/s (${int(r.count)} msgs, window ${r.window}; lost ${r.lost}, dup ${r.duplicates}${r.timedOut ? ', TIMED OUT' : ''})`;
const cpu = (r: RoundTrip): string =>
  `${int(r.cpuUs.relay)} / ${int(r.cpuUs.responder)} / ${int(r.cpuUs.requester)} µs (wall ${int(1e6 / r.throughput.perSecond)} µs/msg)`;
const mark = (ok: boolean): string => (ok ? '✓' : '✗');

const p50Ratio = ws.latency.p50 / floorResult.latency.p50;
const clean = (r: ExchangeResult): boolean => r.lost === 0 && r.duplicates === 0 && r.errors === 0 && !r.timedOut;
const rssAt = (n: number): number => ws.rss.find((s) => s.messages === n)?.mb ?? Number.NaN;
const q = PLANS.websocket.throughput / 4;
const quarters = [q, 2 * q, 3 * q, 4 * q];
const [rssFirst, rssHalf, rssLast] = [rssAt(q), rssAt(2 * q), rssAt(4 * q)];
/** Least-squares slope of RSS over the second half of the run, in MB per 10k messages. */
const slope = ((): number => {
  const pts = ws.rss.filter((s) => s.messages >= 2 * q);
  const mx = pts.reduce((a, p) => a + p.messages, 0) / pts.length;
  const my = pts.reduce((a, p) => a + p.mb, 0) / pts.length;
  const sxy = pts.reduce((a, p) => a + (p.messages - mx) * (p.mb - my), 0);
  const sxx = pts.reduce((a, p) => a + (p.messages - mx) ** 2, 0);
  return (sxy / sxx) * 10_000;
})();
/** Flat: the second half adds at most 2 MB (or 3%) at that slope. */
const flat = (slope * (2 * q)) / 10_000 <= Math.max(2, 0.03 * rssHalf);
const versionRatio = startup.version / startup.node;

const targets = {
  p50: p50Ratio <= TARGETS.p50VsFloor,
  throughput: ws.throughput.perSecond >= TARGETS.perSecond && clean(ws.throughput),
  memory: rssLast < TARGETS.rssMb && flat,
  version: versionRatio <= TARGETS.versionVsNode,
  blobMemory: Math.max(blob.relayPutRssMB, blob.relayGetRssMB, blob.clientRssMB) < TARGETS.blobRssMb,
};

const rows: Array<[string, string, string, string]> = [
  ['Start-up', 'node -e 0 (median)', `${fmt(startup.node, 1)} ms`, ''],
  [
    '',
    'mrp --version (median)',
    `${fmt(startup.version, 1)} ms = ${fmt(versionRatio)}× node`,
    `≤ ${TARGETS.versionVsNode}× node ${mark(targets.version)}`,
  ],
  ['', 'mrp --help (median)', `${fmt(startup.help, 1)} ms = ${fmt(startup.help / startup.node)}× node`, ''],
  ['Floor (bare ws)', 'round trip p50 / p95 / p99', ms(floorResult.latency), ''],
  ['', 'throughput', rate(floorResult.throughput), ''],
  ['', 'CPU per msg: relay / responder / requester', cpu(floorResult), ''],
  ['Round trip (ws)', 'p50 / p95 / p99', ms(ws.latency), `p50 ≤ ${TARGETS.p50VsFloor}× floor ${mark(targets.p50)}`],
  ['', 'p50 vs floor', `${fmt(p50Ratio)}×`, ''],
  ['', 'throughput', rate(ws.throughput), `≥ ${int(TARGETS.perSecond)}/s, none lost ${mark(targets.throughput)}`],
  ['', 'throughput vs floor', `${fmt(ws.throughput.perSecond / floorResult.throughput.perSecond)}×`, ''],
  ['', 'CPU per msg: relay / runner / requester', cpu(ws), ''],
  [
    'Runner memory',
    `RSS after warm-up / ${quarters.map((n) => `${n / 1000}k`).join(' / ')} msgs`,
    `${[0, ...quarters].map((n) => fmt(rssAt(n), 1)).join(' / ')} MB`,
    '',
  ],
  [
    '',
    'first → last, slope over 2nd half',
    `${fmt(rssFirst, 1)} → ${fmt(rssLast, 1)} MB, ${slope >= 0 ? '+' : ''}${fmt(slope)} MB/10k msgs (${flat ? 'flat' : 'growing'})`,
    `< ${TARGETS.rssMb} MB and flat ${mark(targets.memory)}`,
  ],
  ['Poll mode', 'p50 / p95 / p99', ms(poll.latency), ''],
  ['', 'throughput', rate(poll.throughput), ''],
  ['Relay only', 'send → push → ack', rate(relay), ''],
  ...(('skipped' in fleet
    ? [['Fleet (3 runners)', 'shared journal on PostgreSQL', `skipped: ${fleet.skipped}`, '']]
    : [
        ['Fleet (3 runners)', 'throughput, shared journal (PostgreSQL)', rate(fleet.throughput), ''],
        ['', 'vs one runner, local journal', `${fmt(fleet.throughput.perSecond / ws.throughput.perSecond)}×`, ''],
      ]) as Array<[string, string, string, string]>),
  [
    `Blobs (${BLOB_MIB} MiB)`,
    'put / get (loopback, fs store)',
    `${fmt(blob.putMBps, 0)} / ${fmt(blob.getMBps, 0)} MB/s`,
    '',
  ],
  [
    '',
    'RSS growth: relay put / relay get / client',
    `${fmt(blob.relayPutRssMB, 1)} / ${fmt(blob.relayGetRssMB, 1)} / ${fmt(blob.clientRssMB, 1)} MB`,
    `< ${TARGETS.blobRssMb} MB each ${mark(targets.blobMemory)}`,
  ],
  [
    'E2E crypto',
    `seal + open per ${e2eCrypto.body_bytes}-byte body`,
    `${int(e2eCrypto.seal_open_us)} µs (seal ${int(e2eCrypto.seal_us)} + open ${int(e2eCrypto.open_us)})`,
    '',
  ],
  ['', 'seal + open through the codec', `${int(e2eCrypto.codec_seal_open_us)} µs`, ''],
  ['', 'first use (lazy HPKE import + first seal)', `${int(e2eCrypto.first_use_ms)} ms`, ''],
  [
    '',
    `blob ${e2eCrypto.blob_mib} MiB encrypt / decrypt`,
    `${int(e2eCrypto.blob_encrypt_mb_s)} / ${int(e2eCrypto.blob_decrypt_mb_s)} MB/s`,
    '',
  ],
];

const header = ['Benchmark', 'Cores', 'Figure', 'Value', 'Target'];
const table = rows.map(([section, figure, value, target]) => [section, String(cores), figure, value, target]);
const width = (i: number): number => Math.max(...[header, ...table].map((r) => r[i]!.length));
const line = (cells: string[]): string =>
  cells
    .map((c, i) => c.padEnd(width(i)))
    .join('  ')
    .trimEnd();
const load = (l: number[]): string => l.map((x) => fmt(x)).join(' ');
console.log(
  `\nmrp benchmark · ${cores} cores (os.availableParallelism) · ${cpus()[0]?.model ?? 'unknown CPU'} · node ${process.version}`,
);
console.log(
  `${fmt(totalSeconds, 0)} s · load average before ${load(loadBefore)}, after ${load(loadavg())} (other work on the machine skews every figure)\n`,
);
console.log(line(header));
console.log(line(header.map((_, i) => '─'.repeat(width(i)))));
for (const row of table) console.log(line(row));
console.log(`\nTargets met: ${Object.values(targets).filter(Boolean).length}/${Object.keys(targets).length}`);
if (external) printPgBench(external);

if (opts.json) {
  const report = {
    cores,
    cpu: cpus()[0]?.model,
    node: process.version,
    seconds: totalSeconds,
    load: { before: loadBefore, after: loadavg() },
    plans: PLANS,
    startup,
    floor: floorResult,
    websocket: ws,
    poll,
    relayOnly: relay,
    fleet,
    blobs: blob,
    crypto: e2eCrypto,
    ...(external ? { external } : {}),
    ratios: {
      p50VsFloor: p50Ratio,
      versionVsNode: versionRatio,
      throughputVsFloor: ws.throughput.perSecond / floorResult.throughput.perSecond,
    },
    memory: { first: rssFirst, last: rssLast, peak: Math.max(...ws.rss.map((s) => s.mb)), slopeMbPer10k: slope, flat },
    targets,
  };
  writeFileSync(resolve(opts.json), `${JSON.stringify(report, null, 2)}\n`);
  console.log(`JSON written to ${resolve(opts.json)}`);
}
cleanupAll();
