/**
 * Watching an agent's incoming messages over a WebSocket until Ctrl-C (`mrp tail`, `mrp recv
 * --ws`): connection drops and returns are shown on stderr; stdout carries only messages (pretty
 * lines on a terminal, NDJSON otherwise).
 */
import { formatDuration } from '../core/duration.js';
import type { Message } from '../protocol/types.js';
import type { CliContext } from './context.js';
import { exitCodeFor } from './exit.js';
import { ReportedError } from './program.js';
import { messageLine } from './render.js';
import { shutdownSignals } from './signals.js';

export interface WatchOptions {
  /** Acknowledge each message after printing it (the relay then stops offering it). */
  ack: boolean;
  filter: (m: Message) => boolean;
  /** Stop after this many messages (tests, scripts). */
  count?: number;
}

export async function watchMessages(ctx: CliContext, options: WatchOptions): Promise<void> {
  const client = await ctx.client();
  const contacts = await ctx.contacts();
  const { Session } = await import('../client/session.js');
  const session = new Session({ url: client.wsUrl, keypair: client.keypair, clock: ctx.deps.clock, ...ctx.sessionTrace });
  const { style } = ctx.out;
  const ndjson = ctx.globals.json || !ctx.out.isTTY;
  const status = (text: string): void => {
    if (!ctx.globals.quiet) ctx.deps.stderr.write(`${text}\n`);
  };
  let printed = 0;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let fatal: unknown;
  session.on('ready', ({ reconnected }) =>
    status(`${ctx.out.errStyle.green('●')} ${reconnected ? 'reconnected' : 'connected'} to ${client.relayUrl} as ${client.publicKey}${options.ack ? '' : ctx.out.errStyle.dim(' (watching: messages are not acknowledged)')}`),
  );
  session.on('disconnect', (d) => status(`${ctx.out.errStyle.yellow('↻')} ${d.explanation}${d.willReconnect ? `; reconnecting in ${formatDuration(d.delayMs)}` : ''}`));
  session.on('fatal', (err) => {
    fatal = err;
    resolveDone();
  });
  session.on('message', (m) => {
    if (!options.filter(m)) return;
    if (ndjson) ctx.out.jsonLine(m);
    else ctx.out.line(messageLine(m, { style, contacts, self: client.publicKey }, Math.max(40, ctx.out.columns - 60)));
    if (options.ack) session.ack(m.message_id);
    printed++;
    if (options.count !== undefined && printed >= options.count) resolveDone();
  });
  const signals = shutdownSignals(ctx.deps);
  try {
    session.start();
    await Promise.race([done, signals.first]);
  } finally {
    signals.dispose();
    await session.close();
  }
  if (fatal) {
    ctx.out.error(fatal);
    throw new ReportedError(exitCodeFor(fatal));
  }
}
