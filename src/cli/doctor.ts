/**
 * The checks behind `mrp doctor`, in order, each ending in ok / warn / fail / skip with one
 * line of explanation (and what to do). A check that needs an earlier one's result (a key, a
 * reachable relay) is skipped when that one failed, so one cause shows as one failure.
 *
 * Loaded only by the doctor command; it pulls in the WebSocket session, the manifest reader and
 * the handler loader, none of which belong on the CLI's start-up path.
 */

import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join, relative } from 'node:path';
import { MAX_SMALL_ANSWER_BYTES, readBounded } from '../client/bounded.js';
import { fetchHandshakeFailure, RelayClient, TLS_HANDSHAKE_HINT } from '../client/http.js';
import { ConfigError, MrpError } from '../core/errors.js';
import { CLOSE_CODES, PATHS } from '../protocol/constants.js';
import { shortKey } from '../protocol/encoding.js';
import type { Keypair } from '../protocol/signing.js';
import { loadHandler } from '../runtime/handler.js';
import { journalLockHolder } from '../runtime/journal.js';
import type { Settings } from './config.js';
import type { CliContext } from './context.js';
import { loadWatched } from './handler-exit.js';
import { readKeyFile } from './keys.js';
import { projectManifest } from './manifest.js';

export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  summary: string;
  hint?: string;
  details?: Record<string, unknown>;
}

export interface DoctorOptions {
  handler?: string | undefined;
  manifest?: string | undefined;
  /** Per network check. */
  timeoutMs: number;
  /** The running Node version (injectable for tests). */
  nodeVersion?: string;
}

/** From package.json `engines`. */
export const MIN_NODE: readonly [number, number] = [20, 19];

/** Clock offsets: warn from a minute; the relay refuses signatures from 5 minutes. */
export const CLOCK_WARN_MS = 60_000;
export const CLOCK_FAIL_MS = 5 * 60_000;

const checkPermissions = process.platform !== 'win32';

function mode(m: number): string {
  return (m & 0o777).toString(8).padStart(4, '0');
}

function seconds(ms: number): string {
  const s = ms / 1000;
  return `${s >= 0 ? '+' : '−'}${Math.abs(s) >= 10 ? Math.round(Math.abs(s)) : Math.abs(s).toFixed(1)} s`;
}

function isoSeconds(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function failure(name: string, err: unknown): CheckResult {
  const hint = err instanceof MrpError ? err.hint : undefined;
  return {
    name,
    status: 'fail',
    summary: message(err),
    ...(hint ? { hint } : {}),
    ...(err instanceof MrpError ? { details: { code: err.code } } : {}),
  };
}

export function checkNode(version: string): CheckResult {
  const [major = 0, minor = 0] = version.replace(/^v/, '').split('.').map(Number);
  const ok = major > MIN_NODE[0] || (major === MIN_NODE[0] && minor >= MIN_NODE[1]);
  return ok
    ? { name: 'node', status: 'ok', summary: `v${version.replace(/^v/, '')}` }
    : {
        name: 'node',
        status: 'fail',
        summary: `v${version.replace(/^v/, '')} is too old`,
        hint: `install Node.js ${MIN_NODE.join('.')} or newer`,
      };
}

async function checkConfig(ctx: CliContext): Promise<{ result: CheckResult; settings?: Settings }> {
  try {
    const selected = await ctx.selectedContext();
    const settings = await ctx.settings();
    const where = (s: { source: string; origin: string }): string =>
      s.source === 'default' ? 'default' : s.source === 'context' ? s.origin.replace(/ \(.*\)$/, '') : s.origin;
    const summary = `relay ${settings.relay.value} (${where(settings.relay)}) · key ${settings.key_file.value} (${where(settings.key_file)})${selected ? ` · context ${selected.name}` : ''}`;
    return {
      result: {
        name: 'config',
        status: 'ok',
        summary,
        details: { relay: settings.relay, key_file: settings.key_file, context: selected?.name ?? null },
      },
      settings,
    };
  } catch (err) {
    return { result: failure('config', err) };
  }
}

async function checkKey(ctx: CliContext, path: string): Promise<{ result: CheckResult; keypair?: Keypair }> {
  let info: Stats;
  try {
    info = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      return {
        result: {
          name: 'key',
          status: 'fail',
          summary: `no key file at ${path}`,
          hint: 'create one with `mrp keygen`, or point --key / MRP_KEY_FILE at yours',
        },
      };
    }
    return { result: failure('key', err) };
  }
  if (checkPermissions && info.isFile() && (info.mode & 0o077) !== 0) {
    const who = (info.mode & 0o007) !== 0 ? 'every user on this machine' : 'its group';
    return {
      result: {
        name: 'key',
        status: 'fail',
        summary: `${path} is mode ${mode(info.mode)}: ${who} can read or change it (mrp refuses to use it)`,
        hint: `run \`chmod 600 ${path}\``,
        details: { file: path, mode: mode(info.mode) },
      },
    };
  }
  let keypair: Keypair;
  try {
    keypair = (await readKeyFile(path)).keypair;
  } catch (err) {
    return { result: failure('key', err) };
  }
  const details = { file: path, mode: mode(info.mode), public_key: keypair.publicKey };
  // The directory holding the key should be private too (ssh's rule for ~/.ssh).
  const dir = dirname(path);
  const dirInfo = await stat(dir).catch(() => undefined);
  if (checkPermissions && dirInfo && dir === ctx.home && (dirInfo.mode & 0o077) !== 0) {
    return {
      result: {
        name: 'key',
        status: 'warn',
        summary: `${keypair.publicKey} · but ${dir} is mode ${mode(dirInfo.mode)}`,
        hint: `run \`chmod 700 ${dir}\``,
        details,
      },
      keypair,
    };
  }
  return {
    result: { name: 'key', status: 'ok', summary: `${keypair.publicKey} (${path}, mode ${mode(info.mode)})`, details },
    keypair,
  };
}

