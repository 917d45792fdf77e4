/**
 * WAL checkpoints in a worker thread (src/relay/store/sqlite-checkpoint.ts): they copy the WAL
 * into mrp.db off the event loop, the writer catches up so the WAL starts over (bounded), and a
 * commit that returned survives kill -9 while they run.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { CheckpointResult } from '../../src/relay/store/sqlite-checkpoint.js';
import { SqliteStore } from '../../src/relay/store/sqlite-store.js';
import type { MessageRecord } from '../../src/relay/store/store.js';
import { tempDir } from './_support.js';
import { agent, message, newKey } from './store.contract.js';

const PAD = 'x'.repeat(2000);

async function openStore(t: Parameters<typeof tempDir>[0], resetPages?: number) {
  const dir = await tempDir(t, 'mrp-ckpt-');
  const store = new SqliteStore(dir, { checkpoint: { after: 1, ...(resetPages ? { resetPages } : {}) } });
  t.after(() => store.close());
  const results: CheckpointResult[] = [];
  const waiters: Array<() => void> = [];
  store.checkpoints.onCheckpoint = (r) => {
    results.push(r);
    for (const w of waiters.splice(0)) w();
  };
  /** Resolves at the first checkpoint result that satisfies `test` (past or future). */
  const checkpoint = (test: (r: CheckpointResult) => boolean): Promise<CheckpointResult> =>
    new Promise((resolve) => {
      const look = (): void => {
        const hit = results.find(test);
        if (hit) resolve(hit);
        else waiters.push(look);
      };
      look();
    });
  const sender = newKey();
  const recipient = newKey();
  await store.ensureAgent(agent(sender));
  await store.ensureAgent(agent(recipient));
  /** One commit of `count` messages, then the rest of the event-loop turn (as the batcher does). */
  const commit = async (count = 1): Promise<MessageRecord[]> => {
    const messages = Array.from({ length: count }, () => message(sender, recipient, { body_json: `"${PAD}"` }));
    await store.commit({ messages, delivered: [], active: new Map() }, messages[0]!.created_at);
    await new Promise(setImmediate);
    return messages;
  };
  return { dir, store, results, checkpoint, commit };
}

describe('SQLite WAL checkpoints in a worker thread', () => {
  it('copy committed pages into mrp.db while the writer goes on, and stop with the store', async (t) => {
    const { dir, store, checkpoint, commit } = await openStore(t);
    const db = join(dir, 'mrp.db');
    const before = statSync(db).size;
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) for (const m of await commit(5)) ids.push(m.message_id);
    assert.ok(store.checkpoints.running, 'the worker runs after the first commit');
    const done = await checkpoint((r) => r.checkpointed > 0 && r.error === undefined);
    assert.ok(done.log >= done.checkpointed);
    // Only a checkpoint writes to the main file (commits go to the WAL).
    assert.ok(statSync(db).size > before, `mrp.db grew from ${before} bytes`);
    const got = await store.getMessages(ids);
    assert.equal(got.length, ids.length);
    await store.close();
    assert.equal(store.checkpoints.running, false);
  });

  it('the writer catches up after a long WAL, so the WAL starts over instead of growing', async (t) => {
    // 64 pages of 8 KiB: the writer catches up at ~512 KiB of WAL.
    const { store, results, checkpoint, commit } = await openStore(t, 64);
    await commit();
    await checkpoint(() => true);
    // Started over: a later checkpoint saw a shorter WAL than an earlier one that was past 64 pages.
    const restarted = (): boolean =>
      results.some((r, i) => i > 0 && r.log < results[i - 1]!.log && results[i - 1]!.log >= 64);
    for (let i = 0; i < 5000 && !restarted(); i++) await commit(10);
    assert.ok(restarted(), `the WAL never started over: ${JSON.stringify(results.map((r) => r.log))}`);
    // Well below the backstop (64 MiB; ~10–20 MiB here): the catch-up bounded it, not SQLite's own checkpoint.
    const longest = Math.max(...results.map((r) => r.log));
    assert.ok(longest < store.checkpoints.fallbackPages / 2, `the WAL reached ${longest} pages`);
  });

  it('a new database has 8 KiB pages; an existing one keeps its own, and the WAL limits follow the page size', async (t) => {
    const pageSize = (dir: string): number => {
      const db = new Database(join(dir, 'mrp.db'), { readonly: true });
      try {
        return db.pragma('page_size', { simple: true }) as number;
      } finally {
        db.close();
      }
    };
    const fresh = await openStore(t);
    await fresh.commit();
    assert.equal(pageSize(fresh.dir), 8192);
    assert.equal(fresh.store.checkpoints.fallbackPages, 8192, '64 MiB of WAL');
    // A database made with SQLite's default 4 KiB pages (as before) keeps them and its data.
    const old = await tempDir(t, 'mrp-ckpt-old-');
    const made = new Database(join(old, 'mrp.db'));
    made.pragma('page_size = 4096');
    made.pragma('journal_mode = WAL');
    made.close();
    const store = new SqliteStore(old);
    t.after(() => store.close());
    assert.equal(pageSize(old), 4096);
    assert.equal(store.checkpoints.fallbackPages, 16_384, '64 MiB of WAL');
    const [sender, recipient] = [newKey(), newKey()];
    await store.ensureAgent(agent(sender));
    await store.ensureAgent(agent(recipient));
    const m = message(sender, recipient);
    await store.commit({ messages: [m], delivered: [], active: new Map() }, m.created_at);
    assert.equal((await store.getMessages([m.message_id])).length, 1);
  });

  it('every commit that returned survives kill -9 during background checkpoints', async (t) => {
    const dir = await tempDir(t, 'mrp-ckpt-crash-');
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', join(import.meta.dirname, '_checkpoint-writer.ts'), dir],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    t.after(() => child.kill('SIGKILL'));
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once('exit', (_code, signal) => resolve(signal)),
    );
    const committed: string[] = [];
    let checkpoints = 0;
    const lines = createInterface({ input: child.stdout! });
    await new Promise<void>((resolve, reject) => {
      child.once('exit', (code) => reject(new Error(`the writer exited early (${code})`)));
      lines.on('line', (line) => {
        if (line === 'checkpointed') checkpoints++;
        else if (line.startsWith('msg_')) committed.push(line);
        // Killed in the middle of the stream, once checkpoints (and WAL restarts: 256 pages) happened.
        if (checkpoints >= 3 && committed.length >= 600) resolve();
      });
    });
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    const store = new SqliteStore(dir);
    t.after(() => store.close());
    const got = new Set((await store.getMessages(committed)).map((m) => m.message_id));
    const lost = committed.filter((id) => !got.has(id));
    assert.deepEqual(lost, [], `${lost.length} of ${committed.length} committed messages lost`);
  });
});
