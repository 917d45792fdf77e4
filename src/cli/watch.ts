/**
 * Watching an agent's incoming messages over a WebSocket until Ctrl-C (`mrp tail`, `mrp recv
 * --ws`). stdout carries only messages, as every list of messages is printed (`Output.listMode`:
 * NDJSON with --json or when piped, bare bodies with --quiet, lines on a terminal). Connection
 * events go to stderr with a time (JSON with --json). A relay that never answers is not retried
 * silently: each attempt is shown, with "never connected — check --relay" until one succeeds.
 */

import type { DisconnectInfo } from '../client/session.js';
import { formatDuration } from '../core/duration.js';
import { type MrpError, NetworkError, RelayError } from '../core/errors.js';
import { CLOSE_CODES } from '../protocol/constants.js';
import type { Message } from '../protocol/types.js';
import type { CliContext } from './context.js';
import { exitCodeFor } from './exit.js';
import { MessageOpener, sealedNote, shownJson } from './opener.js';
import { ReportedError } from './program.js';
import { jsonText, messageLine, safeText } from './render.js';
import { shutdownSignals } from './signals.js';

export interface WatchOptions {
  /** Acknowledge each message after printing it (the relay then stops offering it). */
  ack: boolean;
  filter: (m: Message) => boolean;
  /** Print (and ack) exactly this many messages, then exit. */
  count?: number;
}

/**
 * The hint for a relay that never answered (no WebSocket handshake, code 1006) before any
 * connection worked: most often a mistyped --relay. Undefined for other disconnects (auth, 4002).
 */
export function neverConnectedHint(
  relayUrl: string,
  d?: { code?: number | undefined; authError?: unknown },
): string | undefined {
  // Poll mode reports no close code: an HTTP failure before any success gets the hint too.
  if (d && ((d.code !== undefined && d.code !== 1006) || d.authError)) return undefined;
  return `never connected — check --relay (${relayUrl}) and that the relay is running`;
}

/**
 * Why a WebSocket could not be opened the first time, as an error (for one-shot commands, which
 * fail fast instead of retrying): another 2 connections hold the key (4002), authentication was
 * refused, or the relay could not be reached.
 */
export function firstConnectError(d: DisconnectInfo, relayUrl: string): MrpError {
  if (d.code === CLOSE_CODES.tooManyConnections) {
    return new RelayError(
      'too_many_connections',
      'this key already has 2 WebSocket connections to the relay (the most it allows), e.g. a running `mrp run` or `mrp tail`',
      {
        hint: 'stop one of them, or read without peeking: `mrp recv` (marks messages delivered)',
      },
    );
  }
  if (d.authError) return d.authError;
  return new NetworkError(d.explanation, {
    code: /ECONNREFUSED/.test(d.explanation) ? 'connection_refused' : 'network_error',
    hint: neverConnectedHint(relayUrl)!,
  });
}

export async function watchMessages(ctx: CliContext, options: WatchOptions): Promise<void> {
  const client = await ctx.client();
  const contacts = await ctx.contacts();
  const { Session } = await import('../client/session.js');
  const session = new Session({
    url: client.wsUrl,
    keypair: client.keypair,
    clock: ctx.deps.clock,
    ...ctx.sessionTrace,
  });
  const { out } = ctx;
  const es = out.errStyle;
  const now = (): number => ctx.deps.clock.now();
  const mode = out.listMode;
  let printed = 0;
  let everReady = false;
  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let fatal: unknown;
  session.on('ready', ({ reconnected }) => {
    everReady = true;
    out.status(
      reconnected ? 'reconnected' : 'connected',
      { relay: client.relayUrl, agent: client.publicKey, ack: options.ack },
      `${es.green('●')} ${reconnected ? 'reconnected' : 'connected'} to ${client.relayUrl} as ${client.publicKey}${options.ack ? '' : es.dim(' (watching: messages are not acknowledged)')}`,
      now(),
    );
  });
  session.on('disconnect', (d) => {
    const hint = everReady ? undefined : neverConnectedHint(client.relayUrl, d);
    out.status(
      'disconnected',
      {
        reason: d.explanation,
        code: d.code,
        will_reconnect: d.willReconnect,
        delay_ms: d.delayMs,
        ...(hint ? { hint } : {}),
      },
      `${es.yellow('↻')} ${safeText(d.explanation)}${d.willReconnect ? `; reconnecting in ${formatDuration(d.delayMs)}` : ''}${hint ? es.dim(` — ${hint}`) : ''}`,
      now(),
    );
  });
  session.on('fatal', (err) => {
    fatal = err;
    resolveDone();
  });
  const opener = new MessageOpener(client.keypair);
  // Opening is async (encrypted bodies): messages are opened and printed one after another, in
  // the order they arrived; the filter sees the opened message (so --content-type means the
  // plaintext's type). Once the count is reached nothing more is printed or acknowledged: the
  // rest stays for others.
  const full = (): boolean => options.count !== undefined && printed >= options.count;
  const show = async (m: Message): Promise<void> => {
    if (full()) return;
    const shown = await opener.open(m);
    if (full() || !options.filter(shown.message)) return;
    if (mode === 'json') out.jsonLine(shownJson(shown));
    else if (mode === 'bare') {
      out.line(jsonText(shown.message.body));
      if (shown.sealed) out.warn(sealedNote(shown)!);
    } else
      out.line(
        messageLine(
          shown.message,
          { style: out.style, contacts, self: client.publicKey },
          Math.max(40, out.columns - 60),
          shown,
        ),
      );
    if (options.ack) session.ack(m.message_id);
    printed++;
    if (full()) resolveDone();
  };
  let chain: Promise<void> = Promise.resolve();
  session.on('message', (m) => {
    chain = chain
      .then(() => show(m))
      .catch((err: unknown) =>
        out.warn(`${safeText(m.message_id)}: ${safeText(String((err as Error)?.message ?? err))}`),
      );
  });
  const signals = shutdownSignals(ctx.deps);
  try {
    session.start();
    await Promise.race([done, signals.first]);
    // What arrived is finished (opening only computes), and acknowledged while the socket is open.
    await chain;
  } finally {
    signals.dispose();
    await session.close();
  }
  if (fatal) {
    out.error(fatal);
    throw new ReportedError(exitCodeFor(fatal));
  }
}
