/**
 * Blobs end to end on loopback: a 100 MiB upload and download through `mrp relay` (a child
 * process, default fs blob store) with `RelayClient` in this process. Prints put/get MB/s
 * (decimal megabytes) and the peak RSS growth of the relay (sampled every 50 ms from /proc) and
 * of this client (sampled every chunk): both stream, so neither may hold the blob (target: growth
 * under 64 MB on each side).
 *
 *   npm run build && node --import tsx bench/blobs.ts [--mib 100]
 *
 * bench/index.ts runs it as one of its sections (`blobTransfer`).
 */
import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { RelayClient } from '../src/client/http.js';
import { Keypair } from '../src/protocol/signing.js';
import { cleanupAll, installCleanup, rssMb } from './lib.js';
import { startRelay } from './processes.js';

const CHUNK = 256 * 1024;
const POOL = Buffer.alloc(8 * 1024 * 1024);
for (let i = 0; i < POOL.length; i++) POOL[i] = (i * 2654435761) >>> 24;

export interface BlobFigures {
  mib: number;
  putMBps: number;
  getMBps: number;
  relayPutRssMB: number;
  relayGetRssMB: number;
  clientRssMB: number;
}

/** The same pseudo-random bytes every call: views into one pool, no allocation per chunk. */
async function* pattern(total: number): AsyncGenerator<Uint8Array> {
  for (let sent = 0; sent < total; sent += CHUNK) {
    const n = Math.min(CHUNK, total - sent);
    const start = (sent / CHUNK) % (POOL.length / CHUNK - 1);
    yield POOL.subarray(start * CHUNK, start * CHUNK + n);
  }
}

/** Peak growth over a baseline of a process's RSS, sampled every 50 ms until `stop`. */
function watch(pid: number): { stop(): number } {
  const base = rssMb(pid);
  let peak = 0;
  const timer = setInterval(() => {
    peak = Math.max(peak, rssMb(pid) - base);
  }, 50);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, rssMb(pid) - base);
    },
  };
}

export async function blobTransfer(relayUrl: string, relayPid: number, mib: number): Promise<BlobFigures> {
  const total = mib * 1024 * 1024;
  const hash = createHash('sha256');
  for await (const c of pattern(total)) hash.update(c);
  const sha256 = hash.digest();
  const client = new RelayClient({ relayUrl, keypair: Keypair.generate(), timeoutMs: 120_000 });
  const clientBase = process.memoryUsage().rss;
  let clientPeak = 0;
  const sampleClient = (): void => void (clientPeak = Math.max(clientPeak, process.memoryUsage().rss - clientBase));

  const putWatch = watch(relayPid);
  let t = performance.now();
  const info = await client.uploadBlob(
    { size: total, sha256, open: () => pattern(total) },
    { onProgress: sampleClient },
  );
  const putSeconds = (performance.now() - t) / 1000;
  const relayPutRssMB = putWatch.stop();
  if (info.size !== total || info.hash !== sha256.toString('hex')) throw new Error('the relay stored other bytes');

  const getWatch = watch(relayPid);
  t = performance.now();
  const { body } = await client.downloadBlob(info.blob_id);
  let received = 0;
  for await (const chunk of body) {
    received += chunk.byteLength;
    sampleClient();
  }
  const getSeconds = (performance.now() - t) / 1000;
  const relayGetRssMB = getWatch.stop();
  if (received !== total) throw new Error(`downloaded ${received} of ${total} bytes`);
  await client.deleteBlob(info.blob_id);
  const mb = total / 1e6;
  return {
    mib,
    putMBps: mb / putSeconds,
    getMBps: mb / getSeconds,
    relayPutRssMB,
    relayGetRssMB,
    clientRssMB: clientPeak / 1048576,
  };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const { values } = parseArgs({ options: { mib: { type: 'string', default: '100' } } });
  installCleanup();
  const relay = await startRelay();
  try {
    const f = await blobTransfer(relay.url, relay.child.pid, Number(values.mib));
    console.log(
      `${f.mib} MiB: put ${f.putMBps.toFixed(0)} MB/s, get ${f.getMBps.toFixed(0)} MB/s; ` +
        `relay RSS growth put ${f.relayPutRssMB.toFixed(1)} MB, get ${f.relayGetRssMB.toFixed(1)} MB; client RSS growth ${f.clientRssMB.toFixed(1)} MB`,
    );
  } finally {
    await relay.child.stop();
    cleanupAll();
  }
}
