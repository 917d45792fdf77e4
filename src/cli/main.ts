/**
 * `main(argv, deps) → exit code`: the whole CLI, callable in process. Errors end in one place
 * (`exitCodeFor`), printed once by `Output.error`.
 */
import { Command, CommanderError } from 'commander';
import { UsageError } from '../core/errors.js';
import type { Deps } from './deps.js';
import { EXIT, exitCodeFor } from './exit.js';
import { Output } from './output.js';
import { addGlobalOptions, globalsOf, protectKeyArguments, ReportedError } from './program.js';
import { packageVersion } from './version.js';

/** What a command module gives the program: its definition (options, arguments, action). */
export interface CommandModule {
  register(program: Command, deps: Deps): void;
}

/**
 * Every command module with the command words it registers, in help order (the everyday loop
 * first, then the rest), loaded on demand: a command line that names one command loads only that
 * module and what it imports (`mrp whoami` loads 42 modules instead of 83: ~50 ms and ~5 MB less
 * at every start); help, an unknown word and `completion` load them all.
 */
export const COMMANDS: ReadonlyArray<readonly [words: readonly string[], load: () => Promise<CommandModule>]> = [
  [['init'], () => import('./commands/init.js')],
  [['dev'], () => import('./commands/dev.js')],
  [['run'], () => import('./commands/run.js')],
  [['send'], () => import('./commands/send.js')],
  [['tail'], () => import('./commands/tail.js')],
  [['recv'], () => import('./commands/recv.js')],
  [['thread'], () => import('./commands/thread.js')],
  [['status', 'get'], () => import('./commands/message.js')],
  [['blob'], () => import('./commands/blob.js')],
  [['announce'], () => import('./commands/announce.js')],
  [['profile'], () => import('./commands/profile.js')],
  [['discover'], () => import('./commands/discover.js')],
  [['capabilities'], () => import('./commands/capabilities.js')],
  [['acl'], () => import('./commands/acl.js')],
  [['webhook'], () => import('./commands/webhook.js')],
  [['contacts'], () => import('./commands/contacts.js')],
  [['keygen'], () => import('./commands/keygen.js')],
  [['whoami'], () => import('./commands/whoami.js')],
  [['doctor'], () => import('./commands/doctor.js')],
  [['health'], () => import('./commands/health.js')],
  [['delete-agent'], () => import('./commands/delete-agent.js')],
  [['fleet'], () => import('./commands/fleet.js')],
  [['context'], () => import('./commands/context.js')],
  [['config'], () => import('./commands/config.js')],
  [['relay'], () => import('./commands/relay.js')],
  [['completion'], () => import('./commands/completion.js')],
];

/** All command modules, in help order. */
export function loadCommands(): Promise<CommandModule[]> {
  return Promise.all(COMMANDS.map(([, load]) => load()));
}

/** Root options that take a value (`addGlobalOptions`): the word after them is not a command. */
const VALUE_OPTIONS = new Set(['--relay', '--key', '--context']);

/**
 * The command module a command line needs alone, or undefined when it needs them all: no
 * command word, root help (`mrp --help send`), `help`, `completion` (it describes every command),
 * or a word that is no command (commander suggests the nearest).
 */
function soleCommand(argv: readonly string[]): (() => Promise<CommandModule>) | undefined {
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    // `-h`, also bundled (`-qh`): commander prints the root help, which lists every command.
    if (word === '--' || word === '--help' || /^-[^-]*h/.test(word)) return undefined;
    if (word.startsWith('-')) {
      if (VALUE_OPTIONS.has(word)) i++;
      continue;
    }
    return word === 'completion' ? undefined : COMMANDS.find(([words]) => words.includes(word))?.[1];
  }
  return undefined;
}

/**
 * `mrp help <word>` where the word is no command: commander would print the root help and exit 0.
 * The words without `help` instead, so it fails as `mrp <word>` does (unknown_command, exit 2,
 * the nearest command suggested). Other command lines are returned as they are.
 */
function unknownHelpTopic(argv: readonly string[], program: Command): string[] | undefined {
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    if (word === '--') return undefined;
    if (word.startsWith('-')) {
      if (VALUE_OPTIONS.has(word)) i++;
      continue;
    }
    if (word !== 'help') return undefined;
    const topic = argv.slice(i + 1).find((w) => !w.startsWith('-'));
    if (topic === undefined || topic === 'help') return undefined;
    if (program.commands.some((c) => c.name() === topic || c.aliases().includes(topic))) return undefined;
    return [...argv.slice(0, i), ...argv.slice(i + 1)];
  }
  return undefined;
}

