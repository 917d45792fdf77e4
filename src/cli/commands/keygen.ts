import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { decodeKeyFile } from '../../protocol/keyfile.js';
import { Keypair } from '../../protocol/signing.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { writeExclusive } from '../files.js';
import { writeKeyFile } from '../keys.js';
import { action, addGlobalOptions, examples } from '../program.js';

export interface KeygenOptions {
  force?: boolean;
}

interface Previous {
  /** Undefined when the old file held no valid key. */
  public_key: string | undefined;
  backup: string;
}

/**
 * Copies the key file about to be replaced to `<file>.bak-<UTC time>` (mode 0600, never
 * overwriting another backup), so `--force` cannot lose an identity by accident.
 */
async function backUp(path: string, now: number): Promise<Previous | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let publicKey: string | undefined;
  try {
    publicKey = decodeKeyFile(bytes, path).keypair.publicKey;
  } catch {
    publicKey = undefined;
  }
  const stamp = new Date(now)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d+Z$/, 'Z');
  for (let n = 0; ; n++) {
    const backup = `${path}.bak-${stamp}${n ? `-${n}` : ''}`;
    try {
      await writeExclusive(backup, bytes, 0o600);
      return { public_key: publicKey, backup };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || n >= 100) throw err;
    }
  }
}

/** `mrp keygen`: writes a new 32-byte seed (mode 0600) and prints the public key. */
export async function runKeygen(ctx: CliContext, options: KeygenOptions): Promise<void> {
  const { key_file } = await ctx.settings();
  const keypair = Keypair.generate();
  const previous = options.force ? await backUp(key_file.value, ctx.deps.clock.now()) : undefined;
  await writeKeyFile(key_file.value, keypair, { force: options.force === true });
  const { style } = ctx.out;
  ctx.out.result(
    { public_key: keypair.publicKey, key_file: key_file.value, created: true, ...(previous ? { previous } : {}) },
    () => [
      `${style.green('✔')} New identity written to ${style.bold(key_file.value)} (mode 0600)`,
      `  public key  ${style.cyan(keypair.publicKey)}`,
      ...(previous
        ? [
            `  previous    ${previous.public_key ?? style.yellow('(not a valid key)')}  ${style.dim(`kept in ${previous.backup} (mode 0600)`)}`,
          ]
        : []),
      style.dim('  Keep the key file secret: it is the account. Share only the public key.'),
    ],
    () => keypair.publicKey,
  );
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('keygen')
    .description('create a new identity key (a 32-byte Ed25519 seed, mode 0600)')
    .option('-f, --force', 'replace an existing key file (the old one is kept as <file>.bak-<time>)');
  examples(addGlobalOptions(cmd), [
    'mrp keygen',
    'mrp keygen --key ./agent.key',
    'mrp keygen --force --json   # .previous has the old key and its backup',
  ]);
  cmd.action(action(deps, runKeygen));
}
