import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import {
  checkOutputDir,
  checkUploadSize,
  plainFile,
  progressFor,
  writeStreamAtomic,
  writeStreamInPlace,
  writeToStream,
} from '../attachments.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { safeText } from '../render.js';

export interface BlobUploadOptions {
  contentType?: string;
}

export interface BlobDownloadOptions {
  output?: string;
}

/** Progress bars shown by this command, cleared when it ends. */
function barsOf(ctx: CliContext): { bars: Array<{ done(): void }>; quiet: boolean } {
  return { bars: [], quiet: ctx.globals.json || ctx.globals.quiet };
}

/** `mrp blob upload <file>`: prints the blob id (`--json`: the whole BlobInfo). */
export async function runBlobUpload(ctx: CliContext, options: BlobUploadOptions, args: string[]): Promise<void> {
  const path = args[0]!;
  if (options.contentType !== undefined && !/^[\x20-\x7e]{1,255}$/.test(options.contentType))
    throw new UsageError(
      `--content-type ${JSON.stringify(options.contentType.slice(0, 60))} must be 1-255 printable ASCII characters, e.g. application/pdf`,
      { code: 'invalid_argument' },
    );
  await checkUploadSize(path, 'blob upload');
  const file = await plainFile(path, '');
  const client = await ctx.client();
  const { bars, quiet } = barsOf(ctx);
  const size = file.input instanceof Uint8Array ? file.input.byteLength : file.input.size;
  const onProgress = progressFor(ctx.deps.stderr, quiet, path, size, bars);
  let info: Awaited<ReturnType<typeof client.uploadBlob>>;
  try {
    info = await client.uploadBlob(file.input, {
      contentType: options.contentType ?? file.uploadType,
      ...(onProgress ? { onProgress } : {}),
    });
  } finally {
    for (const b of bars) b.done();
  }
  ctx.out.result(
    info,
    () =>
      ctx.out.isTTY
        ? `${ctx.out.style.green('✔')} Uploaded ${ctx.out.style.bold(info.blob_id)} (${info.size} bytes, ${safeText(info.content_type)})`
        : info.blob_id,
    () => info.blob_id,
  );
}

/** `mrp blob download <id> -o <file|->`: streamed, verified, written atomically (or to stdout). */
export async function runBlobDownload(ctx: CliContext, options: BlobDownloadOptions, args: string[]): Promise<void> {
  const id = args[0]!;
  const output = options.output;
  if (output === undefined)
    throw new UsageError('where to? give -o <file>, or -o - for stdout', { code: 'missing_argument' });
  // An existing file that is not a regular one (`-o /dev/null`, a FIFO) is written in place:
  // replacing it would rename a regular file over the device.
  let inPlace = false;
  if (output !== '-') {
    const info = await stat(output).catch(() => undefined);
    if (info?.isDirectory())
      throw new UsageError(`-o ${output} is a directory; give a file path`, { code: 'invalid_argument' });
    if (info && !info.isFile()) {
      inPlace = true;
      await access(output, constants.W_OK).catch((err: NodeJS.ErrnoException) => {
        throw new UsageError(`-o ${output}: cannot write to it (${err.code ?? err.message}); give another path`, {
          code: 'invalid_argument',
          cause: err,
        });
      });
    }
    // Before the request: a download with nowhere to go is a usage error, not an ENOENT after it.
    else await checkOutputDir(dirname(output), `-o ${output}`);
  }
  const client = await ctx.client();
  const { info, body } = await client.downloadBlob(id, {});
  const { bars, quiet } = barsOf(ctx);
  const onProgress = progressFor(
    ctx.deps.stderr,
    quiet || (output === '-' && ctx.deps.stdout.isTTY === true),
    id,
    info.size,
    bars,
  );
  const counted = (async function* () {
    let n = 0;
    for await (const chunk of body) {
      n += chunk.byteLength;
      onProgress?.(n);
      yield chunk;
    }
  })();
  try {
    if (output === '-') await writeToStream(ctx.deps.stdout, counted);
    else if (inPlace) await writeStreamInPlace(output, counted);
    else await writeStreamAtomic(output, counted);
  } finally {
    for (const b of bars) b.done();
  }
  if (output === '-') return;
  ctx.out.result(
    { ...info, path: output },
    () => (ctx.out.isTTY ? `${ctx.out.style.green('✔')} Saved ${info.size} bytes to ${safeText(output)}` : output),
    () => output,
  );
}

/** `mrp blob info <id>`: size, hash, media type. */
export async function runBlobInfo(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const client = await ctx.client();
  const head = await client.headBlob(args[0]!);
  ctx.out.result(
    head,
    () =>
      ctx.out.keyValues([
        ['blob', head.blob_id],
        ['size', `${head.size} bytes`],
        ['hash', head.hash],
        ['type', safeText(head.content_type)],
      ]),
    () => `${head.size} ${head.hash} ${safeText(head.content_type)}`,
  );
}

/** `mrp blob delete <id>`. */
export async function runBlobDelete(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const id = args[0]!;
  const client = await ctx.client();
  await client.deleteBlob(id);
  ctx.out.result(
    { blob_id: id, deleted: true },
    () => (ctx.out.isTTY ? `${ctx.out.style.green('✔')} Deleted ${safeText(id)}` : id),
    // -q: nothing, as every command that changes something (README "Global options").
  );
}

export function register(program: Command, deps: Deps): void {
  // Global options also between the group and its subcommand (`mrp blob --key K info <id>`), as for acl.
  const blob = addGlobalOptions(program.command('blob')).description(
    'upload, download, inspect and delete blobs (files up to 100 MiB)',
  );
  const upload = blob
    .command('upload')
    .description('upload a file; prints its blob id (--json: the blob record)')
    .argument('<file>')
    .option('--content-type <type>', 'media type to store (default: guessed from the extension)');
  examples(addGlobalOptions(upload), [
    'mrp blob upload report.pdf',
    'id=$(mrp blob upload -q data.bin)',
    'mrp blob upload photo.jpg --json',
  ]);
  upload.action(action(deps, runBlobUpload));
  const download = blob
    .command('download')
    .description('download a blob (yours, or attached to a message you sent or received); verified before it is kept')
    .argument('<blob-id>')
    .option('-o, --output <file>', 'where to write it (- for stdout)');
  examples(addGlobalOptions(download), [
    'mrp blob download blob_7c2e91a04bd3 -o report.pdf',
    'mrp blob download blob_7c2e91a04bd3 -o - | less',
  ]);
  download.action(action(deps, runBlobDownload));
  const info = blob.command('info').description('size, SHA-256 and media type of a blob').argument('<blob-id>');
  examples(addGlobalOptions(info), ['mrp blob info blob_7c2e91a04bd3', 'mrp blob info blob_7c2e91a04bd3 --json']);
  info.action(action(deps, runBlobInfo));
  const del = blob
    .command('delete')
    .alias('rm')
    .description('delete your blob (refused while an unexpired message lists it)')
    .argument('<blob-id>');
  examples(addGlobalOptions(del), ['mrp blob delete blob_7c2e91a04bd3']);
  del.action(action(deps, runBlobDelete));
}
