/**
 * Benchmark plumbing: child processes that are always cleaned up, temp dirs, JSON-line waits,
 * RSS sampling and percentiles.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const MRP = join(ROOT, 'bin', 'mrp.js');

const children = new Set<ChildProcess>();
const dirs = new Set<string>();

export function tempDir(label: string): string {
  const dir = mkdtempSync(join(tmpdir(), `mrp-bench-${label}-`));
  dirs.add(dir);
  return dir;
}

/** Kills every child still alive and removes temp dirs. Synchronous: safe in 'exit' handlers. */
export function cleanupAll(): void {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  children.clear();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  dirs.clear();
}

export function installCleanup(): void {
  process.on('exit', cleanupAll);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      console.error(`\n${signal}: stopping benchmark`);
      cleanupAll();
      process.exit(130);
    });
  }
}

export interface Child {
  readonly name: string;
  readonly pid: number;
  /** Resolves with the first stdout line that parses as JSON and satisfies `match`. */
  waitForJson(match: (value: Record<string, unknown>) => boolean, timeoutMs: number): Promise<Record<string, unknown>>;
  /** Resolves once the tail of stderr (the last 4,000 characters) matches `pattern` (for non-JSON loggers). */
  waitForStderr(pattern: RegExp, timeoutMs: number): Promise<void>;
  /** Rejects if the process exits before `stop()` was called (race it against the work). */
  crashed(): Promise<never>;
  /** SIGTERM, then SIGKILL after `graceMs`. */
  stop(graceMs?: number): Promise<void>;
}

/** `node <args>` as a benchmark child (see startProcess). */
export function startNode(name: string, args: string[], env: NodeJS.ProcessEnv = {}): Child {
  return startProcess(name, process.execPath, args, env);
}

interface Waiter {
  /** A parsed stdout JSON line, or undefined when stderr grew: true when the wait is over. */
  test: (value: Record<string, unknown> | undefined) => boolean;
  resolve: (v: Record<string, unknown>) => void;
  reject: (e: Error) => void;
}

/**
 * Spawns `command <args>` with piped stdout/stderr. Stdout is always drained (a runner logs three
 * lines per message); lines are only split and parsed while someone waits for one.
 */
export function startProcess(name: string, command: string, args: string[], env: NodeJS.ProcessEnv = {}): Child {
  const proc = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(proc);
  let stderr = '';
  let partial = '';
  let stopping = false;
  let exit: string | undefined;
  const onExit = new Set<() => void>();
  const waiters = new Set<Waiter>();
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  // A command that cannot start (ENOENT) emits 'error' and then, maybe, no 'exit'.
  proc.once('error', (e) => {
    stderr += `\n${e.message}`;
    proc.emit('exit', null, 'spawn error');
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-4000);
    for (const w of waiters) if (w.test(undefined)) w.resolve({});
  });
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    if (waiters.size === 0) return;
    const lines = (partial + d).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        continue;
      }
      if (typeof value !== 'object' || value === null) continue;
      for (const w of waiters)
        if (w.test(value as Record<string, unknown>)) w.resolve(value as Record<string, unknown>);
    }
  });
  proc.once('exit', (code, signal) => {
    children.delete(proc);
    exit = String(code ?? signal);
    for (const f of onExit) f();
    for (const w of waiters)
      w.reject(
        new Error(
          `${name} exited (${code ?? signal}) before the expected output; stderr: ${stderr.trim() || '(empty)'}`,
        ),
      );
  });
  const wait = (test: Waiter['test'], timeoutMs: number): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const w: Waiter = {
        test,
        resolve: (v) => done(() => resolve(v)),
        reject: (e) => done(() => reject(e)),
      };
      const timer = setTimeout(
        () => w.reject(new Error(`${name}: no matching output within ${timeoutMs} ms; stderr: ${stderr.trim()}`)),
        timeoutMs,
      );
      const done = (fn: () => void): void => {
        clearTimeout(timer);
        waiters.delete(w);
        fn();
      };
      if (exit !== undefined) w.reject(new Error(`${name} already exited (${exit}); stderr: ${stderr.trim()}`));
      else waiters.add(w);
    });
  return {
    name,
    pid: proc.pid ?? -1,
    waitForJson(match, timeoutMs) {
      return wait((value) => value !== undefined && match(value), timeoutMs);
    },
    async waitForStderr(pattern, timeoutMs) {
      if (pattern.test(stderr)) return;
      await wait((value) => value === undefined && pattern.test(stderr), timeoutMs);
    },
    crashed() {
      return new Promise<never>((_, reject) => {
        const fire = (): void => {
          if (!stopping)
            reject(new Error(`${name} exited unexpectedly (${exit}); stderr: ${stderr.trim() || '(empty)'}`));
        };
        if (exit === undefined) onExit.add(fire);
        else fire();
      });
    },
    async stop(graceMs = 5000) {
      stopping = true;
      if (proc.exitCode !== null || proc.signalCode !== null || exit !== undefined) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Resident set size of a process in MB (Linux /proc); NaN once it is gone. */
export function rssMb(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : Number.NaN;
  } catch {
    return Number.NaN;
  }
}

/**
 * How a process's resident memory splits (Linux /proc smaps_rollup), in MB: `private` is its own
 * (heap, stacks, written pages: what one more such process costs a host), `shared` is pages it
 * shares with other processes (node's binary and libraries, loaded once per host). Undefined once
 * it is gone or where the file does not exist (not Linux).
 */
export function memorySplitMb(pid: number): { private: number; shared: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const kb = (field: string): number =>
      Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? Number.NaN);
    return {
      private: (kb('Private_Clean') + kb('Private_Dirty')) / 1024,
      shared: (kb('Shared_Clean') + kb('Shared_Dirty')) / 1024,
    };
  } catch {
    return undefined;
  }
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/** The middle value; with an even count, the mean of the two middle ones (2 rounds → their mean). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** CPU time (user + system) a process has used so far, in seconds (Linux /proc, 100 ticks/s). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}
