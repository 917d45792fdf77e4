/**
 * The one contract every BlobStore passes (fs and S3 run it; a new backend runs it too): exact
 * hashes, empty blobs, streaming in bounded memory, atomicity under every failure (over the
 * limit, aborted, failing source: nothing visible, nothing left over), concurrency, owner
 * deletion, and hostile ids refused before any I/O. Owners are random per test, so tests share
 * one store without seeing each other.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { BlobStore, PutOptions } from '../../src/relay/blobs/blob-store.js';
import {
  drain,
  KIB,
  MIB,
  memoryProbe,
  newBlobId,
  newOwner,
  patternHash,
  patternSource,
  readAll,
} from './blob-store.support.js';

export interface BlobStoreHarness {
  store: BlobStore;
  /** Temp files or unfinished uploads the backend still holds; empty after any failed put settles. */
  leftovers(): Promise<string[]>;
  /**
   * Bytes the store may hold while streaming (chunks, upload parts). Must stay well under the
   * 20 MiB of the streaming test, so that buffering a whole blob fails it.
   */
  memoryBudget: number;
  /**
   * Growth of the whole process's RSS allowed while streaming (default 32 MB). A test server in the
   * same process (s3rver) counts in it with its own buffers; `memoryBudget` is the store's own check.
   */
  rssBudget?: number;
}

const TYPE = 'application/octet-stream';

async function rejectsWith(p: Promise<unknown>, code: string): Promise<unknown> {
  let caught: unknown;
  await assert.rejects(p, (err: unknown) => {
    caught = err;
    assert.equal((err as { code?: unknown }).code, code, `expected ${code}, got ${String(err)}`);
    return true;
  });
  return caught;
}

