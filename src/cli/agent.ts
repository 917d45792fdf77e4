/**
 * Assembles a running agent (used by `mrp run` and `mrp dev`): relay client, message source,
 * journal, runtime and reporter, plus announcing the manifest once the relay answers.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { MessageCodec } from '../client/codec.js';
import { RelayClient } from '../client/http.js';
import type { MessageSource } from '../client/source.js';
import type { WebhookSource } from '../client/webhook-source.js';
import { MrpError, toMrpError, UsageError } from '../core/errors.js';
import { resolveRecipient } from '../protocol/contacts.js';
import type { Keypair } from '../protocol/signing.js';
import { newWebhookSecret } from '../protocol/webhook.js';
import { assembleRuntime, journalTakes } from '../runtime/assemble.js';
import type { Handler } from '../runtime/handler.js';
import { Journal } from '../runtime/journal.js';
import type { RuntimeJournal } from '../runtime/journal-port.js';
import type { AgentMode } from '../runtime/mode.js';
import type { Runtime } from '../runtime/runtime.js';
import type { CliContext } from './context.js';
import { applyManifest, type Manifest } from './manifest.js';
import { type LogFormat, Reporter } from './reporter.js';
import type { Tracers } from './trace.js';
import { packageVersion } from './version.js';

export interface AgentOptions {
  relayUrl: string;
  /**
   * The relay as the local journal names it (default `relayUrl`): a stable name where the URL is
   * not (`mrp dev` falls back to any free port).
   */
  journalRelay?: string;
  keypair: Keypair;
  handler: Handler;
  handlerLabel: string;
  mode: AgentMode;
  /** Webhook mode: where to listen, and the URL the relay posts to when it is not that address. */
  webhook?: WebhookListen;
  concurrency: number;
  timeoutMs: number;
  graceMs: number;
  /** Poll mode: pause between polls when the relay has no long poll. */
  intervalMs?: number;
  manifest: Manifest | undefined;
  logFormat: LogFormat;
  payloads: boolean;
  /** Sync the journal to disk on the message's path (survives power cuts, not only crashes). */
  fsync?: boolean;
  /** Trace callbacks for the relay client and the WebSocket session (--debug, metrics). */
  trace?: Tracers;
  /** Crashes of the process on one message before it is answered with `handler_crashed`. */
  maxCrashes?: number;
  /**
   * How message bodies are opened and sealed (default: end-to-end encryption with this key pair,
   * docs/protocol.md §8; its crypto loads on the first encrypted message).
   */
  codec?: MessageCodec;
  /**
   * A shared journal (`postgres://…`): this runner joins a fleet serving the identity. Its mode is
   * then chosen by the fleet: a WebSocket when one of the two slots is free, else polling (or, with
   * `standby`, waiting for a slot); `mode: 'poll'` always polls.
   */
  sharedJournal?: {
    url: string;
    leaseMs?: number;
    standby?: boolean;
    /** Ends a standby's wait for a slot (SIGTERM): the journal is closed and `AbortError` thrown. */
    signal?: AbortSignal;
  };
}

export interface WebhookListen {
  host: string;
  port: number;
  publicUrl?: string;
  /** Between catch-up polls (`--catch-up`; the source's default when left out). */
  catchUpIntervalMs?: number;
}

export interface RunningAgent {
  runtime: Runtime;
  reporter: Reporter;
  client: RelayClient;
  journal: RuntimeJournal;
  /** A path whose writability /readyz checks (the local journal's file, or the state directory). */
  journalPath: string;
  /** Webhook mode: the listening source. */
  webhook?: WebhookSource;
}

/** The file (0600, next to the journal) holding the webhook secret this run registered. */
export const WEBHOOK_SECRET_FILE = 'webhook-secret';

/**
 * Webhook mode's source: a fresh secret (kept 0600 in the state directory, for whoever must
 * verify deliveries too, e.g. a proxy), an HTTP server listening before the runtime starts, and
 * the registration `PUT /v1/agents/{key}/webhook`.
 *
 * The registration is `RelayClient.setWebhook`, whose request body (holding the secret) is
 * redacted from `--debug --log-payloads` traces (`secretBody`).
 */