interface HealthProbe {
  result: CheckResult;
  /** Local time at the middle of the request, and the relay's time from its `Date` header. */
  localMs?: number;
  relayMs?: number;
}

async function checkRelay(ctx: CliContext, relayUrl: string, timeoutMs: number): Promise<HealthProbe> {
  const url = new URL(relayUrl);
  const target = `${url.pathname.replace(/\/+$/, '')}${PATHS.health}`;
  const started = performance.now();
  const before = ctx.deps.clock.now();
  let res: Response;
  let body: unknown;
  try {
    res = await fetch(`${url.origin}${target}`, {
      signal: AbortSignal.timeout(timeoutMs),
      headers: { Accept: 'application/json' },
    });
    // Bounded: whatever answers at the relay's address may answer on and on (a cut answer does
    // not parse, and is said as no health record).
    const { text } = await readBounded(res, MAX_SMALL_ANSWER_BYTES);
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const tls = fetchHandshakeFailure(err);
    const why =
      (err as Error).name === 'TimeoutError'
        ? `no answer within ${timeoutMs} ms`
        : (tls ?? cause?.code ?? cause?.message ?? message(err));
    ctx.tracers.http?.({
      method: 'GET',
      target,
      status: undefined,
      ms: performance.now() - started,
      attempt: 1,
      requestId: undefined,
      error: cause?.code ?? 'network_error',
      requestBody: undefined,
      response: undefined,
    });
    return {
      result: {
        name: 'relay',
        status: 'fail',
        summary: `cannot reach ${relayUrl} (${why})`,
        hint:
          cause?.code === 'ECONNREFUSED'
            ? 'is the relay running? (`mrp relay` starts one locally)'
            : tls
              ? TLS_HANDSHAKE_HINT
              : 'check the relay URL (--relay, MRP_RELAY_URL, context or config) and the network',
      },
    };
  }
  const after = ctx.deps.clock.now();
  const ms = performance.now() - started;
  ctx.tracers.http?.({
    method: 'GET',
    target,
    status: res.status,
    ms,
    attempt: 1,
    requestId: res.headers.get('x-request-id') ?? undefined,
    error: undefined,
    requestBody: undefined,
    response: body,
  });
  const health = (body ?? {}) as { status?: unknown; version?: unknown; timestamp?: unknown };
  // The Date header has whole seconds: the relay's clock was somewhere in [date, date + 1 s).
  const date = Date.parse(res.headers.get('date') ?? '');
  const stamp = typeof health.timestamp === 'string' ? Date.parse(health.timestamp) : NaN;
  // A time a Date can hold (±8.64e15 ms): a relay's header at the very end of that range, plus the
  // 500 ms, would make toISOString throw and take every check after this one down with it.
  const usable = (ms: number): boolean => Number.isFinite(ms) && Math.abs(ms) <= 8.64e15;
  const relayMs = usable(date) ? Math.min(date + 500, 8.64e15) : usable(stamp) ? stamp : undefined;
  const probe = { localMs: (before + after) / 2, ...(relayMs === undefined ? {} : { relayMs }) };
  if (!res.ok)
    return {
      ...probe,
      result: {
        name: 'relay',
        status: 'fail',
        summary: `${relayUrl} answered HTTP ${res.status} to ${PATHS.health}`,
        hint: 'is this an MRP relay URL?',
      },
    };
  const details = {
    url: relayUrl,
    status: health.status ?? null,
    version: health.version ?? null,
    latency_ms: Math.round(ms),
  };
  const summary = `${relayUrl} · ${String(health.status ?? '?')} · version ${String(health.version ?? '?')} · ${Math.round(ms)} ms`;
  if (health.status !== 'ok')
    return {
      ...probe,
      result: { name: 'relay', status: 'warn', summary, hint: 'the relay reports it is not fully healthy', details },
    };
  return { ...probe, result: { name: 'relay', status: 'ok', summary, details } };
}