/** The program with `commands` registered (`loadCommands()` for all of them). */
export function buildProgram(deps: Deps, commands: readonly CommandModule[]): Command {
  const program = new Command('mrp')
    .description(
      'Run MRP agents: keys, a reliable handler runtime, a self-hostable relay, and tools to talk to agents.',
    )
    .version(packageVersion(), '-V, --version', 'print the version')
    .enablePositionalOptions()
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void deps.stdout.write(s),
      writeErr: (s) => void deps.stderr.write(s),
      // Parse errors are reported by `main`, in the command's output mode.
      outputError: () => undefined,
    });
  addGlobalOptions(program);
  for (const command of commands) command.register(program, deps);
  program.addHelpText(
    'after',
    `
Environment:
  MRP_HOME        state directory (default ~/.mrp)
  MRP_KEY_FILE    identity key file (default $MRP_HOME/agent.key)
  MRP_RELAY_URL   relay base URL (default https://relay.mrphub.io)
  MRP_CONTEXT     saved context to use (see mrp context)
  MRP_DEBUG       trace http, ws or both (http,ws) on stderr
  NO_COLOR        disable colour

Exit codes: 0 ok · 1 the relay answered with an error, or another failure (e.g. another
process holds this identity) · 2 usage error or bad local file · 3 network error or timeout ·
4 authentication refused · 70 a handler ended mrp run (process.exit) · 130 interrupted (Ctrl-C where nothing needs finishing, e.g. while
send --wait waits; a second Ctrl-C while run, dev or tail are stopping).`,
  );
  // Every command (and sub-command) reports commander's own errors the same way.
  const exitOverride = (err: CommanderError): never => {
    throw err;
  };
  for (const cmd of allCommands(program)) cmd.exitOverride(exitOverride);
  return program;
}

function allCommands(cmd: Command): Command[] {
  return [cmd, ...cmd.commands.flatMap(allCommands)];
}

/** Commander's parse errors → our stable codes (README "Error codes"). */
const PARSE_ERROR_CODES: Record<string, string> = {
  'commander.unknownOption': 'unknown_option',
  'commander.unknownCommand': 'unknown_command',
  'commander.missingArgument': 'missing_argument',
  'commander.optionMissingArgument': 'missing_argument',
  'commander.missingMandatoryOptionValue': 'missing_argument',
  'commander.invalidArgument': 'invalid_argument',
  'commander.excessArguments': 'invalid_argument',
  'commander.conflictingOption': 'invalid_argument',
};

/** The command path the words name (`acl ls` for `mrp acl --key K ls x`), for a help hint. */
function commandPath(program: Command, argv: readonly string[]): string[] {
  const path: string[] = [];
  let cmd = program;
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i]!;
    // The value of a global option (`--key acl`) is no command word.
    if (VALUE_OPTIONS.has(word)) {
      i++;
      continue;
    }
    const next = cmd.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (!next) continue;
    path.push(next.name());
    cmd = next;
  }
  return path;
}

/** A commander parse error as a UsageError: `error: unknown option '--nope' — did you mean --json?` */
function parseError(err: CommanderError, path: string[]): UsageError {
  const [first = '', ...rest] = err.message.replace(/^error:\s*/, '').split('\n');
  const suggestion = rest
    .join(' ')
    .trim()
    .replace(/^\((.*)\)$/, '$1');
  const help = `\`mrp ${[...path, '--help'].join(' ')}\``;
  const hint = suggestion ? `${suggestion.charAt(0).toLowerCase()}${suggestion.slice(1)} (see ${help})` : `see ${help}`;
  return new UsageError(first.replace(/\.$/, ''), { code: PARSE_ERROR_CODES[err.code] ?? 'usage', hint });
}

/**
 * Whether the command line asks for JSON output, judged on the raw words (a parse error happens
 * before commander knows). `send --json <value>` is a body, not the output flag.
 */
export function wantsJson(argv: readonly string[]): boolean {
  const words = argv.includes('--') ? argv.slice(0, argv.indexOf('--')) : argv;
  // Before the `send` word, `--json` is the global output flag (`mrp --json send …`).
  const send = words.indexOf('send');
  return words.some(
    (w, i) =>
      w === '--json' && !(send !== -1 && i > send && words[i + 1] !== undefined && !words[i + 1]!.startsWith('-')),
  );
}

export async function main(argv: string[], deps: Deps): Promise<number> {
  const sole = soleCommand(argv);
  const program = buildProgram(deps, sole ? [await sole()] : await loadCommands());
  if (argv.length === 0) {
    program.outputHelp();
    return EXIT.ok;
  }
  try {
    await program.parseAsync(protectKeyArguments(unknownHelpTopic(argv, program) ?? argv), { from: 'user' });
    return EXIT.ok;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
        return EXIT.ok;
      }
      if (err.exitCode === 0) return EXIT.ok;
      // One format for every failure: one line (or {"error":…} with --json) on stderr, exit 2.
      const out = await Output.create(deps, {
        json: wantsJson(argv),
        quiet: false,
        debug: false,
        noColor: argv.includes('--no-color'),
      });
      out.error(parseError(err, commandPath(program, argv)));
      return EXIT.usage;
    }
    if (err instanceof ReportedError) return err.exitCode;
    // Only failures outside any command (building the context itself) get here.
    const out = await Output.create(deps, globalsOf(program));
    out.error(err);
    return exitCodeFor(err);
  }
}
