import type { Command } from 'commander';
import type { RelayClient } from '../../client/http.js';
import type { Message } from '../../protocol/types.js';
import { checkOutputDir, progressFor, safeFilename, writeStreamNew } from '../attachments.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { MessageOpener, sealedNote, shownJson } from '../opener.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { fullTime, jsonText, messageBlock, safeText } from '../render.js';

/** `mrp status <id>`: delivery status of a message you sent or received. */
export async function runStatus(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const client = await ctx.client();
  const status = await client.messageStatus(args[0]!);
  const { style } = ctx.out;
  const paint = status.status === 'delivered' ? style.green : status.status === 'expired' ? style.red : style.yellow;
  ctx.out.result(
    status,
    () =>
      ctx.out.keyValues([
        ['message', safeText(status.message_id)],
        ['status', paint(safeText(status.status))],
        ['created', fullTime(status.created_at)],
        ['delivered', fullTime(status.delivered_at)],
        ['expires', fullTime(status.expires_at)],
      ]),
    () => status.status,
  );
}

export interface GetOptions {
  /** Download every attachment into this directory. */
  saveAttachments?: string;
}

/** What `--save-attachments` did with one attachment. */
interface Saved {
  blob_id: string;
  path?: string;
  /** It was end-to-end encrypted and is saved decrypted. */
  decrypted?: boolean;
  /** Why it was not saved: `sealed_for_recipient`, `decryption_failed`. */
  skipped?: string;
}

/**
 * Downloads a message's attachments into `dir`: names from the sender made safe (`safeFilename`),
 * never overwriting (`name (1).ext`), each verified before it is kept. Encrypted attachments
 * (§8.4) are decrypted on the way into a temp file that is renamed into place only once the
 * Poly1305 tag at the end has verified; one that cannot be decrypted is skipped with a warning
 * (and no file). One this agent sent encrypted cannot be opened by it (the key is wrapped for the
 * recipient alone): skipped too.
 */
async function saveAttachments(ctx: CliContext, client: RelayClient, message: Message, dir: string): Promise<Saved[]> {
  const saved: Saved[] = [];
  const quiet = ctx.globals.json || ctx.globals.quiet;
  const { openAttachment } = await import('../../client/blob-e2e.js');
  for (const a of message.attachments) {
    if (a.encrypted === true && message.sender_key === client.publicKey && message.recipient_key !== client.publicKey) {
      saved.push({ blob_id: a.blob_id, skipped: 'sealed_for_recipient' });
      ctx.out.warn(`${a.blob_id}: sent by you encrypted; only the recipient can decrypt it`);
      continue;
    }
    const bars: Array<{ done(): void }> = [];
    const name = safeFilename(a.filename, a.blob_id);
    let bar: { update?: ((n: number) => void) | undefined } | undefined;
    try {
      const opened = await openAttachment(client, a, message.sender_key, {
        onProgress: (n, total) => {
          bar ??= { update: progressFor(ctx.deps.stderr, quiet, name, total, bars) };
          bar.update?.(n);
        },
      });
      saved.push({
        blob_id: a.blob_id,
        path: await writeStreamNew(dir, name, opened.body),
        ...(opened.encrypted ? { decrypted: true } : {}),
      });
    } catch (err) {
      if ((err as { code?: unknown }).code !== 'decryption_failed') throw err;
      saved.push({ blob_id: a.blob_id, skipped: 'decryption_failed' });
      ctx.out.warn(safeText(`${a.blob_id}: not saved: ${(err as Error).message}`));
    } finally {
      for (const b of bars) b.done();
    }
  }
  return saved;
}

/** `mrp get <id>`: a whole message you sent or received. */
export async function runGet(ctx: CliContext, options: GetOptions, args: string[]): Promise<void> {
  // Before any request: attachments with nowhere to go are a usage error.
  if (options.saveAttachments !== undefined)
    await checkOutputDir(options.saveAttachments, `--save-attachments ${options.saveAttachments}`);
  const client = await ctx.client();
  const shown = await new MessageOpener(client.keypair).open(await client.getMessage(args[0]!));
  const contacts = await ctx.contacts();
  const saved =
    options.saveAttachments === undefined
      ? undefined
      : await saveAttachments(ctx, client, shown.message, options.saveAttachments);
  ctx.out.result(
    saved === undefined ? shownJson(shown) : { ...shownJson(shown), saved_attachments: saved },
    () => [
      ...messageBlock(shown.message, { style: ctx.out.style, contacts, self: client.publicKey }, shown),
      ...(saved ?? []).map((s) =>
        s.path ? `saved ${safeText(s.blob_id)} → ${safeText(s.path)}` : `skipped ${safeText(s.blob_id)} (${s.skipped})`,
      ),
    ],
    () => jsonText(shown.message.body),
  );
  if (shown.sealed && ctx.globals.quiet && !ctx.globals.json) ctx.out.warn(sealedNote(shown)!);
}

export function register(program: Command, deps: Deps): void {
  const status = program
    .command('status')
    .description('delivery status of a message (sent, delivered, expired)')
    .argument('<message-id>');
  examples(addGlobalOptions(status), [
    'mrp status msg_1772712000_0a1b2c3d4e5f',
    'mrp status "$(mrp send bob hi)" --json',
  ]);
  status.action(action(deps, runStatus));
  const get = program
    .command('get')
    .description('show a message you sent or received')
    .argument('<message-id>')
    .option('--save-attachments <dir>', 'download its attachments into <dir> (safe names, never overwriting)');
  examples(addGlobalOptions(get), [
    'mrp get msg_1772712000_0a1b2c3d4e5f',
    'mrp get msg_1772712000_0a1b2c3d4e5f --json | jq .body',
    'mrp get msg_1772712000_0a1b2c3d4e5f --save-attachments ./inbox',
  ]);
  get.action(action(deps, runGet));
}
