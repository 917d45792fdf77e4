/**
 * The runner's memory under large messages (issue 9, item 14): `N` messages of ~1 MiB each are
 * sent as fast as the relay takes them to a busy runner (a handler that takes 250 ms, 2 at a
 * time: slower than the messages arrive), and the runner's RSS is sampled every 50 ms until
 * every message is answered.
 *
 *   npm run build && node --import tsx bench/intake-memory.ts [--messages 400] [--mode websocket|poll]
 *     [--handler-ms 250] [--concurrency 2] [--size 1000000] [--bin path/to/bin/mrp.js]
 *
 * `--bin` runs another build's runner (e.g. an older commit's, to compare); the relay and the
 * sender are always this tree's.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { RelayClient } from '../src/client/http.js';
import { Keypair } from '../src/protocol/signing.js';
import { installCleanup, rssMb, startNode, tempDir } from './lib.js';
import { startRelay } from './processes.js';
import { connect } from './requester.js';

const { values } = parseArgs({
  options: {
    messages: { type: 'string', default: '400' },
    mode: { type: 'string', default: 'websocket' },
    bin: { type: 'string' },
    size: { type: 'string', default: String(1_000_000) },
    'handler-ms': { type: 'string', default: '250' },
    concurrency: { type: 'string', default: '2' },
  },
});
const count = Number(values.messages);
const size = Number(values.size);
const mode = values.mode === 'poll' ? 'poll' : 'websocket';

installCleanup();
const relay = await startRelay();
const home = tempDir('home');
const bin = values.bin ?? join(process.cwd(), 'bin', 'mrp.js');
const env = { MRP_HOME: home, MRP_KEY_FILE: join(home, 'agent.key') };
const keygen = spawnSync(process.execPath, [bin, 'keygen', '--json'], {
  env: { ...process.env, ...env },
  encoding: 'utf8',
});
if (keygen.status !== 0) throw new Error(`mrp keygen failed: ${keygen.stderr}`);
const runnerKey = String((JSON.parse(keygen.stdout) as { public_key: string }).public_key);
const handler = join(home, 'busy.mjs');
writeFileSync(
  handler,
  `export default async (msg) => { await new Promise((r) => setTimeout(r, ${Number(values['handler-ms'])})); return { n: msg.body.n }; };\n`,
);
const runner = startNode(
  'mrp run',
  [
    bin,
    'run',
    '--handler',
    handler,
    '--relay',
    relay.url,
    '--log-format',
    'json',
    '--concurrency',
    String(values.concurrency),
    '--mode',
    mode,
  ],
  env,
);
await runner.waitForJson((v) => v['event'] === 'ready', 20_000);

const sender = Keypair.generate();
const replies = new Set<string>();
let allReplied!: () => void;
const done = new Promise<void>((r) => (allReplied = r));
const ws = await connect(relay.wsUrl, sender, (frame) => {
  if (frame.type !== 'message') return;
  const m = frame['message'] as { message_id: string; in_reply_to: string | null };
  ws.send(JSON.stringify({ type: 'ack', message_id: m.message_id }));
  if (m.in_reply_to) replies.add(m.in_reply_to);
  if (replies.size >= count) allReplied();
});

const settle = async (): Promise<number> => {
  const samples: number[] = [];
  for (let i = 0; i < 20; i++) {
    samples.push(rssMb(runner.pid));
    await new Promise((r) => setTimeout(r, 50));
  }
  return samples.sort((a, b) => a - b)[10]!;
};
const before = await settle();
let peak = before;
const sampler = setInterval(() => (peak = Math.max(peak, rssMb(runner.pid))), 50);

const client = new RelayClient({ relayUrl: relay.url, keypair: sender });
const pad = 'x'.repeat(size);
const started = Date.now();
let next = 0;
await Promise.all(
  Array.from({ length: 8 }, async () => {
    while (next < count) {
      const n = next++;
      await client.send({ recipient_key: runnerKey, body: { n, pad } });
    }
  }),
);
const sentMs = Date.now() - started;
await Promise.race([done, runner.crashed()]);
const seconds = (Date.now() - started) / 1000;
clearInterval(sampler);
const after = await settle();
console.log(
  JSON.stringify({
    runner: bin,
    mode,
    messages: count,
    body_bytes: size,
    sent_in_s: +(sentMs / 1000).toFixed(1),
    answered_in_s: +seconds.toFixed(1),
    rss_mb: { before: +before.toFixed(0), peak: +peak.toFixed(0), after: +after.toFixed(0) },
  }),
);
ws.close();
await runner.stop();
await relay.child.stop();
process.exit(0);
