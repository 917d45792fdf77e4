/**
 * What every command gets: the merged global options, the output, and lazy access to settings,
 * the identity and the contacts file.
 */
import { join } from 'node:path';
import { RelayClient } from '../client/http.js';
import {
  type ContactBook,
  emptyBook,
  parseContacts,
  resolveRecipient,
  serializeContacts,
} from '../protocol/contacts.js';
import { ConfigFile, ensureDir, mrpHome, resolveSettings, type Settings } from './config.js';
import { type ContextSelection, ContextStore, selectContext } from './contexts.js';
import type { Deps } from './deps.js';
import { readLocalText, writeFileAtomic } from './files.js';
import { type LoadedKey, readKeyFile } from './keys.js';
import { Output } from './output.js';
import { createTracers, type Tracers, traceCategories } from './trace.js';
import { packageVersion } from './version.js';

export interface GlobalOptions {
  relay?: string | undefined;
  key?: string | undefined;
  context?: string | undefined;
  json: boolean;
  quiet: boolean;
  debug: boolean;
  /** With tracing: print bodies too. */
  logPayloads?: boolean;
  noColor: boolean;
}

export class CliContext {
  readonly deps: Deps;
  readonly globals: GlobalOptions;
  readonly out: Output;
  readonly home: string;
  readonly config: ConfigFile;
  readonly contexts: ContextStore;
  #settings: Promise<Settings> | undefined;
  #selection: Promise<ContextSelection | undefined> | undefined;
  #tracers: Tracers | undefined;

  private constructor(deps: Deps, globals: GlobalOptions, out: Output) {
    this.deps = deps;
    this.globals = globals;
    this.out = out;
    this.home = mrpHome(deps);
    this.config = new ConfigFile(this.home);
    this.contexts = new ContextStore(this.home);
  }

  static async create(deps: Deps, globals: GlobalOptions): Promise<CliContext> {
    const out = await Output.create(deps, globals);
    return new CliContext(deps, globals, out);
  }

  /** The selected context (--context > MRP_CONTEXT > config.json), if any. */
  selectedContext(): Promise<ContextSelection | undefined> {
    this.#selection ??= selectContext(this.globals.context, this.deps, this.config);
    return this.#selection;
  }

  /** Relay URL and key file, resolved once by precedence. */
  settings(): Promise<Settings> {
    this.#settings ??= (async () => {
      const selected = await this.selectedContext();
      const context = selected ? await this.contexts.read(selected.name) : undefined;
      return resolveSettings(
        { relay: this.globals.relay, key: this.globals.key },
        this.deps,
        this.home,
        this.config,
        context,
      );
    })();
    return this.#settings;
  }

  /** `--debug` / `MRP_DEBUG` printers for the client's trace callbacks (empty when off). */
  get tracers(): Tracers {
    this.#tracers ??= createTracers({
      categories: traceCategories(this.globals.debug, this.deps.env),
      stderr: this.deps.stderr,
      json: this.globals.json,
      payloads: this.globals.logPayloads === true,
      style: this.out.errStyle,
      now: () => this.deps.clock.now(),
    });
    return this.#tracers;
  }

  /** Session options that trace frames, to spread into `new Session({...})`. */
  get sessionTrace(): { trace?: NonNullable<Tracers['ws']> } {
    return this.tracers.ws ? { trace: this.tracers.ws } : {};
  }

  /** The identity named by --key / MRP_KEY_FILE / config / default. */
  async identity(): Promise<LoadedKey> {
    const { key_file } = await this.settings();
    const hint = key_file.source === 'default' ? 'mrp keygen' : `mrp keygen --key ${key_file.value}`;
    return readKeyFile(key_file.value, hint);
  }

  /**
   * A signed client for the configured relay and identity. CLI calls do not sit out long rate
   * limits (a 429 is reported with when to retry) nor an unreachable relay (reported at once,
   * with the URL to check): a person is waiting. Long-running commands build their own.
   */
  async client(options: { maxRetryAfterMs?: number } = {}): Promise<RelayClient> {
    const [{ relay }, { keypair }] = await Promise.all([this.settings(), this.identity()]);
    return new RelayClient({
      relayUrl: relay.value,
      keypair,
      clock: this.deps.clock,
      maxRetryAfterMs: options.maxRetryAfterMs ?? 2000,
      failFast: true,
      userAgent: `mrp/${packageVersion()}`,
      ...(this.tracers.http ? { trace: this.tracers.http } : {}),
    });
  }

  /** A public key, or the key of the contact with that name or alias (§1.3). */
  async resolve(recipient: string): Promise<string> {
    return resolveRecipient(await this.contacts(), recipient, this.contactsPath);
  }

  get contactsPath(): string {
    return join(this.home, 'contacts.json');
  }

  /** The shared contacts file (§1.3); empty when it does not exist. */
  async contacts(): Promise<ContactBook> {
    const text = await readLocalText(this.contactsPath, {
      code: 'contacts_invalid',
      what: 'contacts file',
      maxBytes: 16 * 1024 * 1024,
      hint: 'fix it by hand, or move it away to start a new one',
    });
    return text === undefined ? emptyBook() : parseContacts(text, this.contactsPath);
  }

  async saveContacts(book: ContactBook): Promise<void> {
    await ensureDir(this.home);
    await writeFileAtomic(this.contactsPath, serializeContacts(book));
  }
}
