/**
 * Assembles a running agent (used by `mrp run` and `mrp dev`): relay client, message source,
 * journal, runtime and reporter, plus announcing the manifest once the relay answers.
 */
import { join } from 'node:path';
import { MrpError, toMrpError } from '../core/errors.js';
import type { MessageCodec } from '../client/codec.js';
import { RelayClient } from '../client/http.js';
import { resolveRecipient } from '../protocol/contacts.js';
import type { Keypair } from '../protocol/signing.js';
import type { Handler } from '../runtime/handler.js';
import { assembleRuntime } from '../runtime/assemble.js';
import type { AgentMode } from '../runtime/mode.js';
import type { Journal } from '../runtime/journal.js';
import type { Runtime } from '../runtime/runtime.js';
import type { CliContext } from './context.js';
import { applyManifest, type Manifest } from './manifest.js';
import { type LogFormat, Reporter } from './reporter.js';
import type { Tracers } from './trace.js';
import { packageVersion } from './version.js';

export interface AgentOptions {
  relayUrl: string;
  keypair: Keypair;
  handler: Handler;
  handlerLabel: string;
  mode: AgentMode;
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
  /** How message bodies are opened and sealed (default: pass-through). */
  codec?: MessageCodec;
}

export interface RunningAgent {
  runtime: Runtime;
  reporter: Reporter;
  client: RelayClient;
  journal: Journal;
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
  const { runtime, journal } = assembleRuntime({
    client,
    handler: o.handler,
    mode: o.mode,
    journalDir: join(ctx.home, 'state', o.keypair.publicKey),
    fsync: o.fsync === true,
    clock: ctx.deps.clock,
    concurrency: o.concurrency,
    timeoutMs: o.timeoutMs,
    graceMs: o.graceMs,
    ...(o.intervalMs === undefined ? {} : { intervalMs: o.intervalMs }),
    ...(o.trace?.ws ? { wsTrace: o.trace.ws } : {}),
    ...(o.maxCrashes === undefined ? {} : { maxCrashes: o.maxCrashes }),
    ...(o.codec === undefined ? {} : { codec: o.codec }),
    resolveRecipient: (to) => resolveRecipient(contacts, to, ctx.contactsPath),
  });
  const reporter = await Reporter.create(ctx.out, ctx.deps, { format: o.logFormat, payloads: o.payloads, contacts });
  reporter.attach(runtime, { mode: o.mode, relay: o.relayUrl, agent: o.keypair.publicKey, handler: o.handlerLabel });

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
  return { runtime, reporter, client, journal };
}
