/**
 * Files ↔ blobs for the commands (`mrp blob`, `mrp send --attach-file`, `mrp get
 * --save-attachments`): guessing a media type, turning a file into an upload plus the fields of
 * its attachment (`FilePreparer`: the plain one here; end-to-end encryption plugs in its own,
 * which seals the file and adds `encrypted`/`dek_enc`/`dek_ct`), writing a download atomically,
 * naming saved files safely (a peer's `filename` is never trusted as a path), and a progress bar
 * on stderr for big transfers on a terminal.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { constants, createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { access, link, open, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, extname, join } from 'node:path';
import { fileBlobInput } from '../client/blob-file.js';
import type { BlobInput, UploadOptions } from '../client/blobs.js';
import type { RelayClient } from '../client/http.js';
import { UsageError } from '../core/errors.js';
import { BLOB_OVERHEAD, encryptedBlobSize } from '../protocol/blob-crypto.js';
import { LIMITS } from '../protocol/constants.js';
import type { Keypair } from '../protocol/signing.js';
import type { Attachment } from '../protocol/types.js';
import type { OutStream } from './deps.js';
import { syncDir } from './files.js';

/** Media types by extension: a small table of the common ones; anything else is octet-stream. */
const MEDIA_TYPES: Readonly<Record<string, string>> = {
  '.txt': 'text/plain',
  '.md': 'text/markdown',
  '.csv': 'text/csv',
  '.html': 'text/html',
  '.htm': 'text/html',
  '.css': 'text/css',
  '.js': 'text/javascript',
  '.json': 'application/json',
  '.xml': 'application/xml',
  '.yaml': 'application/yaml',
  '.yml': 'application/yaml',
  '.pdf': 'application/pdf',
  '.zip': 'application/zip',
  '.gz': 'application/gzip',
  '.tar': 'application/x-tar',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.svg': 'image/svg+xml',
  '.mp3': 'audio/mpeg',
  '.wav': 'audio/wav',
  '.mp4': 'video/mp4',
  '.webm': 'video/webm',
};

export const OCTET_STREAM = 'application/octet-stream';

export function guessContentType(path: string): string {
  return MEDIA_TYPES[extname(path).toLowerCase()] ?? OCTET_STREAM;
}

/** What to upload for a file, and the attachment fields (besides `blob_id`) a message lists for it. */
export interface PreparedFile {
  input: BlobInput;
  /** The upload's Content-Type (ciphertext: application/octet-stream). */
  uploadType: string;
  attachment: Omit<Attachment, 'blob_id'>;
}

/** Turns a file into an upload for one recipient; `mrp send -e` passes an encrypting one. */
export type FilePreparer = (path: string, recipient: string) => Promise<PreparedFile>;

/** The plain preparer: the file as it is, with its name and a media type guessed from its extension. */
export const plainFile: FilePreparer = async (path) => {
  const contentType = guessContentType(path);
  return {
    input: await fileBlobInput(path),
    uploadType: contentType,
    attachment: { filename: basename(path), content_type: contentType },
  };
};

/**
 * The `-e` preparer (docs/protocol.md §8.4): the file encrypted for its recipient under a fresh
 * DEK, uploaded as application/octet-stream, its attachment `encrypted` with the wrapped DEK and
 * the plaintext name and guessed media type. Streamed twice (measure + hash, then upload: see
 * `client/blob-e2e.ts`), so memory stays bounded whatever the size and no temp file is written.
 */
export function encryptedFile(keypair: Keypair): FilePreparer {
  return async (path, recipient) => {
    const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
      throw new UsageError(`cannot read ${path}${err.code ? ` (${err.code})` : ''}`, {
        code: 'invalid_argument',
        cause: err,
      });
    });
    if (!info.isFile()) throw new UsageError(`${path} is not a regular file`, { code: 'invalid_argument' });
    const { sealUpload } = await import('../client/blob-e2e.js');
    const source = (): AsyncIterable<Uint8Array> => createReadStream(path, { highWaterMark: 256 * 1024 });
    try {
      const prepared = await sealUpload(keypair, recipient, source, {
        filename: basename(path),
        contentType: guessContentType(path),
      });
      return prepared;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (err instanceof UsageError || typeof code !== 'string' || !code.startsWith('E')) throw err;
      throw new UsageError(`cannot read ${path} (${code})`, { code: 'invalid_argument', cause: err });
    }
  };
}

/**
 * Refuses, as a usage error (exit 2) before anything is read, signed or sent, a file whose upload
 * would be over the per-blob limit (100 MiB): the file's size, plus the nonce and tag when it is
 * encrypted (`encrypted`), is what the relay counts. `flag` names where the file was given. A
 * file that cannot be read is left to the upload's own error.
 */
