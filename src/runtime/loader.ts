/**
 * Importing a user's module from a path, whatever it is written in, at the lowest lasting cost.
 *
 * - JavaScript goes through Node's own loader.
 * - TypeScript (and JavaScript that imports TypeScript) is bundled by esbuild — its own files
 *   inlined, npm packages left as imports — and the bundle is imported from a file placed where
 *   those imports resolve exactly as they would from the handler. esbuild runs as a separate
 *   process that is stopped right after, so a runner carries no transpiler (jiti's Babel costs
 *   ~25 MB for the life of the process).
 * - CommonJS-style TypeScript (`require`, `module.exports`) and anything esbuild cannot place
 *   falls back to jiti, which handles every module shape.
 */
import { existsSync, mkdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

/** A syntax error found while bundling, with its place. */
export class ModuleSyntaxError extends Error {
  override name = 'SyntaxError';
  readonly text: string;
  readonly file: string;
  readonly line: number;
  readonly column: number;
  constructor(text: string, file: string, line: number, column: number) {
    super(`${text} (${file}:${line}:${column})`);
    this.text = text;
    this.file = file;
    this.line = line;
    this.column = column;
  }
}

const JS = new Set(['.js', '.mjs', '.cjs']);
let generation = 0;

/** Imports `file` with Node; `fresh` re-evaluates it (a new URL for ESM, a dropped cache entry for CJS). */
async function nativeImport(file: string, fresh: boolean): Promise<unknown> {
  if (fresh) delete createRequire(file).cache[file];
  const url = pathToFileURL(file);
  if (fresh) url.search = `?v=${++generation}`;
  return import(url.href);
}

/** The nearest `node_modules` at or above `dir`, if any. */
function nearestNodeModules(dir: string): string | undefined {
  for (let d = dir; ; d = dirname(d)) {
    const candidate = join(d, 'node_modules');
    if (existsSync(candidate)) return candidate;
    if (dirname(d) === d) return undefined;
  }
}

interface Bundle {
  code: string;
  /** Packages the bundle imports (resolved at run time). */
  packages: string[];
}

/** Bundles an ES-module handler; undefined when it is CommonJS-style (jiti handles those). */
async function bundle(file: string): Promise<Bundle | undefined> {
  const esbuild = await import('esbuild');
  try {
    const result = await esbuild.build({
      entryPoints: [file],
      absWorkingDir: dirname(file),
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      write: false,
      packages: 'external',
      metafile: true,
      logLevel: 'silent',
      sourcemap: 'inline',
      sourcesContent: false,
      // Free uses keep meaning the handler's own location, not the bundle's.
      define: { __dirname: JSON.stringify(dirname(file)), __filename: JSON.stringify(file) },
    });
    const inputs = Object.values(result.metafile.inputs);
    const code = result.outputFiles[0]!.text;
    if (inputs.some((i) => i.format === 'cjs') || code.includes('Dynamic require of "')) return undefined;
    const output = Object.values(result.metafile.outputs)[0]!;
    const packages = output.imports
      .filter((i) => i.external && !i.path.startsWith('node:') && !builtinModules.includes(i.path))
      .map((i) => i.path);
    return { code, packages };
  } catch (err) {
    const first = (
      err as { errors?: Array<{ text: string; location?: { file: string; line: number; column: number } | null }> }
    ).errors?.[0];
    if (first?.location) {
      const at = first.location;
      throw new ModuleSyntaxError(first.text, resolve(dirname(file), at.file), at.line, at.column + 1);
    }
    throw err;
  } finally {
    await esbuild.stop();
  }
}

/** Imports bundled code from a short-lived file placed so that its package imports resolve as the handler's would. */
async function importBundle(file: string, b: Bundle): Promise<unknown> {
  const modules = b.packages.length ? nearestNodeModules(dirname(file)) : undefined;
  const dirs = b.packages.length ? [...(modules ? [join(modules, '.cache', 'mrp')] : []), dirname(file)] : [tmpdir()];
  let lastError: unknown;
  for (const dir of dirs) {
    const out = join(dir, `.mrp-${basename(file, extname(file))}.${process.pid}.${++generation}.mjs`);
    try {
      mkdirSync(dir, { recursive: true });
      writeFileSync(out, b.code, { mode: 0o600 });
    } catch (err) {
      lastError = err;
      continue;
    }
    try {
      return await import(pathToFileURL(out).href);
    } finally {
      try {
        unlinkSync(out);
      } catch {
        // Already gone.
      }
    }
  }
  throw lastError;
}

async function jitiImport(file: string, fresh: boolean): Promise<unknown> {
  const { createJiti } = await import('jiti');
  return createJiti(import.meta.url, { moduleCache: !fresh, fsCache: false, tryNative: true }).import(file);
}

/** Imports the module at `file` (absolute), choosing the cheapest loader that can. */
export async function importModule(file: string, options: { fresh?: boolean } = {}): Promise<unknown> {
  const fresh = options.fresh === true;
  if (JS.has(extname(file))) {
    try {
      return await nativeImport(file, fresh);
    } catch (err) {
      // JavaScript that imports TypeScript: bundle it like TypeScript.
      if ((err as { code?: string }).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
    }
  }
  const b = await bundle(file);
  if (!b) return jitiImport(file, fresh);
  return importBundle(file, b);
}
