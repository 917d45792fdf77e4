/**
 * Enforces the layering of docs/architecture.md on every src/**\/*.ts file:
 *
 *   core ← protocol ← client ← runtime ← cli        protocol ← relay ← (cli, dynamically)
 *
 * plus: relay and client never import each other; commands never import other commands; only the
 * relay and dev commands load the relay, and only with a dynamic import(); core and protocol stay
 * pure (no I/O modules); heavy npm packages never sit on the CLI's static start-up path, and core
 * and protocol (which every layer loads) reach heavy packages only through import().
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = fileURLToPath(new URL('../src', import.meta.url));

export interface ImportRef {
  specifier: string;
  dynamic: boolean;
  typeOnly: boolean;
}

/** Import specifiers of a TypeScript source (static, re-exports, dynamic, type-only marked). */
export function importsOf(source: string): ImportRef[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
  const refs: ImportRef[] = [];
  const staticRe = /(?:^|[;\n])\s*(import|export)\s+(type\s+)?(?:[\w*{}\s,$]+?\s+from\s+)?['"]([^'"]+)['"]/g;
  for (const m of code.matchAll(staticRe)) {
    refs.push({ specifier: m[3]!, dynamic: false, typeOnly: m[2] !== undefined });
  }
  for (const m of code.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    refs.push({ specifier: m[1]!, dynamic: true, typeOnly: false });
  }
  return refs;
}

type Layer = 'core' | 'protocol' | 'client' | 'relay' | 'runtime' | 'cli' | 'index' | 'testing';

const ALLOWED: Record<Layer, Layer[]> = {
  core: ['core'],
  protocol: ['core', 'protocol'],
  client: ['core', 'protocol', 'client'],
  relay: ['core', 'protocol', 'relay'],
  runtime: ['core', 'protocol', 'client', 'runtime'],
  cli: ['core', 'protocol', 'client', 'runtime', 'cli'],
  index: ['core', 'protocol', 'client', 'runtime'],
  // `mrp/testing` (src/testing.ts): a public entry point like `mrp/relay`, so it may load the relay.
  testing: ['core', 'protocol', 'client', 'runtime', 'relay'],
};

/** npm packages each layer may use. */
const PACKAGES: Record<Layer, string[]> = {
  core: [],
  protocol: ['@noble/ed25519', '@hpke/core', '@hpke/chacha20poly1305', '@noble/curves'],
  client: ['ws'],
  relay: ['ws', 'better-sqlite3', 'aws4fetch', 'postgres'],
  // postgres: only runtime/shared-journal.ts (the opt-in shared journal), loaded with import().
  runtime: ['jiti', 'esbuild', 'postgres'],
  cli: ['commander', 'chalk', 'ora', 'yaml', 'ws'],
  index: [],
  testing: [],
};

/** Node modules that do I/O; core and protocol must not use them. */
const IO_MODULES =
  /^node:(fs|fs\/promises|net|http|https|http2|tls|dgram|child_process|cluster|worker_threads|os|process|readline)$/;

/** Packages that must never load when the CLI starts (they load inside the commands that need them). */
const HEAVY = [
  'ws',
  'ora',
  'yaml',
  'jiti',
  'esbuild',
  'better-sqlite3',
  'postgres',
  'chalk',
  '@hpke/core',
  '@hpke/chacha20poly1305',
  '@noble/curves',
];

export interface SourceFile {
  path: string; // relative to src, e.g. "cli/commands/send.ts"
  text: string;
}

function layerOf(path: string): Layer {
  const top = path.split('/')[0]!;
  if (top === 'index.ts') return 'index';
  if (top === 'testing.ts') return 'testing';
  if (['core', 'protocol', 'client', 'relay', 'runtime', 'cli'].includes(top)) return top as Layer;
  throw new Error(`${path} is in no known layer`);
}

function resolveRelative(from: string, specifier: string): string {
  return relative(SRC, resolve(SRC, dirname(from), specifier)).replace(/\.js$/, '.ts');
}

/** `vendor/<name>/…` (a patched copy of an npm package, outside src): that package's name. */
function vendoredPackage(target: string): string | undefined {
  return /^\.\.\/vendor\/([^/]+)\//.exec(target)?.[1];
}

