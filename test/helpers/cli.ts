/** In-process CLI harness: captured streams, a temp MRP_HOME, real files. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { Deps, SignalName } from '../../src/cli/deps.js';
import { main } from '../../src/cli/main.js';
import { type Clock, systemClock } from '../../src/core/clock.js';

export class Capture {
  text = '';
  isTTY: boolean;
  columns = 120;
  readonly #waiters: Array<{ text: string; resolve: () => void }> = [];
  constructor(isTTY = false) {
    this.isTTY = isTTY;
  }
  write(chunk: string): boolean {
    this.text += chunk;
    for (const w of [...this.#waiters]) {
      if (!this.text.includes(w.text)) continue;
      this.#waiters.splice(this.#waiters.indexOf(w), 1);
      w.resolve();
    }
    return true;
  }
  /** Resolves as soon as `text` has been written (at once if it already was). */
  waitFor(text: string): Promise<void> {
    if (this.text.includes(text)) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push({ text, resolve }));
  }
  lines(): string[] {
    return this.text.split('\n').filter((l) => l !== '');
  }
}

/** A fresh temp directory, removed when the test ends. */
export async function tempDir(t: TestContext, prefix = 'mrp-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

export interface TestDeps extends Deps {
  stdout: Capture;
  stderr: Capture;
  /** Delivers a signal to whatever subscribed through `onSignal`. */
  raise(signal: SignalName): void;
}

export function testDeps(options: {
  home: string;
  cwd?: string;
  env?: Record<string, string | undefined>;
  clock?: Clock;
  stdin?: string;
  tty?: boolean;
}): TestDeps {
  const handlers = new Map<SignalName, Set<() => void>>();
  const stdinText = options.stdin;
  const stdin = {
    isTTY: stdinText === undefined && options.tty === true,
    async *[Symbol.asyncIterator]() {
      if (stdinText !== undefined) yield Buffer.from(stdinText);
    },
  };
  return {
    stdout: new Capture(options.tty ?? false),
    stderr: new Capture(options.tty ?? false),
    stdin,
    env: { MRP_HOME: options.home, NO_COLOR: '1', ...options.env },
    cwd: options.cwd ?? options.home,
    homedir: options.home,
    clock: options.clock ?? systemClock,
    onSignal(signal, handler) {
      let set = handlers.get(signal);
      if (!set) handlers.set(signal, (set = new Set()));
      set.add(handler);
      return () => void set.delete(handler);
    },
    onUncaught() {
      return () => undefined;
    },
    raise(signal) {
      for (const h of [...(handlers.get(signal) ?? [])]) h();
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  deps: TestDeps;
}

/** Runs `mrp <argv>` in process. */
export async function runCli(argv: string[], deps: TestDeps): Promise<CliResult> {
  const before = { out: deps.stdout.text.length, err: deps.stderr.text.length };
  const code = await main(argv, deps);
  return { code, stdout: deps.stdout.text.slice(before.out), stderr: deps.stderr.text.slice(before.err), deps };
}

/** One JSON document per line (how lists of messages and agents are printed when piped or with --json). */
export function ndjson(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
