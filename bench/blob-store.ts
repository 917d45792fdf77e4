/**
 * Blob byte storage: a 100 MiB put then get on each BlobStore backend, in 64 KiB chunks as an
 * HTTP upload arrives: MB/s (decimal megabytes) and the peak RSS growth of this process (sampled
 * every chunk, no forced GC: what an operator would see). The S3 backend talks to `s3rver` in a
 * child process, so its memory is not counted here; loopback, so the figures are the stores'
 * own costs (hashing, signing, copying, fsync), not a network's.
 *
 *   node --import tsx bench/blob-store.ts [--mib 100] [--json]
 *
 * Standalone on purpose (not in bench/index.ts yet): it needs no relay.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { BlobStore } from '../src/relay/blobs/blob-store.js';
import { FsBlobStore } from '../src/relay/blobs/fs-blob-store.js';
import { S3BlobStore } from '../src/relay/blobs/s3-blob-store.js';

const { values: opts } = parseArgs({
  options: { mib: { type: 'string', default: '100' }, json: { type: 'boolean', default: false } },
});
const TOTAL = Number(opts.mib) * 1024 * 1024;
const CHUNK = 64 * 1024;
const POOL = randomBytes(4 * 1024 * 1024);

interface Figures {
  backend: string;
  putMBps: number;
  putRssMB: number;
  getMBps: number;
  getRssMB: number;
}

async function* source(onChunk: () => void): AsyncGenerator<Uint8Array> {
  for (let sent = 0; sent < TOTAL; sent += CHUNK) {
    onChunk();
    const start = (sent / CHUNK) % (POOL.length / CHUNK);
    yield POOL.subarray(start * CHUNK, start * CHUNK + Math.min(CHUNK, TOTAL - sent));
  }
}

async function measure(backend: string, store: BlobStore): Promise<Figures> {
  const owner = randomBytes(32).toString('base64url');
  const id = `blob_${randomBytes(6).toString('hex')}`;
  let base = process.memoryUsage.rss();
  let peak = base;
  const sample = (): void => {
    peak = Math.max(peak, process.memoryUsage.rss());
  };
  let t0 = performance.now();
  await store.put(owner, id, source(sample), { maxBytes: TOTAL, contentType: 'application/octet-stream' });
  const putS = (performance.now() - t0) / 1000;
  const putRss = peak - base;
  base = process.memoryUsage.rss();
  peak = base;
  t0 = performance.now();
  const reader = await store.get(owner, id);
  if (!reader) throw new Error('blob vanished');
  let got = 0;
  for await (const chunk of reader.body) {
    got += chunk.byteLength;
    sample();
  }
  const getS = (performance.now() - t0) / 1000;
  if (got !== TOTAL) throw new Error(`read ${got} of ${TOTAL} bytes`);
  await store.delete(owner, id);
  const mb = (n: number) => Math.round(n / 1e5) / 10;
  return {
    backend,
    putMBps: mb(TOTAL / putS),
    putRssMB: mb(putRss),
    getMBps: mb(TOTAL / getS),
    getRssMB: mb(peak - base),
  };
}

/** s3rver in a child process on a free port; resolves with its endpoint. */
async function startS3rver(dir: string): Promise<{ child: ChildProcess; endpoint: string }> {
  const code = `
    const S3rver = require('s3rver');
    new S3rver({ port: 0, address: '127.0.0.1', directory: process.argv[1], silent: true, configureBuckets: [{ name: 'bench' }] })
      .run().then((a) => console.log(a.port));`;
  const child = spawn(process.execPath, ['-e', code, dir], {
    stdio: ['ignore', 'pipe', 'inherit'],
    cwd: process.cwd(),
  });
  const port = await new Promise<string>((resolve, reject) => {
    child.stdout?.once('data', (d: Buffer) => resolve(d.toString().trim()));
    child.once('exit', (c) => reject(new Error(`s3rver exited (${c})`)));
  });
  return { child, endpoint: `http://127.0.0.1:${port}` };
}

const dir = await mkdtemp(join(tmpdir(), 'mrp-bench-blobs-'));
const results: Figures[] = [];
let s3: ChildProcess | undefined;
try {
  results.push(await measure('fs', await FsBlobStore.open({ dataDir: join(dir, 'fs') })));
  const server = await startS3rver(join(dir, 's3'));
  s3 = server.child;
  const store = new S3BlobStore({
    url: 's3://bench/b',
    endpoint: server.endpoint,
    accessKeyId: 'S3RVER',
    secretAccessKey: 'S3RVER',
  });
  results.push(await measure('s3 (s3rver, child process)', store));
} finally {
  s3?.kill();
  await rm(dir, { recursive: true, force: true });
}
if (opts.json) console.log(JSON.stringify({ mib: Number(opts.mib), results }, null, 2));
else {
  console.log(`${opts.mib} MiB put then get, 64 KiB chunks`);
  for (const r of results) {
    console.log(
      `${r.backend.padEnd(28)} put ${r.putMBps} MB/s (RSS +${r.putRssMB} MB)   get ${r.getMBps} MB/s (RSS +${r.getRssMB} MB)`,
    );
  }
}
