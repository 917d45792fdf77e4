#!/usr/bin/env node
// Runs node:test over test/**/*.test.ts with tsx. Node 20's test runner has no glob support,
// so the files are listed here. Extra arguments are passed through (e.g. a file filter:
// `npm test -- relay` runs only test files whose path contains "relay").
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const filters = args.filter((a) => !a.startsWith('-'));
const flags = args.filter((a) => a.startsWith('-'));

const files = readdirSync(join(root, 'test'), { recursive: true })
  .map(String)
  .filter((f) => f.endsWith('.test.ts'))
  .map((f) => relative(root, join(root, 'test', f)))
  .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
  .sort();

if (files.length === 0) {
  console.error(`no test files match ${filters.join(' ')}`);
  process.exit(1);
}

const concurrency = Math.max(2, availableParallelism());
// A safety net, far above what any test file takes (~35 s at most): a file that hangs fails after 5
// minutes instead of holding the whole run (and CI) until it is killed. On Node 20 the limit applies
// to each test file as a whole. A --test-timeout given here wins.
const timeout = flags.some((f) => f.startsWith('--test-timeout')) ? [] : ['--test-timeout=300000'];
const child = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-reporter=spec',
    ...timeout,
    ...flags,
    ...files,
  ],
  { cwd: root, stdio: 'inherit', env: { ...process.env, NO_COLOR: process.env.NO_COLOR ?? '' } },
);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
