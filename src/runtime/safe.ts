/**
 * Turning whatever a handler hands to `ctx.log` into bounded, JSON-safe data. A log call must
 * never fail the handler that makes it: circular structures, BigInts, functions, symbols, throwing
 * getters, revoked proxies and huge values all become something printable, within a byte budget.
 */
import type { JsonValue } from '../protocol/types.js';

export const SAFE_DEFAULTS = {
  /** Nesting kept below the top level. */
  maxDepth: 6,
  /** Entries kept per object or array. */
  maxEntries: 50,
  /** Characters kept per string. */
  maxString: 2048,
  /** Rough size budget of the whole result, in characters. */
  maxTotal: 16_384,
} as const;

interface Budget {
  left: number;
}

function text(value: string, budget: Budget): string {
  const max = Math.min(SAFE_DEFAULTS.maxString, Math.max(16, budget.left));
  budget.left -= Math.min(value.length, max) + 2;
  return value.length > max ? `${value.slice(0, max)}…(${value.length} chars)` : value;
}

function describe(value: unknown): string {
  try {
    if (typeof value === 'function') return `[Function ${value.name || 'anonymous'}]`;
    if (typeof value === 'symbol') return value.toString();
    return Object.prototype.toString.call(value);
  } catch {
    return '[unreadable]';
  }
}

function safe(value: unknown, depth: number, ancestors: Set<object>, budget: Budget): JsonValue {
  if (budget.left <= 0) return '[truncated]';
  switch (typeof value) {
    case 'string':
      return text(value, budget);
    case 'number':
      budget.left -= 8;
      return Number.isFinite(value) ? value : String(value);
    case 'boolean':
      budget.left -= 5;
      return value;
    case 'bigint':
      return text(`${value.toString()}n`, budget);
    case 'undefined':
      budget.left -= 4;
      return null;
    case 'function':
    case 'symbol':
      return text(describe(value), budget);
  }
  if (value === null) return null;
  const obj = value as object;
  if (ancestors.has(obj)) return '[Circular]';
  if (depth >= SAFE_DEFAULTS.maxDepth) return text(describe(obj), budget);
  try {
    if (obj instanceof Error) {
      const code = (obj as { code?: unknown }).code;
      return {
        name: text(obj.name, budget),
        message: text(obj.message, budget),
        ...(typeof code === 'string' ? { code: text(code, budget) } : {}),
      };
    }
    if (obj instanceof Date) return Number.isNaN(obj.getTime()) ? 'Invalid Date' : obj.toISOString();
    if (ArrayBuffer.isView(obj)) return `[${obj.constructor.name} ${obj.byteLength} bytes]`;
    if (obj instanceof Map || obj instanceof Set) return `[${obj.constructor.name} ${obj.size}]`;
    const toJSON = (obj as { toJSON?: unknown }).toJSON;
    ancestors.add(obj);
    try {
      if (typeof toJSON === 'function') return safe(toJSON.call(obj), depth + 1, ancestors, budget);
      if (Array.isArray(obj)) {
        const out: JsonValue[] = [];
        const n = Math.min(obj.length, SAFE_DEFAULTS.maxEntries);
        for (let i = 0; i < n && budget.left > 0; i++) out.push(safe(obj[i], depth + 1, ancestors, budget));
        if (obj.length > out.length) out.push(`…(${obj.length - out.length} more)`);
        return out;
      }
      const out: Record<string, JsonValue> = {};
      const keys = Object.keys(obj);
      let kept = 0;
      for (const key of keys) {
        if (kept >= SAFE_DEFAULTS.maxEntries || budget.left <= 0) break;
        let v: unknown;
        try {
          v = (obj as Record<string, unknown>)[key];
        } catch {
          v = '[unreadable]';
        }
        if (v === undefined || typeof v === 'function' || typeof v === 'symbol') continue;
        out[text(key, budget)] = safe(v, depth + 1, ancestors, budget);
        kept++;
      }
      if (keys.length > kept && kept >= SAFE_DEFAULTS.maxEntries) out['…'] = `${keys.length - kept} more`;
      return out;
    } finally {
      ancestors.delete(obj);
    }
  } catch {
    return '[unreadable]';
  }
}

/** Any value as bounded JSON-safe data (never throws). */
export function safeJson(value: unknown): JsonValue {
  return safe(value, 0, new Set(), { left: SAFE_DEFAULTS.maxTotal });
}

/** `ctx.log` fields as a bounded JSON-safe object (a non-object becomes `{ value }`). */
export function safeFields(fields: unknown): Record<string, JsonValue> {
  const v = safeJson(fields);
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return fields === undefined ? {} : { value: v };
  return v;
}

/** A log message as a bounded string (never throws). */
export function safeText(value: unknown): string {
  let s: string;
  try {
    s = typeof value === 'string' ? value : String(value);
  } catch {
    s = describe(value);
  }
  return s.length > SAFE_DEFAULTS.maxTotal ? `${s.slice(0, SAFE_DEFAULTS.maxTotal)}…(${s.length} chars)` : s;
}
