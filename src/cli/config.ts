/**
 * Settings with one precedence rule: flag > environment > context > config file > built-in
 * default (docs/protocol.md §1.2; contexts in contexts.ts). The config file is `$MRP_HOME/config.json`
 * (mode 0600).
 */
import { chmod, mkdir } from 'node:fs/promises';
import { isAbsolute, join, resolve } from 'node:path';
import { ConfigError, UsageError } from '../core/errors.js';
import { withoutUrlCredentials } from '../core/printable.js';
import { didYouMean } from '../core/suggest.js';
import { DEFAULT_RELAY_URL } from '../protocol/constants.js';
import { JsonInputError, parseJson } from '../protocol/json.js';
import type { Deps } from './deps.js';
import { readLocalText, writeFileAtomic } from './files.js';

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
    throw new UsageError(
      `${where}: "${withoutUrlCredentials(value)}" is not a URL; use e.g. https://relay.mrphub.io or http://127.0.0.1:8080`,
      {
        code: 'invalid_relay_url',
      },
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new UsageError(`${where}: "${withoutUrlCredentials(value)}" must start with http:// or https://`, {
      code: 'invalid_relay_url',
    });
  }
  if (url.username || url.password) {
    // Said without the password: the URL is printed by whoami, health and errors.
    throw new UsageError(
      `${where}: "${withoutUrlCredentials(value)}" must not contain a user name or password (MRP signs every request with your key)`,
      { code: 'invalid_relay_url' },
    );
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

/** What `config.json` may hold: the settings, plus the context chosen with `mrp context use`. */
export type StoredKey = ConfigKey | 'context';
const STORED_KEYS: Record<StoredKey, string> = {
  relay: CONFIG_KEYS.relay.describe,
  key_file: CONFIG_KEYS.key_file.describe,
  context: 'the context selected with `mrp context use`',
};

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

/** How deep a hand-edited settings file may nest (it is flat; this only stops hostile input). */
const CONFIG_MAX_DEPTH = 32;

/**
 * The config file: a flat JSON object of known string settings, mode 0600, replaced atomically on
 * every write (own writer, no signal handlers: `conf`'s atomic writer hooked SIGINT/SIGTERM and
 * re-raised the first signal, so a runner could not drain). A file of the wrong shape fails with
 * `config_invalid` naming the file and field, never silently ignored.
 */
export class ConfigFile {
  readonly path: string;
  readonly #home: string;
  #cache: Record<string, string> | undefined;

  constructor(home: string) {
    this.#home = home;
    this.path = join(home, 'config.json');
  }

  #invalid(reason: string, field?: string): ConfigError {
    return new ConfigError('config_invalid', `${this.path}${field ? ` (${field})` : ''}: ${reason}`, {
      file: this.path,
      details: { file: this.path, ...(field ? { field } : {}), reason },
      hint: field
        ? `fix it with \`mrp config set ${isConfigKey(field) ? field : '<key>'} <value>\`, or edit the file`
        : 'fix it by hand, or delete it',
    });
  }

  /** All stored values; `{}` when there is no file (without creating one). */
  async read(): Promise<Record<string, string>> {
    if (this.#cache) return { ...this.#cache };
    const text = await readLocalText(this.path, {
      code: 'config_invalid',
      what: 'config file',
      maxBytes: 1024 * 1024,
      hint: 'fix it by hand, or delete it',
    });
    let data: unknown = {};
    if (text !== undefined && text.trim() !== '') {
      try {
        data = parseJson(text, CONFIG_MAX_DEPTH);
      } catch (err) {
        throw this.#invalid(err instanceof JsonInputError ? err.message : String(err));
      }
    }
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw this.#invalid(
        `must be a JSON object like {"relay": "https://relay.mrphub.io"}, not ${Array.isArray(data) ? 'an array' : data === null ? 'null' : typeof data}`,
      );
    }
    const known = Object.keys(STORED_KEYS);
    const out: Record<string, string> = {};
    for (const [key, value] of Object.entries(data)) {
      if (!Object.hasOwn(STORED_KEYS, key))
        throw this.#invalid(`unknown key "${key}"${didYouMean(key, known)}; known keys: ${known.join(', ')}`, key);
      if (typeof value !== 'string' || value === '')
        throw this.#invalid(
          `must be a non-empty string (${STORED_KEYS[key as StoredKey]}), not ${JSON.stringify(value)}`,
          key,
        );
      out[key] = value;
    }
    this.#cache = out;
    return { ...out };
  }

  async set(key: StoredKey, value: string): Promise<void> {
    await this.#write({ ...(await this.read()), [key]: value });
  }

  async unset(key: StoredKey): Promise<void> {
    const current = await this.read();
    if (!Object.hasOwn(current, key)) return;
    delete current[key];
    await this.#write(current);
  }

  async #write(values: Record<string, string>): Promise<void> {
    await ensureDir(this.#home);
    await writeFileAtomic(this.path, `${JSON.stringify(values, null, 2)}\n`, 0o600);
    this.#cache = values;
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
export async function resolveSettings(
  flags: FlagValues,
  deps: Deps,
  home: string,
  file: ConfigFile,
  context?: ContextValues,
): Promise<Settings> {
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
    else if (context?.data[key])
      [raw, source, origin] = [context.data[key], 'context', `context ${context.name} (${context.path})`];
    else if (fileValue !== undefined) [raw, source, origin] = [fileValue, 'config', `${file.path} (${key})`];
    else [raw, source, origin] = [spec.fallback(home), 'default', 'default'];
    let value: string;
    try {
      value = spec.normalize(raw, origin, deps, home);
    } catch (err) {
      // A bad value in the file is the file's problem (config_invalid), with the same message.
      if (source !== 'config' || !(err instanceof UsageError)) throw err;
      throw new ConfigError('config_invalid', err.message, {
        file: file.path,
        details: { file: file.path, field: key },
        hint: `fix it with \`mrp config set ${key} <value>\`, or \`mrp config unset ${key}\``,
      });
    }
    out[key] = { value, source, origin };
  }
  return out;
}
