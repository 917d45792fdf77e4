/**
 * The relay's SQLite commit path alone (no sockets): group commits of `--batch` messages, each
 * acknowledged in the next commit, as the WebSocket scenario drives them. Prints CPU and wall
 * time per message, and the WAL's size at the end.
 *
 *   node --import tsx bench/relay-store.ts [--n 50000] [--batch 200] [--synchronous normal|full] [--inline-checkpoints] [--ids relay|sequential]
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Keypair } from '../src/protocol/signing.js';
import { messageId } from '../src/relay/ids.js';
import { SqliteStore } from '../src/relay/store/sqlite-store.js';
import type { MessageRecord } from '../src/relay/store/store.js';

const { values } = parseArgs({
  options: {
    n: { type: 'string', default: '50000' },
    batch: { type: 'string', default: '200' },
    synchronous: { type: 'string', default: 'normal' },
    /** Checkpoints inside commits (SQLite's automatic ones) instead of the background worker. */
    'inline-checkpoints': { type: 'boolean', default: false },
    /** `relay`: the relay's own `messageId` (what a real relay inserts); `sequential`: a counter. */
    ids: { type: 'string', default: 'relay' },
  },
});
const n = Number(values.n);
const batchSize = Number(values.batch);
const dir = mkdtempSync(join(tmpdir(), 'mrp-store-bench-'));
const store = new SqliteStore(dir, {
  synchronous: values.synchronous === 'full' ? 'full' : 'normal',
  checkpoint: { after: values['inline-checkpoints'] ? Number.POSITIVE_INFINITY : 100 },
});
const sender = Keypair.generate().publicKey;
const recipient = Keypair.generate().publicKey;
const now = Date.now();
for (const key of [sender, recipient])
  await store.ensureAgent({
    public_key: key,
    display_name: null,
    status: 'active',
    visibility: 'private',
    inbox_policy: 'open',
    created_at: now,
    last_active_at: now,
    metadata: {},
    capabilities: [],
    tags: [],
  } as never);

const record = (i: number): MessageRecord => ({
  seq: 0,
  message_id: values.ids === 'sequential' ? `msg_${i.toString().padStart(22, '0')}` : messageId(now + i / 25), // ~25,000 per second, as a busy relay mints them
  sender_key: sender,
  recipient_key: recipient,
  content_type: 'application/json',
  body_json: `{"n":${i},"pad":"${'x'.repeat(180)}"}`,
  attachments: [],
  thread_id: null,
  in_reply_to: null,
  metadata: {},
  status: 'sent',
  created_at: now + i,
  expires_at: now + 86_400_000,
  delivered_at: null,
});

/** Time the event loop spent inside commits (what every socket waits for), and the longest one. */
let inCommit = 0;
let worst = 0;
let acks: Array<{ message_id: string; recipient_key: string }> = [];
const cpu0 = process.cpuUsage();
const t0 = performance.now();
for (let i = 0; i < n; i += batchSize) {
  const messages = Array.from({ length: Math.min(batchSize, n - i) }, (_, k) => record(i + k));
  const c0 = performance.now();
  // Activity is stamped at most once a minute per agent (directory.ts): once here.
  await store.commit({ messages, delivered: acks, active: new Map(i === 0 ? [[sender, Date.now()]] : []) }, Date.now());
  const spent = performance.now() - c0;
  inCommit += spent;
  if (spent > worst) worst = spent;
  acks = messages.map((m) => ({ message_id: m.message_id, recipient_key: m.recipient_key }));
  // One commit per event-loop turn, as the relay's batcher does (timers and worker messages run).
  await new Promise(setImmediate);
}
await store.commit({ messages: [], delivered: acks, active: new Map() }, Date.now());
const wall = performance.now() - t0;
const cpu = process.cpuUsage(cpu0);
const wal = statSync(join(dir, 'mrp.db-wal'), { throwIfNoEntry: false })?.size ?? 0;
console.log(
  `store commit: event loop blocked ${((inCommit * 1000) / n).toFixed(1)} µs/msg (longest commit ${worst.toFixed(1)} ms) · ${((cpu.user + cpu.system) / n).toFixed(1)} µs CPU/msg (user ${(cpu.user / n).toFixed(1)}, sys ${(cpu.system / n).toFixed(1)}), ${((wall * 1000) / n).toFixed(1)} µs wall/msg, ${Math.round(n / (wall / 1000))}/s · batch ${batchSize}${values['inline-checkpoints'] ? ' (inline checkpoints)' : ''} · WAL ${(wal / 1e6).toFixed(1)} MB`,
);
await store.close();
rmSync(dir, { recursive: true, force: true });