export async function checkUploadSize(path: string, flag: string, encrypted = false): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) return;
  const bytes = encrypted ? encryptedBlobSize(info.size) : info.size;
  if (bytes <= LIMITS.maxBlobBytes) return;
  throw new UsageError(
    `${flag} ${path}: ${bytes} bytes${encrypted ? ` once encrypted (${info.size} + ${BLOB_OVERHEAD})` : ''} is more than a blob may be (${LIMITS.maxBlobBytes} bytes, 100 MiB); split or compress it`,
    { code: 'payload_too_large', details: { path, size: bytes, limit: LIMITS.maxBlobBytes } },
  );
}

/** Uploads each file (in order) and returns the attachments to send. */
export async function uploadFiles(
  client: RelayClient,
  paths: readonly string[],
  recipient: string,
  options: { prepare?: FilePreparer; progress?: (label: string, total: number) => UploadOptions['onProgress'] } = {},
): Promise<Attachment[]> {
  const prepare = options.prepare ?? plainFile;
  const out: Attachment[] = [];
  for (const path of paths) {
    const file = await prepare(path, recipient);
    const size = file.input instanceof Uint8Array ? file.input.byteLength : file.input.size;
    const onProgress = options.progress?.(basename(path), size);
    const info = await client.uploadBlob(file.input, {
      contentType: file.uploadType,
      ...(onProgress ? { onProgress } : {}),
    });
    out.push({ blob_id: info.blob_id, ...file.attachment });
  }
  return out;
}

/**
 * A file name from a peer made safe to create in a directory: the last path part only, no
 * control or reserved characters, no leading dots, bounded length; `fallback` when nothing is left.
 */
export function safeFilename(name: unknown, fallback: string): string {
  const raw = typeof name === 'string' ? name : '';
  const last = raw.split(/[/\\]/).pop() ?? '';
  let clean = last
    .replace(/[\u0000-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]/g, '')
    .replace(/[<>:"|?*]/g, '_')
    .replace(/^[.\s]+/, '')
    .replace(/[.\s]+$/, '')
    .trim();
  if (Buffer.byteLength(clean) > 200) {
    const ext = extname(clean).slice(0, 16);
    clean = `${Buffer.from(clean)
      .subarray(0, 180)
      .toString('utf8')
      .replace(/\uFFFD+$/, '')}${ext}`;
  }
  return clean === '' ? fallback : clean;
}

/**
 * Refuses, as a usage error (exit 2) before any request, a directory a download cannot be written
 * into: missing, not a directory, not writable. `flag` names the option and its value
 * (`-o out/x.bin`, `--save-attachments inbox`) for the one-line message.
 */
export async function checkOutputDir(dir: string, flag: string): Promise<void> {
  const info = await stat(dir).catch((err: NodeJS.ErrnoException) => err);
  if (info instanceof Error) {
    const missing = info.code === 'ENOENT';
    throw new UsageError(
      missing
        ? `${flag}: the directory ${dir} does not exist; create it first (mkdir -p ${dir}) or give another path`
        : `${flag}: cannot use the directory ${dir} (${info.code ?? info.message}); give another path`,
      { code: 'invalid_argument', cause: info },
    );
  }
  if (!info.isDirectory())
    throw new UsageError(`${flag}: ${dir} is not a directory; give a path in a directory`, {
      code: 'invalid_argument',
    });
  await access(dir, constants.W_OK).catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`${flag}: cannot write into ${dir} (${err.code ?? err.message}); give another path`, {
      code: 'invalid_argument',
      cause: err,
    });
  });
}

/** Opens `out`, writes `body` into it with back-pressure and ends it; rejects on its first error. */
async function pour(out: WriteStream, body: AsyncIterable<Uint8Array>): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    out.once('open', () => resolve());
    out.once('error', reject);
  });
  for await (const chunk of body) {
    // events.once removes both of its listeners ('drain' and 'error') whichever fires, so a
    // long download does not pile up one 'error' listener per back-pressure wait.
    if (!out.write(chunk)) await once(out, 'drain');
  }
  await new Promise<void>((resolve, reject) => {
    out.once('error', reject);
    out.end(() => resolve());
  });
}