export function checkClock(localMs: number | undefined, relayMs: number | undefined): CheckResult {
  if (localMs === undefined || relayMs === undefined)
    return { name: 'clock', status: 'skip', summary: 'the relay sent no Date header' };
  const offset = localMs - relayMs;
  const details = {
    offset_ms: Math.round(offset),
    local: new Date(localMs).toISOString(),
    relay: new Date(relayMs).toISOString(),
  };
  const summary = `offset ${seconds(offset)} (this machine ${isoSeconds(localMs)}, relay ${isoSeconds(relayMs)})`;
  const abs = Math.abs(offset);
  if (abs >= CLOCK_FAIL_MS)
    return {
      name: 'clock',
      status: 'fail',
      summary,
      hint: 'the relay refuses signatures more than 5 minutes off; sync this clock (NTP)',
      details,
    };
  if (abs >= CLOCK_WARN_MS)
    return {
      name: 'clock',
      status: 'warn',
      summary,
      hint: 'more than a minute off; sync this clock (NTP) before it reaches 5 minutes',
      details,
    };
  return { name: 'clock', status: 'ok', summary, details };
}

/** A real WebSocket handshake: auth frame, auth_result, close 1000. Also answers "are the key's sockets taken?". */
async function checkAuth(
  ctx: CliContext,
  relayUrl: string,
  keypair: Keypair,
  timeoutMs: number,
): Promise<CheckResult[]> {
  const { Session } = await import('../client/session.js');
  const wsUrl = new RelayClient({ relayUrl, keypair }).wsUrl;
  const session = new Session({
    url: wsUrl,
    keypair,
    clock: ctx.deps.clock,
    authTimeoutMs: timeoutMs,
    ...ctx.sessionTrace,
  });
  type Outcome =
    | { kind: 'ready' }
    | { kind: 'closed'; code: number; explanation: string; authCode?: string }
    | { kind: 'fatal'; err: MrpError }
    | { kind: 'timeout' };
  let timer: NodeJS.Timeout | undefined;
  const outcome = await new Promise<Outcome>((resolve) => {
    session.once('ready', () => resolve({ kind: 'ready' }));
    session.once('disconnect', (d) =>
      resolve({
        kind: 'closed',
        code: d.code,
        explanation: d.explanation,
        ...(d.authError ? { authCode: d.authError.code } : {}),
      }),
    );
    session.once('fatal', (err) => resolve({ kind: 'fatal', err }));
    timer = setTimeout(() => resolve({ kind: 'timeout' }), timeoutMs + 1000);
    session.start();
  });
  clearTimeout(timer);
  await session.close();
  const who = shortKey(keypair.publicKey);
  switch (outcome.kind) {
    case 'ready':
      return [
        { name: 'auth', status: 'ok', summary: `authenticated as ${who} on ${wsUrl}; closed cleanly (1000)` },
        { name: 'sockets', status: 'ok', summary: 'a WebSocket connection was free for this key' },
      ];
    case 'closed':
      if (outcome.code === CLOSE_CODES.tooManyConnections) {
        return [
          { name: 'auth', status: 'ok', summary: `signature accepted for ${who}` },
          {
            name: 'sockets',
            status: 'warn',
            summary: 'other processes hold both WebSocket connections this key may open (close 4002)',
            hint: 'a new `mrp run` with this key would wait; stop a `mrp run`/`tail`/`recv --ws` using it, or use another key',
          },
        ];
      }
      return [
        {
          name: 'auth',
          status: 'fail',
          summary: outcome.explanation,
          ...(outcome.authCode === 'timestamp_expired' ? { hint: "fix this machine's clock (NTP)" } : {}),
          details: { close_code: outcome.code, ...(outcome.authCode ? { code: outcome.authCode } : {}) },
        },
        { name: 'sockets', status: 'skip', summary: 'not authenticated' },
      ];
    case 'fatal':
      return [failure('auth', outcome.err), { name: 'sockets', status: 'skip', summary: 'not authenticated' }];
    case 'timeout':
      return [
        { name: 'auth', status: 'fail', summary: `no auth_result from ${wsUrl} within ${timeoutMs} ms` },
        { name: 'sockets', status: 'skip', summary: 'not authenticated' },
      ];
  }
}

