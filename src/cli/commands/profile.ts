import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import type { ProfilePatch } from '../../protocol/types.js';
import { ValidationError, validateCapability, validateProfilePatch } from '../../protocol/validate.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { collect, keyValuePairs } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { profileLines } from '../render.js';

export interface ProfileOptions {
  name?: string;
  public?: boolean;
  private?: boolean;
  policy?: string;
  capability?: string[];
  meta?: string[];
}

/** Builds the PATCH from flags (metadata is merged into `current`; `--meta key=` removes a key). */
function patchFrom(options: ProfileOptions, currentMeta: Record<string, string>): ProfilePatch {
  const patch: Record<string, unknown> = {};
  if (options.name !== undefined) patch['display_name'] = options.name === '' ? null : options.name;
  if (options.public && options.private)
    throw new UsageError('--public and --private contradict each other', { code: 'invalid_argument' });
  if (options.public) patch['visibility'] = 'public';
  if (options.private) patch['visibility'] = 'private';
  if (options.policy !== undefined) patch['inbox_policy'] = options.policy;
  if (options.capability) {
    patch['capabilities'] = options.capability.map((text, i) => {
      let value: unknown = text;
      // <json>: an object, or a JSON string (`'"chat"'`, the plain tag form); else a bare tag.
      if (/^\s*[{"]/.test(text)) {
        try {
          value = JSON.parse(text);
        } catch (err) {
          throw new UsageError(`--capability #${i + 1} is not valid JSON (${(err as Error).message})`, {
            code: 'invalid_argument',
          });
        }
      }
      return validateCapability(value, `--capability #${i + 1}`);
    });
  }
  if (options.meta) {
    const meta = { ...currentMeta };
    for (const [k, v] of keyValuePairs(options.meta, '--meta')) {
      if (v === '') delete meta[k];
      else meta[k] = v;
    }
    patch['metadata'] = meta;
  }
  try {
    return validateProfilePatch(patch);
  } catch (err) {
    if (err instanceof ValidationError) {
      const flag =
        { display_name: '--name', inbox_policy: '--policy', metadata: '--meta', capabilities: '--capability' }[
          err.field.split(/[.[]/)[0]!
        ] ?? err.field;
      throw new UsageError(`${flag}: ${err.reason}`, { code: 'invalid_argument' });
    }
    throw err;
  }
}

/** `mrp profile [key]`: show a profile, or update your own with flags. */
export async function runProfile(ctx: CliContext, options: ProfileOptions, args: string[]): Promise<void> {
  const client = await ctx.client();
  const updating = ['name', 'public', 'private', 'policy', 'capability', 'meta'].some(
    (k) => options[k as keyof ProfileOptions] !== undefined,
  );
  if (updating && args[0])
    throw new UsageError('you can only update your own profile; drop the key argument', { code: 'invalid_argument' });
  const key = args[0] ? await ctx.resolve(args[0]) : client.publicKey;
  let profile = await client.getAgent(key);
  if (updating) profile = await client.updateProfile(patchFrom(options, profile.metadata));
  ctx.out.result(
    profile,
    () => profileLines(profile, ctx.out.style),
    () => profile.public_key,
  );
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('profile')
    .description('show a profile (yours by default), or update yours')
    .argument('[key]', 'public key or contact name to show')
    .option('--name <name>', 'display name ("" clears it)')
    .option('--public', 'list in discovery')
    .option('--private', 'hide from discovery (still reachable by key)')
    .option('--policy <policy>', 'inbox policy: open, closed, allowlist, blocklist')
    .option('--capability <json-or-tag>', 'a capability (JSON object or tag); repeat; replaces the list', collect)
    .option('--meta <key=value>', 'set a metadata entry (key= removes it); repeatable', collect);
  examples(addGlobalOptions(cmd), [
    'mrp profile',
    'mrp profile alice --json',
    'mrp profile --name TranslatorBot --public --policy open',
    `mrp profile --capability '{"name":"translate","description":"Translate text","tags":["text","i18n"]}'`,
    'mrp profile --meta role=translator --meta old=',
  ]);
  cmd.action(action(deps, runProfile));
}
