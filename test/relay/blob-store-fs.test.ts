/**
 * The filesystem BlobStore: the shared contract on a temp directory, then what only a disk has —
 * the official relay's layout (`blobs/blobs/<owner>/<blob_id>` + `.meta`), modes 0600/0700, no
 * temp file after a failure, and stale temp files removed when the store opens.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { FsBlobStore } from '../../src/relay/blobs/fs-blob-store.js';
import { blobStoreContract } from './blob-store.contract.js';
import { newBlobId, newOwner, patternSource } from './blob-store.support.js';

const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

async function tempDataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'mrp-blobs-'));
  dirs.push(dir);
  return dir;
}

/** Every file under `root` whose name starts with a dot (temp files), relative to root. */
async function dotFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true }).catch(() => [] as string[]);
  return entries.map(String).filter((p) => p.split('/').some((part) => part.startsWith('.')));
}

blobStoreContract('fs', async () => {
  const store = await FsBlobStore.open({ dataDir: await tempDataDir() });
  return { store, leftovers: () => dotFiles(store.root), memoryBudget: 8e6 };
});

describe('FsBlobStore specifics', () => {
  it('uses the official embedded layout with a .meta file, files 0600 and directories 0700', async () => {
    const dataDir = await tempDataDir();
    const store = await FsBlobStore.open({ dataDir });
    const owner = newOwner();
    const id = newBlobId();
    await store.put(owner, id, patternSource(4096), { maxBytes: 10_000, contentType: 'image/png' });
    const dir = join(dataDir, 'blobs', 'blobs', owner);
    assert.deepEqual((await readdir(dir)).sort(), [id, `${id}.meta`]);
    assert.equal(await readFile(join(dir, `${id}.meta`), 'utf8'), 'image/png');
    assert.equal((await stat(join(dir, id))).size, 4096);
    for (const f of [id, `${id}.meta`]) assert.equal((await stat(join(dir, f))).mode & 0o777, 0o600, f);
    for (const d of [join(dataDir, 'blobs'), join(dataDir, 'blobs', 'blobs'), dir]) {
      assert.equal((await stat(d)).mode & 0o777, 0o700, d);
    }
    assert.equal(await store.delete(owner, id), true);
    assert.deepEqual(await readdir(dir), []);
  });

  it('removes stale temp files on open, keeps recent ones and everything else', async () => {
    const dataDir = await tempDataDir();
    const owner = newOwner();
    const dir = join(dataDir, 'blobs', 'blobs', owner);
    await mkdir(dir, { recursive: true });
    const id = newBlobId();
    const stale = `.${id}.${'a'.repeat(32)}.tmp`;
    const staleMeta = `.${id}.meta.${'b'.repeat(32)}.tmp`;
    const fresh = `.${id}.${'c'.repeat(32)}.tmp`;
    const other = '.not-ours';
    for (const f of [stale, staleMeta, fresh, other, id]) await writeFile(join(dir, f), 'x');
    const old = new Date(Date.now() - 3600_000);
    for (const f of [stale, staleMeta, other, id]) await utimes(join(dir, f), old, old);
    const store = await FsBlobStore.open({ dataDir });
    assert.deepEqual((await readdir(dir)).sort(), [fresh, other, id].sort());
    assert.equal(await store.removeStaleTemps(0), 1);
    assert.deepEqual((await readdir(dir)).sort(), [other, id].sort());
  });

  it('a reader keeps the bytes it opened even if the blob is deleted meanwhile', async () => {
    const store = await FsBlobStore.open({ dataDir: await tempDataDir() });
    const owner = newOwner();
    const id = newBlobId();
    await store.put(owner, id, patternSource(1_000_000), { maxBytes: 2_000_000, contentType: 'a/b' });
    const reader = await store.get(owner, id);
    assert.ok(reader);
    await store.delete(owner, id);
    let n = 0;
    for await (const c of reader.body) n += c.byteLength;
    assert.equal(n, 1_000_000);
  });

  it('check() reports a blob directory that cannot be written', async (t) => {
    if (process.getuid?.() === 0) return t.skip('root can write anywhere');
    const dataDir = await tempDataDir();
    const store = await FsBlobStore.open({ dataDir });
    const { chmod } = await import('node:fs/promises');
    await chmod(store.root, 0o500);
    t.after(() => chmod(store.root, 0o700));
    assert.match(await store.check(), /not writable/);
  });
});