function checkJournal(ctx: CliContext, publicKey: string): CheckResult {
  const dir = join(ctx.home, 'state', publicKey);
  const pid = journalLockHolder(dir);
  if (pid === undefined) return { name: 'journal', status: 'ok', summary: `not locked (${dir})` };
  return {
    name: 'journal',
    status: 'warn',
    summary: `locked by pid ${pid}: an \`mrp run\` with this key is running on this machine`,
    hint: 'a second `mrp run` with this key here would refuse to start; stop the first, or use another key',
    details: { pid, dir },
  };
}

async function checkManifest(ctx: CliContext, file: string | undefined): Promise<CheckResult> {
  try {
    const manifest = await projectManifest(ctx, file);
    if (!manifest)
      return { name: 'manifest', status: 'skip', summary: 'no mrp.yaml here (--manifest <file> checks another)' };
    const shown = relative(ctx.deps.cwd, manifest.file) || manifest.file;
    const caps = manifest.patch.capabilities?.length ?? 0;
    return {
      name: 'manifest',
      status: 'ok',
      summary: `${shown} is valid (${caps} capabilit${caps === 1 ? 'y' : 'ies'})`,
    };
  } catch (err) {
    return failure('manifest', err);
  }
}

async function checkHandler(ctx: CliContext, path: string | undefined, timeoutMs: number): Promise<CheckResult> {
  if (path === undefined)
    return { name: 'handler', status: 'skip', summary: 'pass --handler <file> to check that it loads' };
  try {
    // Loading runs the module's top-level code: a process.exit there fails this check (instead of
    // ending doctor with its code); a top-level await that does not settle within --timeout too.
    let timer: ReturnType<typeof ctx.deps.clock.setTimeout> | undefined;
    const stalled = new Promise<never>((_, reject) => {
      timer = ctx.deps.clock.setTimeout(
        () =>
          reject(
            new ConfigError('handler_load', `${path} did not finish loading within ${timeoutMs} ms`, {
              hint: 'check the `await`s at the top level of the handler module (and of the modules it imports)',
            }),
          ),
        timeoutMs,
      );
    });
    const loaded = await Promise.race([
      loadWatched(() => loadHandler(path, { cwd: ctx.deps.cwd }), {
        onExitCall: 'throw',
        report: (err) => ctx.out.error(err),
      }),
      stalled,
    ]).finally(() => timer?.cancel());
    return {
      name: 'handler',
      status: 'ok',
      summary: `${relative(ctx.deps.cwd, loaded.file) || loaded.file} loads (export: ${loaded.exportName})`,
    };
  } catch (err) {
    return failure('handler', err);
  }
}

/** Runs every check in order; `report` sees each result as soon as it is known. */
export async function runChecks(
  ctx: CliContext,
  o: DoctorOptions,
  report: (r: CheckResult) => void,
): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  const add = (r: CheckResult): void => {
    results.push(r);
    report(r);
  };
  const skip = (name: string, why: string): void => add({ name, status: 'skip', summary: why });

  add(checkNode(o.nodeVersion ?? process.versions.node));
  const config = await checkConfig(ctx);
  add(config.result);
  const settings = config.settings;
  const key = settings ? await checkKey(ctx, settings.key_file.value) : undefined;
  if (key) add(key.result);
  else skip('key', 'no settings');
  let relayUp = false;
  if (settings) {
    const probe = await checkRelay(ctx, settings.relay.value, o.timeoutMs);
    add(probe.result);
    relayUp = probe.result.status !== 'fail';
    if (relayUp) add(checkClock(probe.localMs, probe.relayMs));
    else skip('clock', 'relay unreachable');
  } else {
    skip('relay', 'no settings');
    skip('clock', 'no settings');
  }
  if (key?.keypair && relayUp && settings) {
    for (const r of await checkAuth(ctx, settings.relay.value, key.keypair, o.timeoutMs)) add(r);
  } else {
    const why = key?.keypair ? 'relay unreachable' : 'no usable key';
    skip('auth', why);
    skip('sockets', why);
  }
  if (key?.keypair) add(checkJournal(ctx, key.keypair.publicKey));
  else skip('journal', 'no usable key');
  add(await checkManifest(ctx, o.manifest));
  add(await checkHandler(ctx, o.handler, o.timeoutMs));
  return results;
}
