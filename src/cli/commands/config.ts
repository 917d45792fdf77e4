import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import { CONFIG_KEYS, type ConfigKey, isConfigKey } from '../config.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { safeText } from '../render.js';

function configKey(name: string): ConfigKey {
  if (isConfigKey(name)) return name;
  throw new UsageError(`unknown config key "${name}"; known keys: ${Object.keys(CONFIG_KEYS).join(', ')}`, {
    code: 'invalid_argument',
  });
}

/** `mrp config get <key>`: the effective value (after flag > env > file > default). */
export async function runConfigGet(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const key = configKey(args[0]!);
  const setting = (await ctx.settings())[key];
  ctx.out.result(
    { key, ...setting },
    () => setting.value,
    () => setting.value,
  );
}

export async function runConfigSet(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const key = configKey(args[0]!);
  const raw = args[1]!;
  // Validate the same way it will be read back.
  const value = CONFIG_KEYS[key].normalize(raw, `config ${key}`, ctx.deps, ctx.home);
  await ctx.config.set(key, value);
  ctx.out.result(
    { key, value, file: ctx.config.path },
    () => `${ctx.out.style.green('✔')} ${key} = ${value}  ${ctx.out.style.dim(`(${ctx.config.path})`)}`,
  );
}

export async function runConfigUnset(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const key = configKey(args[0]!);
  await ctx.config.unset(key);
  ctx.out.result({ key, unset: true }, () => `${ctx.out.style.green('✔')} ${key} unset`);
}

export async function runConfigList(ctx: CliContext): Promise<void> {
  const settings = await ctx.settings();
  const rows = (Object.keys(CONFIG_KEYS) as ConfigKey[]).map((key) => ({ key, ...settings[key] }));
  ctx.out.result(
    rows,
    () =>
      ctx.out.table(
        ['KEY', 'VALUE', 'SOURCE'],
        rows.map((r) => [r.key, r.value, r.source === 'default' ? 'default' : r.origin]),
      ),
    // Quiet: key=value, one a line (the keys alone are always the same few).
    () => rows.map((r) => `${r.key}=${safeText(r.value)}`),
  );
}

export function register(program: Command, deps: Deps): void {
  const config = addGlobalOptions(program.command('config')).description(
    'read and write $MRP_HOME/config.json (relay, key_file)',
  );
  examples(config, [
    'mrp config set relay http://127.0.0.1:8080',
    'mrp config get relay',
    'mrp config ls',
    'mrp config unset relay',
  ]);
  const get = config
    .command('get')
    .description('print the effective value of a key')
    .argument('<key>', 'relay | key_file');
  examples(addGlobalOptions(get), ['mrp config get relay', 'mrp config get key_file --json']).action(
    action(deps, runConfigGet),
  );
  const set = config
    .command('set')
    .description('store a value')
    .argument('<key>', 'relay | key_file')
    .argument('<value>');
  examples(addGlobalOptions(set), [
    'mrp config set relay http://127.0.0.1:8080',
    'mrp config set key_file ~/.mrp/work.key',
  ]).action(action(deps, runConfigSet));
  const unset = config.command('unset').description('remove a stored value').argument('<key>', 'relay | key_file');
  examples(addGlobalOptions(unset), ['mrp config unset relay']).action(action(deps, runConfigUnset));
  const ls = config.command('ls').alias('list').description('every setting with its value and where it comes from');
  examples(addGlobalOptions(ls), ['mrp config ls', 'mrp config ls --json']).action(action(deps, runConfigList));
}
