/**
 * `mrp blob upload|download|info|delete`, `mrp send --attach/--attach-file` and `mrp get
 * --save-attachments`, in process against a real relay: ids and JSON out, verified atomic
 * downloads (to a file or stdout), typed failures with their exit codes, safe names for a peer's
 * filenames (no path parts, no control characters, never overwriting), and the progress bar only
 * on a terminal.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { lstat, mkdir, readdir, readFile, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { RelayClient } from '../../src/client/http.js';
import { Keypair } from '../../src/protocol/signing.js';
import { runCli, type TestDeps, tempDir, testDeps } from '../helpers/cli.js';
import { startRelay, type TestRelay } from '../helpers/relay.js';

async function user(
  t: TestContext,
  relay: TestRelay,
  extra: { tty?: boolean } = {},
): Promise<{ deps: TestDeps; key: string; home: string }> {
  const home = await tempDir(t);
  const deps = testDeps({ home, env: { MRP_RELAY_URL: relay.url }, ...extra });
  const res = await runCli(['keygen', '--json'], deps);
  return { deps, key: JSON.parse(res.stdout).public_key, home };
}

describe('mrp blob', () => {
  it('upload prints the id (--json the record), info, download -o file and -o -, delete; then blob_not_found (exit 1)', async (t) => {
    const relay = await startRelay(t);
    const { deps } = await user(t, relay);
    const dir = await tempDir(t);
    const file = join(dir, 'report.pdf');
    await writeFile(file, 'not really a pdf');
    const up = await runCli(['blob', 'upload', file], deps);
    assert.equal(up.code, 0, up.stderr);
    const id = up.stdout.trim();
    assert.match(id, /^blob_[0-9a-f]{12}$/);
    const upJson = await runCli(['blob', 'upload', file, '--content-type', 'text/plain', '--json'], deps);
    const record = JSON.parse(upJson.stdout);
    assert.equal(record.content_type, 'text/plain');
    assert.equal(record.size, 16);
    const info = JSON.parse((await runCli(['blob', 'info', id, '--json'], deps)).stdout);
    assert.deepEqual(info, { blob_id: id, size: 16, hash: record.hash, content_type: 'application/pdf' });
    const out = join(dir, 'copy.pdf');
    const down = await runCli(['blob', 'download', id, '-o', out], deps);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(await readFile(out, 'utf8'), 'not really a pdf');
    const toStdout = await runCli(['blob', 'download', id, '-o', '-'], deps);
    assert.equal(toStdout.stdout, 'not really a pdf');
    assert.deepEqual((await readdir(dir)).sort(), ['copy.pdf', 'report.pdf'], 'no temp file left');
    assert.equal((await runCli(['blob', 'delete', id], deps)).code, 0);
    const gone = await runCli(['blob', 'info', id, '--json'], deps);
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /blob_not_found/);
    for (const bad of ['', 'text/\u001b[31mred', 'x'.repeat(256)]) {
      const res = await runCli(['blob', 'upload', file, '--content-type', bad], deps);
      assert.equal(res.code, 2, res.stderr);
      assert.match(res.stderr, /^error: --content-type ".*" must be 1-255 printable ASCII characters/);
      assert.equal(res.stderr.trim().split('\n').length, 1, res.stderr);
      assert.ok(!res.stderr.includes('\u001b'), 'the bad value is shown escaped');
    }
    const missing = await runCli(['blob', 'upload', join(dir, 'nope.bin')], deps);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /nope\.bin/);
    // Ids are opaque: one of another shape is the relay's to refuse (spec §0).
    const otherShape = await runCli(['blob', 'info', 'blob_ABCDEF123456'], deps);
    assert.equal(otherShape.code, 1, otherShape.stderr);
    assert.match(otherShape.stderr, /blob_not_found/);
    // Nowhere to write: a usage error naming the flag and path, before any request (an unknown
    // id would otherwise be the relay's blob_not_found, exit 1).
    for (const bad of [join(dir, 'missing', 'x.bin'), join(dir, 'report.pdf', 'x.bin')]) {
      const res = await runCli(['blob', 'download', 'blob_000000000000', '-o', bad], deps);
      assert.equal(res.code, 2, res.stderr);
      assert.equal(res.stderr.trim().split('\n').length, 1, res.stderr);
      assert.ok(res.stderr.includes(`-o ${bad}`), res.stderr);
    }
    const noDir = await runCli(['get', 'msg_1_000000000000', '--save-attachments', join(dir, 'missing')], deps);
    assert.equal(noDir.code, 2, noDir.stderr);
    assert.match(noDir.stderr, /--save-attachments .*missing: the directory .* does not exist; create it first/);
    const noOut = await runCli(['blob', 'download', record.blob_id], deps);
    assert.equal(noOut.code, 2);
    assert.match(noOut.stderr, /-o/);
  });

  it('delete of a blob an unexpired message lists: blob_referenced (exit 1), one line saying when it can go', async (t) => {
    const relay = await startRelay(t);
    const { deps } = await user(t, relay);
    const dir = await tempDir(t);
    const file = join(dir, 'a.txt');
    await writeFile(file, 'kept');
    const id = (await runCli(['blob', 'upload', file], deps)).stdout.trim();
    const sent = await runCli(['send', Keypair.generate().publicKey, 'see attached', '--attach', id], deps);
    assert.equal(sent.code, 0, sent.stderr);
    const res = await runCli(['blob', 'delete', id], deps);
    assert.equal(res.code, 1, res.stderr);
    assert.equal(
      res.stderr,
      `error: blob_referenced: blob ${id} is attached to a message that has not expired — it can be deleted once that message expires\n`,
    );
  });

  it('download -o and --save-attachments to a long name in a multi-byte script (244 bytes): its temp file fits too', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const dir = await tempDir(t);
    const long = `${'文'.repeat(80)}.bin`; // 244 bytes: a valid name; its temp name must stay under 255
    const file = join(dir, long);
    await writeFile(file, 'wide');
    const id = (await runCli(['blob', 'upload', file], alice.deps)).stdout.trim();
    const out = join(dir, 'out');
    await mkdir(out);
    const down = await runCli(['blob', 'download', id, '-o', join(out, long)], alice.deps);
    assert.equal(down.code, 0, down.stderr);
    assert.equal(await readFile(join(out, long), 'utf8'), 'wide');
    const sent = await runCli(['send', bob.key, '--attach-file', file, '-q'], alice.deps);
    assert.equal(sent.code, 0, sent.stderr);
    const inbox = join(dir, 'inbox');
    await mkdir(inbox);
    const got = await runCli(['get', sent.stdout.trim(), '--save-attachments', inbox], bob.deps);
    assert.equal(got.code, 0, got.stderr);
    const names = await readdir(inbox);
    assert.equal(names.length, 1);
    assert.equal(await readFile(join(inbox, names[0]!), 'utf8'), 'wide');
    assert.deepEqual(await readdir(out), [long], 'no temp file left');
  });

  it('download -o onto a FIFO or a device (/dev/null) writes into it, never renames a regular file over it', async (t) => {
    const relay = await startRelay(t);
    const { deps } = await user(t, relay);
    const dir = await tempDir(t);
    const file = join(dir, 'data.txt');
    await writeFile(file, 'through the pipe');
    const id = (await runCli(['blob', 'upload', file], deps)).stdout.trim();
    const fifo = join(dir, 'pipe');
    execFileSync('mkfifo', [fifo]);
    const reader = spawn('cat', [fifo], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => reader.kill());
    let read = '';
    reader.stdout.on('data', (c: Buffer) => {
      read += c.toString();
    });
    const readerDone = once(reader, 'close');
    const res = await runCli(['blob', 'download', id, '-o', fifo], deps);
    assert.equal(res.code, 0, res.stderr);
    assert.ok((await lstat(fifo)).isFIFO(), 'the FIFO was replaced by a regular file');
    await readerDone;
    assert.equal(read, 'through the pipe');
    assert.deepEqual((await readdir(dir)).sort(), ['data.txt', 'pipe'], 'no temp file left');
    // A character device like /dev/null (made here only when allowed: mknod needs root).
    const dev = join(dir, 'null');
    try {
      execFileSync('mknod', [dev, 'c', '1', '3'], { stdio: 'ignore' });
    } catch {
      return;
    }
    const toDev = await runCli(['blob', 'download', id, '-o', dev], deps);
    assert.equal(toDev.code, 0, toDev.stderr);
    assert.ok((await lstat(dev)).isCharacterDevice(), 'the device was replaced by a regular file');
  });

  it('a progress bar on a terminal for transfers over 4 MB, never when piped', async (t) => {
    const relay = await startRelay(t);
    const dir = await tempDir(t);
    const file = join(dir, 'big.bin');
    await writeFile(file, Buffer.alloc(5 * 1024 * 1024, 1));
    const tty = await user(t, relay, { tty: true });
    const shown = await runCli(['blob', 'upload', file], tty.deps);
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stderr, /big\.bin \[#+-*\] \d+% [\d.]+\/5\.0 MiB/);
    const piped = await user(t, relay);
    const hidden = await runCli(['blob', 'upload', file], piped.deps);
    assert.equal(hidden.code, 0);
    assert.equal(hidden.stderr, '');
  });
});

describe('mrp blob download of a multi-MB blob', () => {
  it('writes through back-pressure without piling up listeners (no MaxListenersExceededWarning), to -o and --save-attachments', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const dir = await tempDir(t);
    const file = join(dir, 'big.bin');
    await writeFile(file, Buffer.alloc(3 * 1024 * 1024, 7));
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    t.after(() => void process.off('warning', onWarning));
    const sent = await runCli(['send', bob.key, '--attach-file', file, '--json'], alice.deps);
    assert.equal(sent.code, 0, sent.stderr);
    const { message_id } = JSON.parse(sent.stdout);
    const got = JSON.parse((await runCli(['get', message_id, '--json'], bob.deps)).stdout);
    const down = await runCli(['blob', 'download', got.attachments[0].blob_id, '-o', join(dir, 'copy.bin')], bob.deps);
    assert.equal(down.code, 0, down.stderr);
    assert.equal((await readFile(join(dir, 'copy.bin'))).byteLength, 3 * 1024 * 1024);
    const inbox = await tempDir(t);
    const saved = await runCli(['get', message_id, '--save-attachments', inbox], bob.deps);
    assert.equal(saved.code, 0, saved.stderr);
    assert.equal((await readFile(join(inbox, 'big.bin'))).byteLength, 3 * 1024 * 1024);
    // process.emitWarning emits on the next tick: let it.
    await new Promise<void>((resolve) => setImmediate(resolve));
    assert.deepEqual(
      warnings.filter((w) => w.name === 'MaxListenersExceededWarning').map((w) => w.message),
      [],
    );
    assert.equal(down.stderr + saved.stderr, '');
  });
});

describe('files over the per-blob limit (100 MiB)', () => {
  it('are refused before anything is sent: one line naming the flag, the file and the limit, exit 2 (encrypted: with its 28 bytes of nonce and tag)', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const dir = await tempDir(t);
    // Sparse files: nothing is written.
    const big0 = join(dir, 'big0.bin');
    const big1 = join(dir, 'big1.bin');
    await writeFile(big0, '');
    await truncate(big0, 100 * 1024 * 1024);
    await writeFile(big1, '');
    await truncate(big1, 100 * 1024 * 1024 + 1);
    const upload = await runCli(['blob', 'upload', big1], alice.deps);
    assert.equal(upload.code, 2, upload.stderr);
    assert.equal(upload.stderr.trim().split('\n').length, 1, upload.stderr);
    assert.ok(upload.stderr.includes(`blob upload ${big1}: 104857601 bytes`), upload.stderr);
    assert.match(upload.stderr, /104857600 bytes, 100 MiB\); split or compress it/);
    const encrypted = await runCli(['send', '-e', bob.key, 'x', '--attach-file', big0], alice.deps);
    assert.equal(encrypted.code, 2, encrypted.stderr);
    assert.equal(encrypted.stderr.trim().split('\n').length, 1, encrypted.stderr);
    assert.ok(
      encrypted.stderr.includes(`--attach-file ${big0}: 104857628 bytes once encrypted (104857600 + 28)`),
      encrypted.stderr,
    );
    const plain = await runCli(['send', bob.key, 'x', '--attach-file', big1], alice.deps);
    assert.equal(plain.code, 2, plain.stderr);
    assert.ok(plain.stderr.includes(`--attach-file ${big1}: 104857601 bytes is more`), plain.stderr);
    // Nothing was sent.
    const inbox = await runCli(['recv', '--json'], bob.deps);
    assert.equal(inbox.stdout.trim(), '', inbox.stderr);
  });
});

describe('attachments from the command line', () => {
  it('send --attach-file/--attach (no body needed); get --save-attachments writes safe, new names', async (t) => {
    const relay = await startRelay(t);
    const alice = await user(t, relay);
    const bob = await user(t, relay);
    const dir = await tempDir(t);
    const notes = join(dir, 'notes.md');
    await writeFile(notes, '# notes');
    const blobId = (await runCli(['blob', 'upload', notes], alice.deps)).stdout.trim();
    const sent = await runCli(['send', bob.key, '--attach-file', notes, '--attach', blobId, '--json'], alice.deps);
    assert.equal(sent.code, 0, sent.stderr);
    const messageId = JSON.parse(sent.stdout).message_id;
    const got = JSON.parse((await runCli(['get', messageId, '--json'], bob.deps)).stdout);
    assert.equal(got.attachments.length, 2);
    // --attach ids first, then the --attach-file uploads.
    assert.deepEqual(got.attachments[0], {
      blob_id: blobId,
      content_type: 'text/markdown',
      size: 7,
      hash: got.attachments[1].hash,
    });
    assert.deepEqual(
      { ...got.attachments[1], blob_id: undefined },
      {
        blob_id: undefined,
        filename: 'notes.md',
        content_type: 'text/markdown',
        size: 7,
        hash: got.attachments[1].hash,
      },
    );
    assert.notEqual(got.attachments[1].blob_id, blobId);

    // A hostile filename from a peer: path parts and control characters go.
    const mallory = new RelayClient({ relayUrl: relay.url, keypair: Keypair.generate() });
    const evil = await mallory.uploadBlob(Buffer.from('evil'));
    const m = await mallory.send({
      recipient_key: bob.key,
      body: {},
      attachments: [{ blob_id: evil.blob_id, filename: '../../.bashrc\u001b[2J' }],
    });
    const inbox = await tempDir(t);
    for (let i = 0; i < 2; i++) {
      const res = await runCli(['get', m.message_id, '--save-attachments', inbox], bob.deps);
      assert.equal(res.code, 0, res.stderr);
    }
    assert.deepEqual((await readdir(inbox)).sort(), ['bashrc[2J', 'bashrc[2J (1)']);
    assert.equal(await readFile(join(inbox, 'bashrc[2J'), 'utf8'), 'evil');
    // Invisible and direction-changing characters go too (the Arabic letter mark, line and
    // paragraph separators, word joiners, a byte-order mark), as they do from text on a terminal.
    const sly = await mallory.send({
      recipient_key: bob.key,
      body: {},
      attachments: [{ blob_id: evil.blob_id, filename: 'in\u061cvoice\u2028\u2029\u2060\ufeff.txt' }],
    });
    const quiet = await tempDir(t);
    assert.equal((await runCli(['get', sly.message_id, '--save-attachments', quiet], bob.deps)).code, 0);
    assert.deepEqual(await readdir(quiet), ['invoice.txt']);
    const both = await tempDir(t);
    const saved = JSON.parse(
      (await runCli(['get', messageId, '--save-attachments', both, '--json'], bob.deps)).stdout,
    ).saved_attachments;
    assert.deepEqual(
      saved.map((s: { path: string }) => s.path.slice(both.length + 1)),
      [blobId, 'notes.md'],
    );
    const notDir = await runCli(['get', messageId, '--save-attachments', join(both, 'missing')], bob.deps);
    assert.equal(notDir.code, 2);
  });
});
