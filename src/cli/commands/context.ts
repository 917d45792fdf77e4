import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import { CONFIG_KEYS } from '../config.js';
import type { CliContext } from '../context.js';
import { type ContextData, checkContextName, contextKeys, contextNotFound, SELECTED_KEY } from '../contexts.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { safeText } from '../render.js';

export interface ContextAddOptions {
  description?: string;
  force?: boolean;
  use?: boolean;
}

/** `mrp context add <name> --relay <url> --key <path>`: saves a context (0600). */
export async function runContextAdd(ctx: CliContext, options: ContextAddOptions, args: string[]): Promise<void> {
  const name = checkContextName(args[0]!);
  const data: ContextData = {};
  if (options.description !== undefined) data.description = options.description;
  // --relay and --key are the global options, here naming what the context holds.
  const given = { relay: ctx.globals.relay, key_file: ctx.globals.key };
  for (const key of contextKeys()) {
    const raw = given[key];
    if (raw !== undefined) data[key] = CONFIG_KEYS[key].normalize(raw, CONFIG_KEYS[key].flag, ctx.deps, ctx.home);
  }
  if (data.relay === undefined && data.key_file === undefined) {
    throw new UsageError('a context needs --relay <url>, --key <path>, or both', { code: 'missing_argument' });
  }
  const path = await ctx.contexts.write(name, data, { replace: options.force === true });
  if (options.use) await ctx.config.set(SELECTED_KEY, name);
  const { style } = ctx.out;
  ctx.out.result({ name, file: path, selected: options.use === true, ...data }, () => [
    `${style.green('✔')} context ${style.bold(name)} saved ${style.dim(`(${path})`)}`,
    ...ctx.out.keyValues(contextRows(data)).map((l) => `  ${l}`),
    options.use
      ? `  selected: commands now use it (unless --context, MRP_CONTEXT or flags say otherwise)`
      : style.dim(`  select it with \`mrp context use ${name}\` or --context ${name}`),
  ]);
}

function contextRows(data: ContextData): Array<[string, string]> {
  const rows: Array<[string, string]> = [];
  // A context file may have been edited by hand or copied from elsewhere: shown through safeText.
  if (data.relay !== undefined) rows.push(['relay', safeText(data.relay)]);
  if (data.key_file !== undefined) rows.push(['key file', safeText(data.key_file)]);
  if (data.description !== undefined) rows.push(['description', safeText(data.description)]);
  return rows;
}

export interface ContextUseOptions {
  none?: boolean;
}

/** `mrp context use <name>` (or `--none`): which context commands use by default. */
export async function runContextUse(ctx: CliContext, options: ContextUseOptions, args: string[]): Promise<void> {
  const { style } = ctx.out;
  if (options.none || args[0] === undefined) {
    if (!options.none)
      throw new UsageError('name a context to use, or pass --none to stop using one', { code: 'missing_argument' });
    await ctx.config.unset(SELECTED_KEY);
    ctx.out.result(
      { selected: null },
      () => `${style.green('✔')} no context selected: settings come from flags, environment and config.json`,
    );
    return;
  }
  const loaded = await ctx.contexts.read(args[0]);
  await ctx.config.set(SELECTED_KEY, loaded.name);
  const env = ctx.deps.env['MRP_CONTEXT'];
  ctx.out.result({ selected: loaded.name, file: loaded.path }, () => [
    `${style.green('✔')} using context ${style.bold(loaded.name)}`,
    ...(env && env !== loaded.name
      ? [style.yellow(`  note: MRP_CONTEXT=${env} is set and wins over this choice`)]
      : []),
  ]);
}

/** `mrp context ls`: every saved context, the selected one marked. */
export async function runContextList(ctx: CliContext): Promise<void> {
  const selected = await ctx.selectedContext();
  const names = await ctx.contexts.names();
  const rows: Array<ContextData & { name: string; selected: boolean }> = [];
  for (const name of names) {
    const { data } = await ctx.contexts.read(name);
    rows.push({ name, selected: selected?.name === name, ...data });
  }
  ctx.out.result(
    { contexts: rows, selected: selected?.name ?? null, selected_by: selected?.origin ?? null },
    () =>
      rows.length === 0
        ? [ctx.out.style.dim('no contexts yet; add one with `mrp context add <name> --relay <url> --key <path>`')]
        : ctx.out.table(
            ['', 'NAME', 'RELAY', 'KEY', 'DESCRIPTION'],
            rows.map((r) =>
              [r.selected ? '*' : '', r.name, r.relay ?? '', r.key_file ?? '', r.description ?? ''].map((c) =>
                safeText(c),
              ),
            ),
          ),
    () => rows.map((r) => r.name),
  );
}