async function webhookSource(
  ctx: CliContext,
  o: AgentOptions,
  client: RelayClient,
  stateDir: string,
  journal: RuntimeJournal,
): Promise<WebhookSource> {
  const listen = o.webhook ?? { host: '127.0.0.1', port: 8787 };
  const [{ WebhookSource }, { writeFileAtomic }] = await Promise.all([
    import('../client/webhook-source.js'),
    import('./files.js'),
  ]);
  const secret = newWebhookSecret();
  // A local journal made the directory; a shared one (a fleet) keeps nothing on this machine but this.
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  await writeFileAtomic(join(stateDir, WEBHOOK_SECRET_FILE), `${secret}\n`, 0o600);
  const source = new WebhookSource({
    client,
    secret,
    host: listen.host,
    port: listen.port,
    ...(listen.publicUrl === undefined ? {} : { publicUrl: listen.publicUrl }),
    ...(listen.catchUpIntervalMs === undefined ? {} : { catchUpIntervalMs: listen.catchUpIntervalMs }),
    clock: ctx.deps.clock,
    // Catch-up polls (messages the webhook does not bring) note their takes like poll mode.
    ...journalTakes(journal),
    register: async (url, key) => {
      await client.setWebhook(url, key);
    },
  });
  try {
    await source.listen();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
      throw new UsageError(`--listen: ${listen.host}:${listen.port} is already in use`, {
        code: 'address_in_use',
        hint: 'pick another port (or 0 for any free one), or stop the other process',
      });
    }
    throw new UsageError(`--listen: cannot listen on ${listen.host}:${listen.port} (${(err as Error).message})`, {
      code: 'invalid_argument',
    });
  }
  return source;
}

