import { access } from 'node:fs/promises';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { Keypair } from '../../protocol/signing.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { writeExclusive } from '../files.js';
import { writeKeyFile } from '../keys.js';
import { action, addGlobalOptions, examples } from '../program.js';

export interface InitOptions {
  name?: string;
}

const SCHEMA = fileURLToPath(new URL('../../../schema/mrp.schema.json', import.meta.url));

function manifestText(name: string, schema: string): string {
  return `# yaml-language-server: $schema=${schema}
# The agent's public profile. \`mrp run\` announces it at start; \`mrp announce\` does it on demand.
name: ${JSON.stringify(name)}
visibility: private        # public: listed by \`mrp discover\`
inbox_policy: blocklist    # open | closed | allowlist | blocklist
capabilities:
  - name: echo
    description: Replies with what it receives
    tags: [echo, demo]
metadata:
  version: "0.1.0"
# acl:
#   allow: []              # public keys or contact names (with inbox_policy: allowlist)
#   block: []
`;
}

const HANDLER = `/**
 * Your agent. Runs with \`mrp run --handler ./handler.ts\` (or \`mrp dev --handler ./handler.ts\`).
 * The return value is the reply; a string becomes {"text": …}; return nothing to stay silent;
 * a thrown error becomes {"status":"error","error":{"code","message"}}.
 */
import type { Handler } from 'mrp';

const handler: Handler = async (msg, ctx) => {
  ctx.log.info('message received', { from: msg.sender_key, content_type: msg.content_type });
  return { echo: msg.body };
};

export default handler;
`;

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/** `mrp init`: scaffold mrp.yaml and handler.ts (never overwriting), create a key if needed. */
export async function runInit(ctx: CliContext, options: InitOptions): Promise<void> {
  const cwd = ctx.deps.cwd;
  const name = options.name ?? (basename(cwd).replace(/[^\w .-]/g, '').trim() || 'my-agent');
  const schemaRef = (await exists(SCHEMA)) ? relative(cwd, SCHEMA) || SCHEMA : 'https://mrphub.io/schemas/mrp.yaml.json';
  const files: Array<{ path: string; text: string }> = [
    { path: join(cwd, 'mrp.yaml'), text: manifestText(name, schemaRef) },
    { path: join(cwd, 'handler.ts'), text: HANDLER },
  ];
  const created: string[] = [];
  const kept: string[] = [];
  for (const f of files) {
    try {
      await writeExclusive(f.path, f.text, 0o644);
      created.push(f.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      kept.push(f.path);
    }
  }
  const { key_file } = await ctx.settings();
  let keyCreated = false;
  let publicKey: string;
  if (await exists(key_file.value)) {
    publicKey = (await ctx.identity()).keypair.publicKey;
  } else {
    const kp = Keypair.generate();
    await writeKeyFile(key_file.value, kp);
    keyCreated = true;
    publicKey = kp.publicKey;
  }
  const next = 'mrp run --handler ./handler.ts';
  const { style } = ctx.out;
  ctx.out.result({ created, kept, key_file: key_file.value, key_created: keyCreated, public_key: publicKey, next }, () => [
    ...created.map((p) => `${style.green('✔')} created ${relative(cwd, p)}`),
    ...kept.map((p) => `${style.yellow('•')} kept ${relative(cwd, p)} (already there)`),
    keyCreated ? `${style.green('✔')} created identity ${key_file.value}` : `${style.dim('•')} using identity ${key_file.value}`,
    `  public key  ${style.cyan(publicKey)}`,
    '',
    `Next: ${style.bold(next)}`,
    style.dim('  (no relay handy? `mrp dev --handler ./handler.ts` runs one locally)'),
  ]);
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('init')
    .description('scaffold mrp.yaml and handler.ts here (never overwrites) and create a key if needed')
    .option('--name <name>', 'display name for mrp.yaml (default: this folder)');
  examples(addGlobalOptions(cmd), ['mkdir my-agent && cd my-agent && mrp init', 'mrp init --name TranslatorBot']);
  cmd.action(action(deps, runInit));
}
