/**
 * Commander plumbing shared by every command: the global options (accepted before or after the
 * command name), merging them, and turning `runX(ctx, options, args)` into a commander action.
 */
import { type Command, Option } from 'commander';
import { decodePublicKey } from '../protocol/encoding.js';
import { CliContext, type GlobalOptions } from './context.js';
import type { Deps } from './deps.js';
import { exitCodeFor } from './exit.js';

const GLOBAL_GROUP = 'Global Options:';

/**
 * Adds the global options to a command. Commands with their own `--json [body]` or
 * `--log-payloads` skip that one.
 */
export function addGlobalOptions(cmd: Command, options: { json?: boolean; logPayloads?: boolean } = {}): Command {
  cmd.addOption(new Option('--relay <url>', 'relay base URL (env MRP_RELAY_URL)').helpGroup(GLOBAL_GROUP));
  cmd.addOption(new Option('--key <path>', 'identity key file (env MRP_KEY_FILE)').helpGroup(GLOBAL_GROUP));
  cmd.addOption(
    new Option('--context <name>', 'use a saved context: relay, key (env MRP_CONTEXT; see mrp context)').helpGroup(
      GLOBAL_GROUP,
    ),
  );
  if (options.json !== false)
    cmd.addOption(new Option('--json', 'machine-readable JSON output').helpGroup(GLOBAL_GROUP));
  cmd.addOption(
    new Option('-q, --quiet', 'only the bare value asked for (key, id, reply, value); no status lines').helpGroup(
      GLOBAL_GROUP,
    ),
  );
  cmd.addOption(
    new Option(
      '--debug',
      'diagnostics on stderr: every HTTP request and WebSocket frame (env MRP_DEBUG=http,ws)',
    ).helpGroup(GLOBAL_GROUP),
  );
  if (options.logPayloads !== false) {
    cmd.addOption(
      new Option('--log-payloads', 'with --debug: show request, response and frame bodies').helpGroup(GLOBAL_GROUP),
    );
  }
  cmd.addOption(new Option('--no-color', 'disable colour (also NO_COLOR)').helpGroup(GLOBAL_GROUP));
  return cmd;
}

/** A value the user typed for `name` on `cmd` or any ancestor (nearest wins). */
function typed(cmd: Command, name: string): unknown {
  for (let c: Command | null = cmd; c; c = c.parent) {
    if (c.getOptionValueSource(name) === 'cli') return c.getOptionValue(name);
  }
  return undefined;
}

/** The global options as typed anywhere on the command line. */
export function globalsOf(cmd: Command): GlobalOptions {
  const json = typed(cmd, 'json');
  return {
    relay: typed(cmd, 'relay') as string | undefined,
    key: typed(cmd, 'key') as string | undefined,
    context: typed(cmd, 'context') as string | undefined,
    // A command's own `--json <body>` (send) is not the output flag.
    json: json === true,
    quiet: typed(cmd, 'quiet') === true,
    debug: typed(cmd, 'debug') === true,
    logPayloads: typed(cmd, 'logPayloads') === true,
    noColor: typed(cmd, 'color') === false,
  };
}

/**
 * A public key is base64url, so 1 in 64 starts with "-" and would be read as an unknown option
 * (`mrp send -QyX… hi`). Such arguments are disguised before commander parses the command line
 * and restored in what the command receives.
 */
const DISGUISE = '\uE000';

export function protectKeyArguments(argv: readonly string[]): string[] {
  return argv.map((a) => (a.length === 43 && a.startsWith('-') && decodePublicKey(a) ? DISGUISE + a.slice(1) : a));
}

function restore<T>(value: T): T {
  if (typeof value === 'string') return (value.startsWith(DISGUISE) ? `-${value.slice(1)}` : value) as T;
  if (Array.isArray(value)) return value.map(restore) as T;
  return value;
}

export type Run<O> = (ctx: CliContext, options: O, args: string[]) => Promise<void>;

/** Thrown after a command has reported its failure: carries the exit code to `main`. */
export class ReportedError extends Error {
  readonly exitCode: number;
  constructor(exitCode: number) {
    super(`exit ${exitCode}`);
    this.exitCode = exitCode;
  }
}

/**
 * Wraps a runner as a commander action: builds the context, passes typed options and arguments,
 * and reports a failure once, in the command's output mode.
 */
export function action<O>(deps: Deps, run: Run<O>): (...all: unknown[]) => Promise<void> {
  return async (...all) => {
    const cmd = all[all.length - 1] as Command;
    const ctx = await CliContext.create(deps, globalsOf(cmd));
    try {
      // A variadic last argument arrives as an array: flatten so args are plain strings.
      const options = Object.fromEntries(Object.entries(cmd.opts()).map(([k, v]) => [k, restore(v)])) as O;
      await run(ctx, options, restore((cmd.processedArgs as Array<string | string[]>).flat()));
    } catch (err) {
      if (err instanceof ReportedError) throw err;
      ctx.out.error(err);
      throw new ReportedError(exitCodeFor(err));
    }
  };
}

/** Adds an `Examples:` block to a command's help. */
export function examples(cmd: Command, lines: string[]): Command {
  return cmd.addHelpText('after', `\nExamples:\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
}