export async function startAgent(ctx: CliContext, o: AgentOptions): Promise<RunningAgent> {
  const client = new RelayClient({
    relayUrl: o.relayUrl,
    keypair: o.keypair,
    clock: ctx.deps.clock,
    userAgent: `mrp/${packageVersion()}`,
    ...(o.trace?.http ? { trace: o.trace.http } : {}),
  });
  const contacts = await ctx.contacts();
  const stateDir = join(ctx.home, 'state', o.keypair.publicKey);
  let source: MessageSource | undefined;
  let journal: RuntimeJournal;
  let journalPath: string;
  let mode: string = o.mode;
  let journalLine: string;
  if (o.sharedJournal) {
    const fleet = await joinFleet(ctx, o, (id) => source?.ack(id));
    ({ journal, mode } = fleet);
    journalPath = ctx.home;
    journalLine = `journal: shared (${fleet.journal.location}, runner id ${fleet.journal.runnerId}${fleet.journal.slot === undefined ? '' : `, ws slot ${fleet.journal.slot}`})`;
    ctx.out.info(journalLine);
  } else {
    const local = Journal.open(stateDir, {
      clock: ctx.deps.clock,
      fsync: o.fsync === true,
      relay: o.journalRelay ?? o.relayUrl,
    });
    journal = local;
    journalPath = local.path;
    journalLine = `journal: local (${local.path})`;
  }
  let webhook: WebhookSource | undefined;
  try {
    if (mode === 'webhook') webhook = await webhookSource(ctx, o, client, stateDir, journal);
  } catch (err) {
    await journal.close();
    throw err;
  }
  source = webhook;
  let runtime: Runtime;
  try {
    ({ runtime, source } = assembleRuntime({
      client,
      handler: o.handler,
      mode: mode as AgentMode,
      journal,
      ...(source ? { source } : {}),
      clock: ctx.deps.clock,
      concurrency: o.concurrency,
      timeoutMs: o.timeoutMs,
      graceMs: o.graceMs,
      ...(o.intervalMs === undefined ? {} : { intervalMs: o.intervalMs }),
      ...(o.trace?.ws ? { wsTrace: o.trace.ws } : {}),
      ...(o.maxCrashes === undefined ? {} : { maxCrashes: o.maxCrashes }),
      ...(o.codec === undefined ? {} : { codec: o.codec }),
      resolveRecipient: (to) => resolveRecipient(contacts, to, ctx.contactsPath),
      // ctx.log.debug is printed only with --debug: without it, not even made into an event.
      debugLogs: ctx.out.debugEnabled,
    }));
  } catch (err) {
    await webhook?.close();
    throw err;
  }
  const reporter = await Reporter.create(ctx.out, ctx.deps, { format: o.logFormat, payloads: o.payloads, contacts });
  reporter.attach(runtime, { mode, relay: o.relayUrl, agent: o.keypair.publicKey, handler: o.handlerLabel });
  reporter.line(ctx.out.style.dim(`  ${journalLine}`));
  if (o.sharedJournal) {
    const shared = journal as import('../runtime/shared-journal.js').SharedJournal;
    reporter.event('journal', {
      journal: 'shared',
      location: shared.location,
      runner_id: shared.runnerId,
      mode,
      slot: shared.slot ?? null,
    });
  }
  if (webhook) {
    // The secret itself is never printed: only where it is kept.
    reporter.line(
      ctx.out.style.dim(
        `  webhook: listening on ${webhook.url} · relay posts to ${webhook.deliveryUrl} · secret in ${join(stateDir, WEBHOOK_SECRET_FILE)}`,
      ),
    );
    reporter.event('webhook', {
      listen: webhook.url,
      url: webhook.deliveryUrl,
      secret_file: join(stateDir, WEBHOOK_SECRET_FILE),
    });
  }

  if (o.manifest) {
    const manifest = o.manifest;
    let announced = false;
    const announce = (): void => {
      if (announced) return;
      announced = true;
      applyManifest(client, manifest).then(
        () => {
          reporter.line(ctx.out.style.dim(`  announced ${manifest.file}`));
          reporter.event('announced', { manifest: manifest.file });
        },
        (err: unknown) => {
          const e = toMrpError(err);
          // Try again on the next connection unless the relay refused the manifest itself.
          if (e.kind === 'network' || e.kind === 'timeout') announced = false;
          reporter.problem('announce_failed', e instanceof MrpError ? e : err);
        },
      );
    };
    runtime.on('connected', announce);
  }
  return { runtime, reporter, client, journal, journalPath, ...(webhook ? { webhook } : {}) };
}

/**
 * Opens the shared journal (the driver loads only here) and picks this runner's mode: a WebSocket
 * if a slot is free, else polling — or, with `standby`, waiting until a slot frees up.
 */
async function joinFleet(ctx: CliContext, o: AgentOptions, ack: (id: string) => void) {
  const { SharedJournal } = await import('../runtime/shared-journal.js');
  const shared = o.sharedJournal!;
  const journal = await SharedJournal.open({
    url: shared.url,
    identity: o.keypair.publicKey,
    clock: ctx.deps.clock,
    ack,
    ...(shared.leaseMs === undefined ? {} : { leaseMs: shared.leaseMs }),
  });
  try {
    // Webhook mode needs no slot: the relay posts to the runner (any number of them).
    let mode: 'websocket' | 'poll' | 'webhook' = o.mode === 'webhook' ? 'webhook' : 'poll';
    if (o.mode === 'websocket') {
      let slot = await journal.acquireSlot();
      if (slot === undefined && shared.standby) {
        journal.setMode('standby');
        await journal.tick();
        ctx.out.info(
          `standby: both WebSocket slots of this identity are held; waiting for one (runner id ${journal.runnerId})`,
        );
        slot = await journal.waitForSlot(shared.signal);
      }
      if (slot !== undefined) mode = 'websocket';
    }
    journal.setMode(mode);
    await journal.tick();
    return { journal, mode };
  } catch (err) {
    await journal.close();
    throw err;
  }
}
