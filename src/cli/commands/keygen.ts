import type { Command } from 'commander';
import { Keypair } from '../../protocol/signing.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { writeKeyFile } from '../keys.js';
import { action, addGlobalOptions, examples } from '../program.js';

export interface KeygenOptions {
  force?: boolean;
}

/** `mrp keygen`: writes a new 32-byte seed (mode 0600) and prints the public key. */
export async function runKeygen(ctx: CliContext, options: KeygenOptions): Promise<void> {
  const { key_file } = await ctx.settings();
  const keypair = Keypair.generate();
  await writeKeyFile(key_file.value, keypair, { force: options.force === true });
  const { style } = ctx.out;
  ctx.out.result({ public_key: keypair.publicKey, key_file: key_file.value, created: true }, () => [
    `${style.green('✔')} New identity written to ${style.bold(key_file.value)} (mode 0600)`,
    `  public key  ${style.cyan(keypair.publicKey)}`,
    style.dim('  Keep the key file secret: it is the account. Share only the public key.'),
  ], () => keypair.publicKey);
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('keygen')
    .description('create a new identity key (a 32-byte Ed25519 seed, mode 0600)')
    .option('-f, --force', 'replace an existing key file (the old identity is lost)');
  examples(addGlobalOptions(cmd), ['mrp keygen', 'mrp keygen --key ./agent.key', 'mrp keygen --json']);
  cmd.action(action(deps, runKeygen));
}
