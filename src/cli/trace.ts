/**
 * `--debug` / `MRP_DEBUG=http,ws`: one stderr line per HTTP attempt (method, target, status, ms,
 * retry, request id) and per WebSocket frame (direction, type, size, error code). The client
 * reports through its `trace` callbacks; this file decides how that looks. Signature headers and
 * key seeds never reach a trace event; bodies are printed only with `--log-payloads`, and the
 * `auth` frame never (the client leaves its text out).
 */
import type { HttpTrace } from '../client/http.js';
import type { FrameTrace } from '../client/session.js';
import type { Deps } from './deps.js';
import type { Style } from './output.js';
import { jsonText, safeText } from './render.js';

export type TraceCategory = 'http' | 'ws';

export interface Tracers {
  http?: (event: HttpTrace) => void;
  ws?: (event: FrameTrace) => void;
}

const ALL: readonly TraceCategory[] = ['http', 'ws'];

/** Which categories to trace: all with --debug; else those named in MRP_DEBUG (`1`/`all`/`*` = all). */
export function traceCategories(debugFlag: boolean, env: Deps['env']): Set<TraceCategory> {
  if (debugFlag) return new Set(ALL);
  const raw = (env['MRP_DEBUG'] ?? '').trim().toLowerCase();
  if (raw === '' || raw === '0' || raw === 'false') return new Set();
  const names = raw.split(/[\s,]+/).filter(Boolean);
  if (names.some((n) => n === '1' || n === 'all' || n === '*' || n === 'true')) return new Set(ALL);
  return new Set(ALL.filter((c) => names.includes(c)));
}

function ms(n: number): string {
  return n < 10 ? `${n.toFixed(1)} ms` : `${Math.round(n)} ms`;
}

function payload(value: unknown): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  // A body or frame as the relay (or a peer) wrote it: through safeText before a terminal sees it.
  return text === undefined ? '' : safeText(text.length > 2000 ? `${text.slice(0, 1999)}…` : text);
}

/** Stderr printers for the chosen categories. */
export function createTracers(options: {
  categories: Set<TraceCategory>;
  stderr: Deps['stderr'];
  json: boolean;
  payloads: boolean;
  style: Style;
  now: () => number;
}): Tracers {
  const { stderr, json, payloads, style } = options;
  const tracers: Tracers = {};
  if (options.categories.has('http')) {
    tracers.http = (e) => {
      if (json) {
        stderr.write(
          `${jsonText({
            debug: 'http',
            time: new Date(options.now()).toISOString(),
            method: e.method,
            target: e.target,
            status: e.status ?? null,
            ms: Math.round(e.ms * 10) / 10,
            attempt: e.attempt,
            request_id: e.requestId ?? null,
            ...(e.error ? { error: e.error } : {}),
            ...(payloads && e.requestBody !== undefined ? { request_body: e.requestBody } : {}),
            ...(payloads && e.response !== undefined ? { response: e.response } : {}),
          })}\n`,
        );
        return;
      }
      const status =
        e.status === undefined
          ? style.red(safeText(e.error ?? 'no answer'))
          : e.status >= 400
            ? style.yellow(String(e.status))
            : String(e.status);
      const parts = [`debug http ${e.method} ${e.target} → ${status} ${ms(e.ms)}`];
      if (e.attempt > 1) parts.push(`retry ${e.attempt - 1}`);
      if (e.requestId) parts.push(safeText(e.requestId));
      if (e.status !== undefined && e.error) parts.push(safeText(e.error));
      let line = style.gray(parts.join('  '));
      if (payloads && e.requestBody !== undefined) line += `\n${style.gray(`  > ${payload(e.requestBody)}`)}`;
      if (payloads && e.response !== undefined) line += `\n${style.gray(`  < ${payload(e.response)}`)}`;
      stderr.write(`${line}\n`);
    };
  }
  if (options.categories.has('ws')) {
    tracers.ws = (e) => {
      if (json) {
        stderr.write(
          `${jsonText({
            debug: 'ws',
            time: new Date(options.now()).toISOString(),
            direction: e.direction,
            type: e.type,
            bytes: e.bytes,
            ...(e.code ? { code: e.code } : {}),
            ...(payloads && e.text !== undefined ? { frame: e.text } : {}),
          })}\n`,
        );
        return;
      }
      const arrow = e.direction === 'in' ? '←' : '→';
      let line = style.gray(
        `debug ws ${arrow} ${safeText(String(e.type))}  ${e.bytes} B${e.code ? `  ${safeText(e.code)}` : ''}`,
      );
      if (payloads && e.text !== undefined) line += `\n${style.gray(`  ${payload(e.text)}`)}`;
      stderr.write(`${line}\n`);
    };
  }
  return tracers;
}