/** `mrp context show [name]`: one context (default: the selected one). */
export async function runContextShow(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const selected = await ctx.selectedContext();
  const name = args[0] ?? selected?.name;
  if (name === undefined) {
    throw new UsageError('no context is selected; name one, or select one with `mrp context use <name>`', {
      code: 'missing_argument',
    });
  }
  const loaded = await ctx.contexts.read(name);
  const isSelected = selected?.name === loaded.name;
  ctx.out.result(
    {
      name: loaded.name,
      file: loaded.path,
      selected: isSelected,
      ...(isSelected ? { selected_by: selected.origin } : {}),
      ...loaded.data,
    },
    () =>
      ctx.out.keyValues([
        ['name', `${loaded.name}${isSelected ? ctx.out.style.dim(`  (selected by ${selected.origin})`) : ''}`],
        ...contextRows(loaded.data),
        ['file', loaded.path],
      ]),
  );
}

/** `mrp context rm <name>`: deletes it (and unselects it). */
export async function runContextRemove(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const name = checkContextName(args[0]!);
  const removed = await ctx.contexts.remove(name);
  const stored = (await ctx.config.read())[SELECTED_KEY];
  const unselected = stored === name;
  if (unselected) await ctx.config.unset(SELECTED_KEY);
  if (!removed && !unselected) throw contextNotFound(name, ctx.contexts.path(name));
  ctx.out.result(
    { name, removed, unselected },
    () => `${ctx.out.style.green('✔')} context ${name} removed${unselected ? ' (and no longer selected)' : ''}`,
  );
}

export function register(program: Command, deps: Deps): void {
  // The global options before the subcommand too (`mrp context --json ls`), as on every other group.
  const context = addGlobalOptions(
    program.command('context').description('named relay + key pairs to switch between (like `nats context`)'),
  );
  examples(context, [
    'mrp context add prod --relay https://relay.mrphub.io --key ~/.mrp/prod.key --description "production"',
    'mrp context add local --relay http://127.0.0.1:8080 --key ~/.mrp/dev.key --use',
    'mrp context use prod',
    'mrp --context local whoami      # or MRP_CONTEXT=local',
    'mrp context ls',
  ]);
  context.addHelpText(
    'after',
    '\nPrecedence: flag > environment > context > config.json > default. `mrp whoami` shows where each value came from.\n',
  );
  const add = context
    .command('add')
    .description('save a context: --relay and/or --key (mode 0600, in $MRP_HOME/contexts)')
    .argument('<name>')
    .option('--description <text>', 'what this context is for')
    .option('-f, --force', 'replace a context of that name')
    .option('--use', 'also select it');
  examples(addGlobalOptions(add), [
    'mrp context add prod --relay https://relay.mrphub.io --key ~/.mrp/prod.key',
  ]).action(action(deps, runContextAdd));
  const use = context
    .command('use')
    .alias('select')
    .description('use a context by default')
    .argument('[name]')
    .option('--none', 'stop using a context');
  examples(addGlobalOptions(use), ['mrp context use prod', 'mrp context use --none']).action(
    action(deps, runContextUse),
  );
  const ls = context.command('ls').alias('list').description('list contexts; * marks the one in use');
  examples(addGlobalOptions(ls), ['mrp context ls', 'mrp context ls --json']).action(action(deps, runContextList));
  const show = context
    .command('show')
    .alias('info')
    .description('show a context (default: the one in use)')
    .argument('[name]');
  examples(addGlobalOptions(show), ['mrp context show', 'mrp context show prod --json']).action(
    action(deps, runContextShow),
  );
  const rm = context.command('rm').alias('remove').description('delete a context').argument('<name>');
  examples(addGlobalOptions(rm), ['mrp context rm old']).action(action(deps, runContextRemove));
}