function packageName(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

/** Every rule violation in a set of files, one line each. */
export function violations(files: SourceFile[]): string[] {
  const out: string[] = [];
  for (const file of files) {
    const layer = layerOf(file.path);
    for (const ref of importsOf(file.text)) {
      const where = `${file.path} imports '${ref.specifier}'`;
      const vendored = ref.specifier.startsWith('.')
        ? vendoredPackage(resolveRelative(file.path, ref.specifier))
        : undefined;
      if (vendored !== undefined) {
        if (!ref.typeOnly && !PACKAGES[layer].includes(vendored)) {
          out.push(`${where}: ${layer} may not use the package ${vendored} (vendored)`);
        }
        if ((layer === 'core' || layer === 'protocol') && HEAVY.includes(vendored) && !ref.dynamic && !ref.typeOnly) {
          out.push(`${where}: ${vendored} is heavy; ${layer} may load it only with import()`);
        }
      } else if (ref.specifier.startsWith('.')) {
        const target = resolveRelative(file.path, ref.specifier);
        const targetLayer = layerOf(target);
        if (targetLayer === 'relay' && layer !== 'relay' && layer !== 'testing') {
          const ok = ref.typeOnly || (ref.dynamic && /^cli\/commands\/(relay|dev)\.ts$/.test(file.path));
          if (!ok) out.push(`${where}: only cli/commands/relay.ts and dev.ts may load the relay, with import()`);
          continue;
        }
        if (!ALLOWED[layer].includes(targetLayer) && !ref.typeOnly) {
          out.push(`${where}: ${layer} may not depend on ${targetLayer}`);
        }
        if (!ALLOWED[layer].includes(targetLayer) && ref.typeOnly && layer !== 'cli') {
          out.push(`${where}: ${layer} may not depend on ${targetLayer}, not even for types`);
        }
        if (file.path.startsWith('cli/commands/') && target.startsWith('cli/commands/')) {
          out.push(`${where}: commands never import other commands`);
        }
        if (file.path.endsWith('/index.ts') && target.endsWith('/index.ts') && file.path !== target) {
          out.push(`${where}: no barrel files besides the two entry points`);
        }
      } else if (ref.specifier.startsWith('node:')) {
        if ((layer === 'core' || layer === 'protocol') && IO_MODULES.test(ref.specifier) && !ref.typeOnly) {
          out.push(`${where}: ${layer} is pure and must not do I/O`);
        }
      } else if (!ref.typeOnly) {
        const pkg = packageName(ref.specifier);
        if (!PACKAGES[layer].includes(pkg)) out.push(`${where}: ${layer} may not use the package ${pkg}`);
        // Everything loads core and protocol, so a heavy package there must wait for import().
        if ((layer === 'core' || layer === 'protocol') && HEAVY.includes(pkg) && !ref.dynamic) {
          out.push(`${where}: ${pkg} is heavy; ${layer} may load it only with import()`);
        }
      } else if (!ref.specifier.startsWith('node:')) {
        // Type-only package imports are free.
      }
    }
  }
  return out;
}

/** Packages reachable from `entry` through static, non-type imports. */
export function staticPackages(files: SourceFile[], entry: string): Set<string> {
  const byPath = new Map(files.map((f) => [f.path, f]));
  const seen = new Set<string>();
  const packages = new Set<string>();
  const stack = [entry];
  while (stack.length) {
    const path = stack.pop()!;
    if (seen.has(path)) continue;
    seen.add(path);
    const file = byPath.get(path);
    if (!file) continue;
    for (const ref of importsOf(file.text)) {
      if (ref.dynamic || ref.typeOnly) continue;
      if (ref.specifier.startsWith('.')) {
        const target = resolveRelative(path, ref.specifier);
        const vendored = vendoredPackage(target);
        if (vendored !== undefined) packages.add(vendored);
        else stack.push(target);
      } else if (!ref.specifier.startsWith('node:')) packages.add(packageName(ref.specifier));
    }
  }
  return packages;
}

function withoutComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

function sourceFiles(): SourceFile[] {
  return readdirSync(SRC, { recursive: true })
    .map(String)
    .filter((p) => p.endsWith('.ts'))
    .map((p) => ({ path: p.split('\\').join('/'), text: readFileSync(join(SRC, p), 'utf8') }));
}

describe('architecture', () => {
  const files = sourceFiles();

  it('finds the source tree', () => {
    assert.ok(files.length > 10);
    for (const layer of ['core', 'protocol', 'cli'])
      assert.ok(
        files.some((f) => f.path.startsWith(`${layer}/`)),
        layer,
      );
  });

  it("docs/architecture.md's module map names every source file", () => {
    const doc = readFileSync(fileURLToPath(new URL('../docs/architecture.md', import.meta.url)), 'utf8');
    const map = doc.slice(doc.indexOf('## 2. Module map'), doc.indexOf('\n## 3.'));
    const section = (layer: string): string => {
      const start = map.indexOf(`### \`src/${layer}/\``);
      if (start < 0) return '';
      const end = map.indexOf('\n### `src/', start + 1);
      return map.slice(start, end < 0 ? undefined : end);
    };
    const missing: string[] = [];
    for (const f of files) {
      const slash = f.path.indexOf('/');
      if (slash < 0) {
        if (!map.includes(`\`src/${f.path}\``)) missing.push(f.path);
        continue;
      }
      const [layer, rest] = [f.path.slice(0, slash), f.path.slice(slash + 1)];
      const text = section(layer);
      const base = rest.slice(rest.lastIndexOf('/') + 1);
      const dir = rest.includes('/') ? rest.slice(0, rest.lastIndexOf('/') + 1) : '';
      const named =
        text.includes(`\`${rest}\``) ||
        (dir === ''
          ? text.includes(`\`${base}\``)
          : text.split('\n').some((l) => l.includes(dir) && l.includes(`\`${base}\``)));
      if (!named) missing.push(f.path);
    }
    assert.deepEqual(missing, [], 'add a line for each to the module map (docs/architecture.md §2)');
  });

  it("docs/protocol.md's pointers (→ `src/…`: `symbol`) name files and symbols that exist", () => {
    const doc = readFileSync(fileURLToPath(new URL('../docs/protocol.md', import.meta.url)), 'utf8');
    const wrong: string[] = [];
    for (const m of doc.matchAll(/`(src\/[\w/.-]+\.ts)`(?::\s*((?:`[^`]+`(?:,\s*|\s+and\s+)?)+))?/g)) {
      const path = m[1]!;
      const file = files.find((f) => `src/${f.path}` === path);
      if (!file) {
        wrong.push(`${path} (no such file)`);
        continue;
      }
      for (const [, symbol] of (m[2] ?? '').matchAll(/`([^`]+)`/g)) {
        if (symbol!.startsWith('src/')) continue;
        const parts = symbol!.split(/[(\s[]/)[0]!.split(/[#.]/);
        if (parts.some((part) => part !== '' && !file.text.includes(part))) wrong.push(`${path}: ${symbol}`);
      }
    }
    assert.deepEqual(wrong, [], 'point these at where the choice now lives');
  });

  it('every import goes the allowed way', () => {
    assert.deepEqual(violations(files), []);
  });

  it('the CLI starts without heavy packages', () => {
    // `main.ts` loads the one command a command line names (`import()`); help loads them all. So
    // the start-up path is main.ts and every command module, each walked on its own.
    const commands = files.filter((f) => /^cli\/commands\/[^/]+\.ts$/.test(f.path)).map((f) => f.path);
    assert.ok(commands.length >= 20, 'sanity: the command modules are found');
    for (const entry of ['cli/main.ts', ...commands]) {
      const loaded = staticPackages(files, entry);
      assert.deepEqual(
        HEAVY.filter((p) => loaded.has(p)),
        [],
        entry,
      );
      assert.ok(loaded.has('commander'), `sanity: the walk from ${entry} sees static packages`);
    }
  });

  it('the library entry point never reaches the CLI or the relay', () => {
    const entry = files.find((f) => f.path === 'index.ts');
    assert.ok(entry, 'src/index.ts exists');
    const loaded = staticPackages(files, 'index.ts');
    for (const pkg of [
      'commander',
      'chalk',
      'ora',
      'better-sqlite3',
      '@hpke/core',
      '@hpke/chacha20poly1305',
      '@noble/curves',
    ]) {
      assert.ok(!loaded.has(pkg), pkg);
    }
    assert.ok(loaded.has('ws'), 'sanity: the walk sees the client');
  });

  it('mrp/testing loads the relay only when a test relay is created', () => {
    const entry = files.find((f) => f.path === 'testing.ts');
    assert.ok(entry, 'src/testing.ts exists');
    const loaded = staticPackages(files, 'testing.ts');
    assert.ok(!loaded.has('better-sqlite3'), 'invoke alone must not load SQLite');
    assert.deepEqual(
      violations([{ path: 'testing.ts', text: "import { createRelay } from './relay/server.js';" }]),
      [],
    );
    assert.deepEqual(violations([{ path: 'testing.ts', text: "import { main } from './cli/main.js';" }]).length, 1);
  });

  // docs/architecture.md rule 4: sources hand batches over; the runtime never asks which one it has.
  it('the runtime knows no transport', () => {
    const runtime = files.find((f) => f.path === 'runtime/runtime.ts');
    assert.ok(runtime, 'src/runtime/runtime.ts exists');
    const imports = importsOf(runtime.text).map((r) => r.specifier);
    for (const banned of ['client/poller.js', 'client/session.js']) {
      assert.ok(!imports.some((s) => s.endsWith(banned)), `runtime.ts imports ${banned}`);
    }
    const code = withoutComments(runtime.text);
    assert.ok(!code.includes('.kind ==='), 'runtime.ts branches on a `.kind`');
    for (const word of [/\bSession\b/, /\bWebSocket\b/, /\.poll\(/, /\bPollSource\b/, /\bWebSocketSource\b/]) {
      assert.ok(!word.test(code), `runtime.ts mentions ${word.source}`);
    }
  });

  // Frames a client writes are built in protocol/frames.ts only (no JSON splicing elsewhere).
  it('client frames are encoded in one place', () => {
    const spliced =
      /['"`]\{"type":"(auth|ack|send|ping|pong)"|\{\s*type\s*:\s*['"](auth|ack|send|ping|pong)['"]|JSON\.stringify\(\s*\{\s*type\s*:/;
    const offenders = files
      .filter((f) => f.path.startsWith('client/') || f.path.startsWith('runtime/'))
      .filter((f) => spliced.test(withoutComments(f.text)))
      .map((f) => f.path);
    assert.deepEqual(offenders, []);
  });

  // The checker itself must be able to fail.
  it('catches a lower layer importing a higher one', () => {
    const bad: SourceFile[] = [
      { path: 'core/x.ts', text: "import { y } from '../protocol/y.js';" },
      {
        path: 'protocol/y.ts',
        text: "export { run } from '../runtime/run.js';\nimport { readFile } from 'node:fs/promises';",
      },
      { path: 'client/c.ts', text: "import { createRelay } from '../relay/index.js';" },
      { path: 'relay/r.ts', text: "import type { Session } from '../client/session.js';" },
      { path: 'runtime/run.ts', text: "const m = await import('../cli/main.js');" },
      {
        path: 'cli/commands/send.ts',
        text: "import { register } from './tail.js';\nimport Database from 'better-sqlite3';",
      },
      { path: 'cli/commands/run.ts', text: "import { createRelay } from '../../relay/index.js';" },
      { path: 'cli/commands/relay.ts', text: "const { createRelay } = await import('../../relay/index.js');" },
      {
        path: 'core/ok.ts',
        text: "// import { x } from '../cli/main.js';\n/* import('../cli/x.js') */\nexport const url = 'http://x';",
      },
      { path: 'protocol/heavy.ts', text: "import { CipherSuite } from '@hpke/core';" },
      {
        path: 'protocol/lazy.ts',
        text: "import type { CipherSuite } from '@hpke/core';\nconst load = () => import('@noble/curves/ed25519.js');",
      },
    ];
    const found = violations(bad);
    const has = (text: string) =>
      assert.ok(
        found.some((v) => v.includes(text)),
        `${text}\n${found.join('\n')}`,
      );
    has("core/x.ts imports '../protocol/y.js'");
    has("protocol/y.ts imports '../runtime/run.js'");
    has("protocol/y.ts imports 'node:fs/promises'");
    has("client/c.ts imports '../relay/index.js'");
    has("relay/r.ts imports '../client/session.js'");
    has("runtime/run.ts imports '../cli/main.js'");
    has("cli/commands/send.ts imports './tail.js'");
    has("cli/commands/send.ts imports 'better-sqlite3'");
    has("cli/commands/run.ts imports '../../relay/index.js'");
    has("protocol/heavy.ts imports '@hpke/core': @hpke/core is heavy; protocol may load it only with import()");
    assert.ok(
      !found.some((v) => v.startsWith('cli/commands/relay.ts')),
      'dynamic relay import from the relay command is fine',
    );
    assert.ok(!found.some((v) => v.startsWith('core/ok.ts')), 'comments are not imports');
    assert.ok(
      !found.some((v) => v.startsWith('protocol/lazy.ts')),
      'type-only and dynamic imports of heavy packages are fine',
    );
    assert.equal(found.length, 10, found.join('\n'));
  });

  it('sees heavy packages on the start-up path', () => {
    const files: SourceFile[] = [
      { path: 'cli/main.ts', text: "import { a } from './a.js';\nconst ora = await import('ora');" },
      {
        path: 'cli/a.ts',
        text: "import WebSocket from 'ws';\nimport type { Spinner } from 'ora';\nimport { s } from '../protocol/s.js';",
      },
      { path: 'protocol/s.ts', text: "export const s = async () => (await import('@hpke/core')).CipherSuite;" },
    ];
    assert.deepEqual([...staticPackages(files, 'cli/main.ts')], ['ws']);
  });

  it('a vendored package (vendor/<name>, outside src) counts as that package', () => {
    const files: SourceFile[] = [
      { path: 'cli/main.ts', text: "import { j } from '../runtime/j.js';" },
      { path: 'runtime/j.ts', text: "import postgres from '../../vendor/postgres/index.js';" },
      { path: 'relay/store/c.ts', text: "const pg = await import('../../../vendor/postgres/index.js');" },
      { path: 'client/x.ts', text: "const pg = await import('../../vendor/postgres/index.js');" },
    ];
    assert.deepEqual([...staticPackages(files, 'cli/main.ts')], ['postgres']);
    assert.deepEqual(violations(files), [
      "client/x.ts imports '../../vendor/postgres/index.js': client may not use the package postgres (vendored)",
    ]);
  });
});