export function blobStoreContract(name: string, open: () => Promise<BlobStoreHarness>): void {
  describe(`BlobStore contract: ${name}`, () => {
    let h: BlobStoreHarness;
    let store: BlobStore;
    const put = (owner: string, id: string, src: AsyncIterable<Uint8Array>, o: Partial<PutOptions> = {}) =>
      store.put(owner, id, src, { maxBytes: 100 * MIB, contentType: TYPE, ...o });
    const nothingLeft = async (owner: string, id: string): Promise<void> => {
      assert.equal(await store.get(owner, id), undefined);
      assert.equal(await store.head(owner, id), undefined);
      assert.deepEqual(await h.leftovers(), []);
    };

    before(async () => {
      h = await open();
      store = h.store;
    });
    after(() => store.close());

    it('round trip: put → head → get (exact bytes) → delete, with the SHA-256 in hex and base64url', async () => {
      const owner = newOwner();
      const id = newBlobId();
      const total = 300_001;
      const r = await put(owner, id, patternSource(total, 7_777), { contentType: 'application/pdf' });
      const chunks: Buffer[] = [];
      for await (const c of patternSource(total, 7_777)) chunks.push(Buffer.from(c));
      const expected = Buffer.concat(chunks);
      const digest = createHash('sha256').update(expected).digest();
      assert.deepEqual(r, {
        size: total,
        sha256Hex: digest.toString('hex'),
        sha256Base64url: digest.toString('base64url'),
      });
      assert.deepEqual(await store.head(owner, id), { size: total });
      const reader = await store.get(owner, id);
      assert.ok(reader);
      assert.equal(reader.size, total);
      assert.ok((await readAll(reader)).equals(expected));
      assert.equal(await store.delete(owner, id), true);
      assert.equal(await store.delete(owner, id), false);
      await nothingLeft(owner, id);
    });

    it('a 0-byte blob', async () => {
      const owner = newOwner();
      const id = newBlobId();
      const r = await put(owner, id, patternSource(0));
      assert.deepEqual(r, {
        size: 0,
        sha256Hex: 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
        sha256Base64url: '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU',
      });
      assert.deepEqual(await store.head(owner, id), { size: 0 });
      const reader = await store.get(owner, id);
      assert.ok(reader);
      assert.equal(reader.size, 0);
      assert.equal((await readAll(reader)).length, 0);
    });

    it('a source that reuses one buffer for every chunk is stored exactly', async () => {
      const owner = newOwner();
      const id = newBlobId();
      const buf = Buffer.alloc(64 * KIB);
      const h256 = createHash('sha256');
      const reusing = {
        async *[Symbol.asyncIterator]() {
          for (let i = 0; i < 48; i++) {
            buf.fill(i * 37);
            buf.writeUInt32BE(i, 100);
            h256.update(buf);
            yield buf;
          }
        },
      };
      const r = await put(owner, id, reusing);
      const reader = await store.get(owner, id);
      assert.ok(reader);
      assert.deepEqual(await drain(reader), { size: 48 * 64 * KIB, hex: r.sha256Hex });
      assert.equal(r.sha256Hex, h256.digest('hex'));
    });

    it('streams 20 MiB both ways with memory growth far below the blob size', async (t) => {
      const owner = newOwner();
      const id = newBlobId();
      const total = 20 * MIB;
      const expected = await patternHash(total);
      const up = memoryProbe();
      const r = await put(
        owner,
        id,
        patternSource(total, 64 * KIB, (_, n) => up.tick(n)),
      );
      const upPeak = up.peak();
      assert.equal(r.sha256Hex, expected);
      const reader = await store.get(owner, id);
      assert.ok(reader);
      const down = memoryProbe();
      const got = await drain(reader, (n) => down.tick(n));
      const downPeak = down.peak();
      assert.deepEqual(got, { size: total, hex: expected });
      const mb = (n: number) => (n / 1e6).toFixed(1);
      t.diagnostic(
        `put: rss +${mb(upPeak.rss)} MB, arrayBuffers +${mb(upPeak.arrayBuffers)} MB; ` +
          `get: rss +${mb(downPeak.rss)} MB, arrayBuffers +${mb(downPeak.arrayBuffers)} MB`,
      );
      assert.ok(h.memoryBudget < total * 0.8, 'the harness budget must be able to catch a buffered blob');
      for (const p of [upPeak, downPeak]) {
        assert.ok(p.rss < (h.rssBudget ?? 32e6), `rss grew by ${mb(p.rss)} MB`);
        assert.ok(p.arrayBuffers < h.memoryBudget, `arrayBuffers grew by ${mb(p.arrayBuffers)} MB`);
      }
      assert.equal(await store.delete(owner, id), true);
    });

    it('exactly maxBytes is accepted; maxBytes + 1 is payload_too_large and leaves nothing', async () => {
      const owner = newOwner();
      const ok = newBlobId();
      assert.equal((await put(owner, ok, patternSource(1000, 300), { maxBytes: 1000 })).size, 1000);
      const id = newBlobId();
      const err = await rejectsWith(put(owner, id, patternSource(1001, 1001), { maxBytes: 1000 }), 'payload_too_large');
      assert.deepEqual((err as { details?: unknown }).details, { limit: 1000 });
      await nothingLeft(owner, id);
    });

    it('over the limit past the first 8 MiB part: refused, the source no longer pulled, nothing left', async () => {
      const owner = newOwner();
      const id = newBlobId();
      const max = 9 * MIB;
      let pulled = 0;
      const src = patternSource(max + 5 * MIB, 64 * KIB, (n) => {
        pulled = n;
      });
      await rejectsWith(put(owner, id, src, { maxBytes: max }), 'payload_too_large');
      assert.ok(pulled <= max + 64 * KIB, `pulled ${pulled} bytes`);
      await nothingLeft(owner, id);
    });

    it('an abort while the source is stalled ends the put promptly and leaves nothing', async () => {
      const owner = newOwner();
      const id = newBlobId();
      const ac = new AbortController();
      const stalled = {
        async *[Symbol.asyncIterator]() {
          yield* patternSource(9 * MIB);
          setTimeout(() => ac.abort(new Error('client went away')), 20);
          await new Promise(() => {}); // never resolves
        },
      };
      const t0 = Date.now();
      await rejectsWith(put(owner, id, stalled, { signal: ac.signal }), 'aborted');
      assert.ok(Date.now() - t0 < 10_000);
      await nothingLeft(owner, id);
      // Already aborted: refused without reading.
      let touched = false;
      const untouched = {
        [Symbol.asyncIterator]() {
          touched = true;
          return patternSource(10)[Symbol.asyncIterator]();
        },
      };
      await rejectsWith(put(owner, id, untouched, { signal: ac.signal }), 'aborted');
      assert.equal(touched, false);
      await nothingLeft(owner, id);
    });

    it('a source that throws mid-stream: source_failed with the cause, nothing left', async () => {
      const owner = newOwner();
      const id = newBlobId();
      const boom = new Error('connection reset');
      const failing = {
        async *[Symbol.asyncIterator]() {
          yield* patternSource(9 * MIB);
          throw boom;
        },
      };
      const err = await rejectsWith(put(owner, id, failing), 'source_failed');
      assert.equal((err as Error).cause, boom);
      await nothingLeft(owner, id);
    });

    it('concurrent puts of different blobs, then concurrent gets', async () => {
      const owner = newOwner();
      const sizes = [0, 1, 64 * KIB, MIB + 3, 5 * MIB, 9 * MIB + 17];
      const ids = sizes.map(() => newBlobId());
      const results = await Promise.all(sizes.map((n, i) => put(owner, ids[i]!, patternSource(n, 50_000))));
      const expected = await Promise.all(sizes.map((n) => patternHash(n, 50_000)));
      assert.deepEqual(
        results.map((r) => [r.size, r.sha256Hex]),
        sizes.map((n, i) => [n, expected[i]]),
      );
      const got = await Promise.all(ids.map(async (id) => drain((await store.get(owner, id))!)));
      assert.deepEqual(
        got,
        sizes.map((n, i) => ({ size: n, hex: expected[i] })),
      );
    });

    it('deleteOwner removes every blob of that owner and no other', async () => {
      const [a, b] = [newOwner(), newOwner()];
      const aIds = [newBlobId(), newBlobId(), newBlobId()];
      const bId = newBlobId();
      for (const id of aIds) await put(a, id, patternSource(1234));
      await put(b, bId, patternSource(99));
      assert.equal(await store.deleteOwner(a), 3);
      for (const id of aIds) assert.equal(await store.head(a, id), undefined);
      assert.deepEqual(await store.head(b, bId), { size: 99 });
      assert.equal(await store.deleteOwner(newOwner()), 0);
    });

    it('list names every stored blob with its owner and a recent modification time (orphan scans)', async () => {
      if (!store.list) return;
      const owner = newOwner();
      const ids = [newBlobId(), newBlobId()];
      const before = Date.now() - 60_000;
      for (const id of ids) await put(owner, id, patternSource(10));
      const listed: Array<{ owner: string; blobId: string; modifiedAt: number }> = [];
      for await (const entry of store.list()) listed.push(entry);
      const mine = listed.filter((e) => e.owner === owner);
      assert.deepEqual(mine.map((e) => e.blobId).sort(), [...ids].sort());
      for (const e of mine)
        assert.ok(e.modifiedAt >= before && e.modifiedAt <= Date.now() + 60_000, `modifiedAt ${e.modifiedAt}`);
      await store.deleteOwner(owner);
    });

    it('a reader released early (or never read) frees its resources; an aborted read rejects', async () => {
      const owner = newOwner();
      const id = newBlobId();
      await put(owner, id, patternSource(3 * MIB));
      const unread = await store.get(owner, id);
      unread?.cancel();
      unread?.cancel();
      const early = await store.get(owner, id);
      assert.ok(early);
      for await (const _ of early.body) break;
      const ac = new AbortController();
      const aborted = await store.get(owner, id, { signal: ac.signal });
      assert.ok(aborted);
      await assert.rejects(
        drain(aborted, () => ac.abort()),
        () => true,
      );
      assert.deepEqual(await drain((await store.get(owner, id))!), { size: 3 * MIB, hex: await patternHash(3 * MIB) });
    });

    it('hostile or malformed ids and options are refused before any I/O', async () => {
      let touched = false;
      const spy = {
        [Symbol.asyncIterator]() {
          touched = true;
          return patternSource(10)[Symbol.asyncIterator]();
        },
      };
      const owner = newOwner();
      const id = newBlobId();
      const badOwners = [
        '',
        'x',
        '..',
        `../${owner.slice(3)}`,
        `${owner.slice(0, 42)}/`,
        `${owner}a`,
        `${owner.slice(0, 42)}=`,
      ];
      const badIds = [
        '',
        'blob_',
        '../blob_0123456789ab',
        'blob_0123456789AB',
        'blob_0123456789abc',
        'blob_012345678/ab',
        'blob_0123456789ab.meta',
      ];
      for (const o of badOwners) {
        await rejectsWith(store.put(o, id, spy, { maxBytes: 10, contentType: TYPE }), 'invalid_blob_ref');
        await rejectsWith(store.get(o, id), 'invalid_blob_ref');
        await rejectsWith(store.head(o, id), 'invalid_blob_ref');
        await rejectsWith(store.delete(o, id), 'invalid_blob_ref');
        await rejectsWith(store.deleteOwner(o), 'invalid_blob_ref');
      }
      for (const b of badIds) {
        await rejectsWith(store.put(owner, b, spy, { maxBytes: 10, contentType: TYPE }), 'invalid_blob_ref');
        await rejectsWith(store.get(owner, b), 'invalid_blob_ref');
        await rejectsWith(store.head(owner, b), 'invalid_blob_ref');
        await rejectsWith(store.delete(owner, b), 'invalid_blob_ref');
      }
      for (const o of [
        { maxBytes: -1 },
        { maxBytes: 1.5 },
        { contentType: '' },
        { contentType: 'text/plain\r\nx-evil: 1' },
        { contentType: 'é' },
      ]) {
        await rejectsWith(store.put(owner, id, spy, { maxBytes: 10, contentType: TYPE, ...o }), 'invalid_blob_ref');
      }
      assert.equal(touched, false);
      assert.deepEqual(await h.leftovers(), []);
    });

    it('check() says ok; a closed store refuses new work', async () => {
      const other = await open();
      assert.equal(await other.store.check(), 'ok');
      await other.store.close();
      assert.notEqual(await other.store.check(), 'ok');
      await rejectsWith(
        other.store.put(newOwner(), newBlobId(), patternSource(1), { maxBytes: 10, contentType: TYPE }),
        'closed',
      );
      await rejectsWith(other.store.get(newOwner(), newBlobId()), 'closed');
    });
  });
}