/** A stream of bytes to a file: temp file in the same directory, fsync, then `place(temp)`; removed on failure. */
async function writeVia(
  path: string,
  body: AsyncIterable<Uint8Array>,
  place: (temp: string) => Promise<string>,
): Promise<string> {
  // The temp name bounded in bytes (a file name may be 255): a long name in a multi-byte script
  // (80 CJK characters = 240 bytes) is a valid target, and its temp file must be creatable too.
  const stem = Buffer.from(basename(path))
    .subarray(0, 96)
    .toString('utf8')
    .replace(/\uFFFD+$/, '');
  const temp = join(dirname(path), `.${stem}.${randomBytes(6).toString('hex')}.tmp`);
  const out = createWriteStream(temp, { flags: 'wx', mode: 0o600 });
  try {
    await pour(out, body);
    const handle = await open(temp, 'r');
    await handle.sync().finally(() => handle.close());
    const final = await place(temp);
    await syncDir(dirname(final));
    return final;
  } catch (err) {
    out.destroy();
    await unlink(temp).catch(() => undefined);
    throw err;
  }
}

/** Streams `body` into `path`, replacing it atomically only once the whole (verified) body is in. */
export function writeStreamAtomic(path: string, body: AsyncIterable<Uint8Array>): Promise<string> {
  return writeVia(path, body, async (temp) => {
    await rename(temp, path);
    return path;
  });
}

/**
 * Streams `body` into an existing file that is not a regular one (`-o /dev/null`, a FIFO, a
 * terminal): written in place, as `-o -` writes stdout. Replacing it atomically would rename a
 * regular file over the device (as root, `/dev/null` itself).
 */
export async function writeStreamInPlace(path: string, body: AsyncIterable<Uint8Array>): Promise<void> {
  const out = createWriteStream(path, { flags: 'w' });
  try {
    await pour(out, body);
  } catch (err) {
    out.destroy();
    throw err;
  }
}

/**
 * Streams `body` into a new file named `name` in `dir`, never overwriting: `name`, then
 * `name (1).ext`, `name (2).ext`, … (the first that does not exist at the moment it is linked).
 */
export function writeStreamNew(dir: string, name: string, body: AsyncIterable<Uint8Array>): Promise<string> {
  return writeVia(join(dir, name), body, async (temp) => {
    const ext = extname(name);
    const stem = ext ? name.slice(0, -ext.length) : name;
    for (let i = 0; i < 1000; i++) {
      const candidate = join(dir, i === 0 ? name : `${stem} (${i})${ext}`);
      try {
        await link(temp, candidate);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw err;
      }
      await unlink(temp).catch(() => undefined);
      return candidate;
    }
    throw new UsageError(`too many files named like ${name} in ${dir}`, { code: 'invalid_argument' });
  });
}

/** Bytes to stdout (or any byte stream), with back-pressure when the stream offers it. */
export async function writeToStream(stream: OutStream, body: AsyncIterable<Uint8Array>): Promise<void> {
  const s = stream as OutStream & { write(chunk: Uint8Array): boolean; once?(event: 'drain', fn: () => void): unknown };
  for await (const chunk of body) {
    // As a Buffer: streams that take text (and tests' captures) handle it; a bare Uint8Array would print as numbers.
    if (
      s.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)) === false &&
      typeof s.once === 'function'
    )
      await new Promise<void>((resolve) => s.once!('drain', resolve));
  }
}

/** Transfers above this size get a progress bar (on a terminal). */
export const PROGRESS_MIN_BYTES = 4 * 1024 * 1024;

/**
 * A one-line progress bar redrawn on `stream` (a terminal's stderr), at most every 100 ms; the
 * caller decides whether to show one at all (`progressFor`).
 */
export function progressBar(
  stream: OutStream,
  label: string,
  total: number,
  now: () => number = Date.now,
): { update(n: number): void; done(): void } {
  let last = -Infinity;
  let shown = false;
  const draw = (n: number): void => {
    const width = 24;
    const part = total === 0 ? 1 : Math.min(1, n / total);
    const filled = Math.round(part * width);
    const mib = (x: number): string => (x / 1048576).toFixed(1);
    stream.write(
      `\r${label.slice(0, 40)} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${Math.floor(part * 100)}% ${mib(n)}/${mib(total)} MiB`,
    );
    shown = true;
  };
  return {
    update(n) {
      const t = now();
      if (t - last < 100 && n < total) return;
      last = t;
      draw(n);
    },
    done() {
      if (shown) stream.write('\r\x1b[2K');
    },
  };
}

/** A progress callback for a transfer of `total` bytes, or undefined when no bar should show (not a TTY, small, --json/--quiet). */
export function progressFor(
  stream: OutStream,
  quietOrJson: boolean,
  label: string,
  total: number,
  bars: Array<{ done(): void }>,
): ((n: number) => void) | undefined {
  if (quietOrJson || stream.isTTY !== true || total < PROGRESS_MIN_BYTES) return undefined;
  const bar = progressBar(stream, label, total);
  bars.push(bar);
  return (n) => bar.update(n);
}
