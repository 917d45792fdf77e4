/**
 * Named contexts, as `nats context` has them: a relay, a key file and a description saved under
 * `$MRP_HOME/contexts/<name>.json` (mode 0600). One is selected by `--context`, `MRP_CONTEXT` or
 * the `context` entry of config.json (`mrp context use`), in that order. A context's values sit
 * between the environment and the config file: flag > env > context > config > default.
 */
import { readdir, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError, UsageError } from '../core/errors.js';
import { CONFIG_KEYS, type ConfigFile, type ConfigKey, ensureDir } from './config.js';
import type { Deps } from './deps.js';
import { writeExclusive, writeFileAtomic } from './files.js';

export interface ContextData {
  description?: string;
  relay?: string;
  key_file?: string;
}

export interface LoadedContext {
  name: string;
  path: string;
  data: ContextData;
}

export type ContextSelection = { name: string; source: 'flag' | 'env' | 'config'; origin: string };

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function checkContextName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new UsageError(
      `context name "${name}" must be 1-64 letters, digits, '.', '_' or '-' (not starting with a symbol)`,
      {
        code: 'invalid_argument',
      },
    );
  }
  return name;
}

export function contextNotFound(name: string, path: string): ConfigError {
  return new ConfigError('context_not_found', `no context named "${name}"`, {
    file: path,
    hint: 'list them with `mrp context ls`; create one with `mrp context add <name> --relay <url> --key <path>`',
  });
}

export class ContextStore {
  readonly dir: string;
  readonly #home: string;

  constructor(home: string) {
    this.#home = home;
    this.dir = join(home, 'contexts');
  }

  path(name: string): string {
    return join(this.dir, `${checkContextName(name)}.json`);
  }

  async read(name: string): Promise<LoadedContext> {
    const path = this.path(name);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw contextNotFound(name, path);
      throw err;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new ConfigError('context_invalid', `context file ${path} is not valid JSON (${(err as Error).message})`, {
        file: path,
      });
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      throw new ConfigError('context_invalid', `context file ${path} must hold a JSON object`, { file: path });
    }
    const data: ContextData = {};
    for (const [k, v] of Object.entries(parsed)) {
      if (k !== 'description' && !Object.hasOwn(CONFIG_KEYS, k)) continue;
      if (typeof v !== 'string')
        throw new ConfigError('context_invalid', `context file ${path}: "${k}" must be a string`, { file: path });
      data[k as keyof ContextData] = v;
    }
    return { name, path, data };
  }

  /** Names of every saved context, sorted. */
  async names(): Promise<string[]> {
    let files: string[];
    try {
      files = await readdir(this.dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
    return files
      .filter((f) => f.endsWith('.json') && NAME_RE.test(f.slice(0, -5)))
      .map((f) => f.slice(0, -5))
      .sort();
  }

  /** Saves a context; an existing one is replaced only with `replace`. */
  async write(name: string, data: ContextData, options: { replace: boolean }): Promise<string> {
    const path = this.path(name);
    await ensureDir(this.#home);
    await ensureDir(this.dir);
    const text = `${JSON.stringify(data, null, 2)}\n`;
    if (options.replace) {
      await writeFileAtomic(path, text);
      return path;
    }
    try {
      await writeExclusive(path, text);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      throw new ConfigError('context_exists', `a context named "${name}" already exists`, {
        file: path,
        hint: 'pass --force to replace it',
      });
    }
    return path;
  }

  /** Deletes a context; false when there was none. */
  async remove(name: string): Promise<boolean> {
    try {
      await unlink(this.path(name));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }
}

/** The key config.json stores the selected context under. */
export const SELECTED_KEY = 'context';

/** Which context is selected, and by what: --context > MRP_CONTEXT > config.json. */
export async function selectContext(
  flag: string | undefined,
  deps: Pick<Deps, 'env'>,
  config: ConfigFile,
): Promise<ContextSelection | undefined> {
  if (flag !== undefined && flag !== '') return { name: flag, source: 'flag', origin: '--context' };
  const env = deps.env['MRP_CONTEXT'];
  if (env) return { name: env, source: 'env', origin: 'MRP_CONTEXT' };
  const stored = (await config.read())[SELECTED_KEY];
  if (typeof stored === 'string' && stored !== '')
    return { name: stored, source: 'config', origin: `${config.path} (context)` };
  return undefined;
}

/** The settings keys a context may hold, in display order. */
export function contextKeys(): ConfigKey[] {
  return Object.keys(CONFIG_KEYS) as ConfigKey[];
}
