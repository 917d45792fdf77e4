/**
 * Settings with one precedence rule: flag > environment > context > config file > built-in
 * default (spec §1.2; contexts in contexts.ts). The config file is `$MRP_HOME/config.json`,
 * written through `conf` with mode 0600; conf is loaded only when a config file exists or is
 * being written.
 */
import { existsSync } from 'node:fs';
import { chmod, mkdir } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { ConfigError, UsageError } from '../core/errors.js';
import { DEFAULT_RELAY_URL } from '../protocol/constants.js';
import type { Deps } from './deps.js';

export type SettingSource = 'flag' | 'env' | 'context' | 'config' | 'default';

export interface Setting {
  value: string;
  source: SettingSource;
  /** Where exactly: the flag, variable or file that supplied it. */
  origin: string;
}

export interface Settings {
  relay: Setting;
  key_file: Setting;
}

export type ConfigKey = keyof Settings;

interface KeySpec {
  flag: string;
  env: string;
  describe: string;
  normalize(value: string, where: string, deps: Deps, home: string): string;
  fallback(home: string): string;
}

/** Expands `~/` and makes a path absolute against `cwd`. */
export function expandPath(path: string, deps: Pick<Deps, 'cwd' | 'homedir'>): string {
  const expanded = path === '~' ? deps.homedir : path.startsWith('~/') ? join(deps.homedir, path.slice(2)) : path;
  return isAbsolute(expanded) ? expanded : resolve(deps.cwd, expanded);
}

/** Validates a relay base URL; returns it without a trailing slash. */
export function normalizeRelayUrl(value: string, where: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`${where}: "${value}" is not a URL; use e.g. https://relay.mrphub.io or http://127.0.0.1:8080`, {
      code: 'invalid_relay_url',
    });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${where}: "${value}" must start with http:// or https://`, { code: 'invalid_relay_url' });
  }
  if (url.search || url.hash) {
    throw new UsageError(`${where}: "${value}" must not contain a query or fragment`, { code: 'invalid_relay_url' });
  }
  return url.toString().replace(/\/+$/, '');
}

export const CONFIG_KEYS: Record<ConfigKey, KeySpec> = {
  relay: {
    flag: '--relay',
    env: 'MRP_RELAY_URL',
    describe: 'relay base URL',
    normalize: (v, where) => normalizeRelayUrl(v, where),
    fallback: () => DEFAULT_RELAY_URL,
  },
  key_file: {
    flag: '--key',
    env: 'MRP_KEY_FILE',
    describe: 'identity key file',
    normalize: (v, _where, deps) => expandPath(v, deps),
    fallback: (home) => join(home, 'agent.key'),
  },
};

export function isConfigKey(key: string): key is ConfigKey {
  return Object.hasOwn(CONFIG_KEYS, key);
}

/** `$MRP_HOME`, default `~/.mrp`. */
export function mrpHome(deps: Pick<Deps, 'env' | 'cwd' | 'homedir'>): string {
  const fromEnv = deps.env['MRP_HOME'];
  return fromEnv ? expandPath(fromEnv, deps) : join(deps.homedir, '.mrp');
}

/** Creates `$MRP_HOME` (mode 0700) if needed. */
export async function ensureDir(dir: string): Promise<void> {
  const created = await mkdir(dir, { recursive: true, mode: 0o700 });
  if (created !== undefined) await chmod(dir, 0o700);
}

type ConfStore = { store: Record<string, unknown>; set(k: string, v: unknown): void; delete(k: string): void; path: string };

/** The config file, through conf. Created (mode 0600) on first write. */
export class ConfigFile {
  readonly path: string;
  readonly #home: string;
  #conf: ConfStore | undefined;

  constructor(home: string) {
    this.#home = home;
    this.path = join(home, 'config.json');
  }

  async #open(): Promise<ConfStore> {
    if (this.#conf) return this.#conf;
    await ensureDir(this.#home);
    const { default: Conf } = await import('conf');
    try {
      this.#conf = new Conf<Record<string, unknown>>({
        cwd: this.#home,
        configName: 'config',
        projectName: 'mrp',
        configFileMode: 0o600,
        accessPropertiesByDotNotation: false,
        serialize: (value) => `${JSON.stringify(value, null, 2)}\n`,
      }) as unknown as ConfStore;
      void this.#conf.store;
    } catch (err) {
      this.#conf = undefined;
      throw new ConfigError('config_invalid', `config file ${this.path} is not valid JSON (${(err as Error).message})`, {
        file: this.path,
        hint: 'fix it by hand or delete it',
        cause: err,
      });
    }
    return this.#conf;
  }

  /** All stored values; `{}` when there is no file (without creating one). */
  async read(): Promise<Record<string, unknown>> {
    if (!this.#conf && !existsSync(this.path)) return {};
    return { ...(await this.#open()).store };
  }

  async set(key: string, value: string): Promise<void> {
    (await this.#open()).set(key, value);
  }

  async unset(key: string): Promise<void> {
    if (!existsSync(this.path)) return;
    (await this.#open()).delete(key);
  }
}

export interface FlagValues {
  relay?: string | undefined;
  key?: string | undefined;
}

/** The selected context's values (see contexts.ts). */
export interface ContextValues {
  name: string;
  path: string;
  data: Readonly<Partial<Record<ConfigKey, string>>>;
}

/** Resolves every setting by precedence and says where each one came from. */
export async function resolveSettings(flags: FlagValues, deps: Deps, home: string, file: ConfigFile, context?: ContextValues): Promise<Settings> {
  const stored = await file.read();
  const flagValue: Record<ConfigKey, string | undefined> = { relay: flags.relay, key_file: flags.key };
  const out = {} as Settings;
  for (const key of Object.keys(CONFIG_KEYS) as ConfigKey[]) {
    const spec = CONFIG_KEYS[key];
    const envValue = deps.env[spec.env];
    const fileValue = stored[key];
    let raw: string;
    let source: SettingSource;
    let origin: string;
    if (flagValue[key] !== undefined) [raw, source, origin] = [flagValue[key]!, 'flag', spec.flag];
    else if (envValue) [raw, source, origin] = [envValue, 'env', spec.env];
    else if (context?.data[key]) [raw, source, origin] = [context.data[key], 'context', `context ${context.name} (${context.path})`];
    else if (typeof fileValue === 'string' && fileValue !== '') [raw, source, origin] = [fileValue, 'config', `${file.path} (${key})`];
    else [raw, source, origin] = [spec.fallback(home), 'default', 'default'];
    out[key] = { value: spec.normalize(raw, origin, deps, home), source, origin };
  }
  return out;
}
