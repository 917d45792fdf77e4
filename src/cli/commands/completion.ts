/**
 * `mrp completion bash|zsh|fish` and `mrp completion --json`: generated from the commander tree, so
 * they never drift from the real flags. What a value may be is known per flag (modes, statuses,
 * policies, files, contact names) and per positional argument; a flag's value is never completed
 * with flags, and flags are offered only once a word starts with "-". Contact names come from
 * `mrp contacts ls -q` and context names from `mrp context ls -q` at completion time.
 */
import type { Argument, Command, Option } from 'commander';
import { UsageError } from '../../core/errors.js';
import { ACL_ENTRY_TYPES, INBOX_POLICIES, MESSAGE_STATUSES } from '../../protocol/constants.js';
import { AGENT_MODES } from '../../runtime/mode.js';
import { CONFIG_KEYS } from '../config.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { DEV_MODES } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';

/**
 * What a flag's value or an argument may be: a fixed list, a file, a contact name, a saved
 * context's name, or free text.
 */
export type ValueKind = readonly string[] | 'file' | 'directory' | 'contact' | 'context' | 'text';

const SHELLS = ['bash', 'zsh', 'fish'] as const;

/**
 * Values of flags that take one, by long name, or by `<command path> <long name>` where one
 * command takes other values than the rest. Flags not listed take free text.
 */
const OPTION_VALUES: Record<string, ValueKind> = {
  '--mode': AGENT_MODES,
  'dev --mode': DEV_MODES,
  '--context': 'context',
  '--status': MESSAGE_STATUSES,
  '--log-format': ['pretty', 'json'],
  '--log-level': ['debug', 'info', 'warn', 'error'],
  '--policy': INBOX_POLICIES,
  '--type': ACL_ENTRY_TYPES,
  '--content-type': ['application/json', 'application/x-mrp-request+json', 'text/plain'],
  '--handler': 'file',
  '--key': 'file',
  '--manifest': 'file',
  '--file': 'file',
  '--data-dir': 'directory',
  '--to': 'contact',
  '--from': 'contact',
};

/** Values of positional arguments: `<command path>:<index>`. */
const ARGUMENT_VALUES: Record<string, ValueKind> = {
  'send:0': 'contact',
  'profile:0': 'contact',
  'acl allow:0': 'contact',
  'acl block:0': 'contact',
  'acl rm:0': 'contact',
  'acl policy:0': INBOX_POLICIES,
  'contacts rm:0': 'contact',
  'context use:0': 'context',
  'context show:0': 'context',
  'context rm:0': 'context',
  'config get:0': Object.keys(CONFIG_KEYS),
  'config set:0': Object.keys(CONFIG_KEYS),
  'config unset:0': Object.keys(CONFIG_KEYS),
  'completion:0': SHELLS,
};

export interface CompletionOption {
  flags: string[];
  description: string;
  /** null: a switch; otherwise what its value may be. */
  value: ValueKind | null;
}

export interface CompletionNode {
  path: string[];
  description: string;
  commands: Array<{ name: string; aliases: string[]; description: string }>;
  options: CompletionOption[];
  arguments: Array<{ name: string; required: boolean; variadic: boolean; value: ValueKind }>;
}

/** What the value of flag `long` of command `path` may be (`OPTION_VALUES`). */
function optionValue(path: readonly string[], long: string | undefined): ValueKind {
  return OPTION_VALUES[`${path.join(' ')} ${long}`] ?? OPTION_VALUES[long ?? ''] ?? 'text';
}

/** Every command path with its sub-commands, options and arguments, from the commander tree. */
export function completionTree(cmd: Command, path: string[] = []): CompletionNode[] {
  const visible = cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
  const node: CompletionNode = {
    path,
    description: cmd.description(),
    commands: visible.map((c) => ({ name: c.name(), aliases: c.aliases(), description: c.description() })),
    options: (cmd.options as readonly Option[])
      .filter((o) => !o.hidden)
      .map((o) => ({
        flags: [o.long, o.short].filter((f): f is string => !!f),
        description: o.description,
        // An optional value (`--wait [duration]`, `send --json [value]`) is never assumed.
        value: o.required ? optionValue(path, o.long) : null,
      })),
    arguments: (cmd.registeredArguments as readonly Argument[]).map((a, i) => ({
      name: a.name(),
      required: a.required,
      variadic: a.variadic,
      value: ARGUMENT_VALUES[`${path.join(' ')}:${i}`] ?? 'text',
    })),
  };
  return [node, ...visible.flatMap((c) => completionTree(c, [...path, c.name()]))];
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Flags that take a value, anywhere in the tree (their arity agrees everywhere; a test checks):
 * `all` every one; `shared` those whose values are the same in every command, with them;
 * `own` the values of a flag in a command that takes others (`dev --mode`), by `<path>:<flag>`.
 */
function valueFlags(nodes: CompletionNode[]): {
  all: Set<string>;
  shared: Map<string, ValueKind>;
  own: Map<string, ValueKind>;
} {
  const all = new Set<string>();
  const shared = new Map<string, ValueKind>();
  const own = new Map<string, ValueKind>();
  for (const n of nodes)
    for (const o of n.options) {
      if (o.value === null) continue;
      const long = o.flags.find((f) => f.startsWith('--'));
      const differs = JSON.stringify(o.value) !== JSON.stringify(optionValue([], long));
      for (const f of o.flags) {
        all.add(f);
        if (differs) own.set(`${n.path.join(' ')}:${f}`, o.value);
        else shared.set(f, o.value);
      }
    }
  return { all, shared, own };
}

/** `'a b')` → `cmd='a b'; return 0 ;;` lines: each command word (and alias) under its parent. */
function commandCases(nodes: CompletionNode[]): string[] {
  return nodes.flatMap((n) =>
    n.commands.flatMap((c) =>
      [c.name, ...c.aliases].map(
        (name) =>
          `      ${quote([...n.path, name].join(' '))}) cmd=${quote([...n.path, c.name].join(' '))}; return 0 ;;`,
      ),
    ),
  );
}

/** Candidates of `kind` for the word in `$cur`, as a shell snippet (bash or zsh). */
function values(kind: ValueKind, shell: 'bash' | 'zsh'): string {
  if (shell === 'zsh') {
    if (kind === 'file') return '_files';
    if (kind === 'directory') return '_files -/';
    // biome-ignore lint/suspicious/noTemplateCurlyInString: zsh parameter expansion, not a JS template
    if (kind === 'contact') return 'compadd -- ${(f)"$(mrp contacts ls -q 2>/dev/null)"}';
    // biome-ignore lint/suspicious/noTemplateCurlyInString: zsh parameter expansion, not a JS template
    if (kind === 'context') return 'compadd -- ${(f)"$(mrp context ls -q 2>/dev/null)"}';
    if (kind === 'text') return ':';
    return `compadd -- ${kind.map(quote).join(' ')}`;
  }
  if (kind === 'file') return 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))';
  if (kind === 'directory') return 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur"))';
  // Names are data: never through `compgen -W`, which expands `$(…)` and backquotes in its words
  // (contacts.json is shared with other tools; a name there must not run when Tab is pressed).
  if (kind === 'contact') return '_mrp_names mrp contacts ls -q';
  if (kind === 'context') return '_mrp_names mrp context ls -q';
  if (kind === 'text') return 'COMPREPLY=()';
  return `COMPREPLY=($(compgen -W ${quote(kind.join(' '))} -- "$cur"))`;
}

/** The case arms shared by both shells: values after a flag, per node words, per argument. */
function arms(nodes: CompletionNode[], shell: 'bash' | 'zsh'): { flags: string; valueCases: string; argCases: string } {
  const { all, shared, own } = valueFlags(nodes);
  // Cases on "$cmd:$pending": a command's own values first, then a flag's everywhere else.
  const byKind = new Map<string, string[]>();
  const add = (kind: ValueKind, pattern: string): void => {
    byKind.set(JSON.stringify(kind), [...(byKind.get(JSON.stringify(kind)) ?? []), pattern]);
  };
  for (const [key, kind] of own) add(kind, quote(key));
  const ownCases = [...byKind];
  byKind.clear();
  for (const [flag, kind] of shared) add(kind, `*${quote(`:${flag}`)}`);
  const valueCases = [...ownCases, ...byKind]
    .map(([k, patterns]) => `      ${patterns.join('|')}) ${values(JSON.parse(k) as ValueKind, shell)} ;;`)
    .join('\n');
  const argCases = nodes
    .flatMap((n) =>
      n.arguments.flatMap((a, i) =>
        a.value === 'text' ? [] : [`      ${quote(`${n.path.join(' ')}:${i}`)}) ${values(a.value, shell)} ;;`],
      ),
    )
    .join('\n');
  return {
    flags: [...all].map(quote).join('|') || "''",
    valueCases: valueCases || "      '') ;;",
    argCases: argCases || "      '') ;;",
  };
}

function bash(nodes: CompletionNode[]): string {
  const { flags, valueCases, argCases } = arms(nodes, 'bash');
  const nodeCases = nodes
    .map(
      (n) =>
        `    ${quote(n.path.join(' '))}) subs=${quote(n.commands.flatMap((c) => [c.name, ...c.aliases]).join(' '))}; opts=${quote(n.options.flatMap((o) => o.flags).join(' '))} ;;`,
    )
    .join('\n');
  return `# mrp bash completion: eval "$(mrp completion bash)"
# Sets cmd to the command path "$1" names (parent path + word); fails for anything else.
_mrp_command() {
  case "$1" in
${commandCases(nodes).join('\n')}
  esac
  return 1
}
# Adds the lines "$@" prints that start with $cur to COMPREPLY, shell-quoted. Read as data: compgen -W
# would expand $(…) and backquotes inside a contact name.
_mrp_names() {
  local line
  while IFS= read -r line; do
    if [ -n "$line" ] && [[ "$line" == "$cur"* ]]; then COMPREPLY+=("$(printf '%q' "$line")"); fi
  done < <("$@" 2>/dev/null)
}
_mrp() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" cmd="" w i args=0 pending="" subs="" opts=""
  for ((i = 1; i < COMP_CWORD; i++)); do
    w="\${COMP_WORDS[i]}"
    if [ -n "$pending" ]; then pending=""; continue; fi
    case "$w" in
      --*=*) ;;
      -*) case "$w" in ${flags}) pending="$w" ;; esac ;;
      *) if [ "$args" -gt 0 ] || ! _mrp_command "\${cmd:+$cmd }$w"; then args=$((args + 1)); fi ;;
    esac
  done
  COMPREPLY=()
  # The word after a flag that takes a value: only its values, never flags.
  if [ -n "$pending" ]; then
    case "$cmd:$pending" in
${valueCases}
    esac
    return
  fi
  case "$cmd" in
${nodeCases}
  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  elif [ "$args" -eq 0 ] && [ -n "$subs" ]; then
    COMPREPLY=($(compgen -W "$subs" -- "$cur"))
  else
    # A positional argument: its values (contact names, policies, …); nothing for free text.
    case "$cmd:$args" in
${argCases}
    esac
  fi
}
complete -F _mrp mrp
`;
}

function zsh(nodes: CompletionNode[]): string {
  const { flags, valueCases, argCases } = arms(nodes, 'zsh');
  // _describe wants "name:description"; colons inside the name are escaped.
  const item = (name: string, description: string): string => quote(`${name.replace(/:/g, '\\:')}:${description}`);
  const nodeCases = nodes
    .map((n) => {
      const subs = n.commands.map((c) => item(c.name, c.description)).join(' ');
      const opts = n.options.flatMap((o) => o.flags.map((f) => item(f, o.description))).join(' ');
      return `    ${quote(n.path.join(' '))}) subs=(${subs}); opts=(${opts}) ;;`;
    })
    .join('\n');
  // Note: never a variable named "path" in zsh (it is tied to $PATH).
  return `#compdef mrp
# mrp zsh completion: source <(mrp completion zsh)   (or save it as _mrp in a directory of $fpath)
_mrp_command() {
  case "$1" in
${commandCases(nodes).join('\n')}
  esac
  return 1
}
_mrp() {
  local -a subs opts
  local cmd="" w pending="" cur="\${words[CURRENT]}"
  integer i args=0
  for (( i = 2; i < CURRENT; i++ )); do
    w="\${words[i]}"
    if [[ -n "$pending" ]]; then pending=""; continue; fi
    case "$w" in
      --*=*) ;;
      -*) case "$w" in ${flags}) pending="$w" ;; esac ;;
      *) if (( args > 0 )) || ! _mrp_command "\${cmd:+$cmd }$w"; then (( args++ )); fi ;;
    esac
  done
  if [[ -n "$pending" ]]; then
    case "$cmd:$pending" in
${valueCases}
    esac
    return
  fi
  case "$cmd" in
${nodeCases}
  esac
  if [[ "$cur" == -* ]]; then
    _describe 'option' opts
  elif (( args == 0 && \${#subs} > 0 )); then
    _describe 'command' subs
  else
    case "$cmd:$args" in
${argCases}
    esac
  fi
}
compdef _mrp mrp
`;
}

function fishValues(kind: ValueKind): string {
  if (kind === 'file' || kind === 'directory') return ' -r -F';
  if (kind === 'contact') return ` -r -f -a ${quote('(mrp contacts ls -q 2>/dev/null)')}`;
  if (kind === 'context') return ` -r -f -a ${quote('(mrp context ls -q 2>/dev/null)')}`;
  if (kind === 'text') return ' -r -f';
  return ` -r -f -a ${quote(kind.join(' '))}`;
}

function fish(nodes: CompletionNode[]): string {
  const lines = [
    '# mrp fish completion: mrp completion fish > ~/.config/fish/completions/mrp.fish',
    'complete -c mrp -f',
  ];
  for (const n of nodes) {
    const cond =
      n.path.length === 0
        ? '__fish_use_subcommand'
        : `__fish_seen_subcommand_from ${n.path[n.path.length - 1]}${n.path.length > 1 ? `; and __fish_seen_subcommand_from ${n.path[0]}` : ''}`;
    for (const c of n.commands)
      lines.push(`complete -c mrp -n ${quote(cond)} -a ${quote(c.name)} -d ${quote(c.description)}`);
    for (const o of n.options) {
      const long = o.flags.find((f) => f.startsWith('--'))?.slice(2);
      const short = o.flags.find((f) => /^-[^-]/.test(f))?.slice(1);
      lines.push(
        `complete -c mrp -n ${quote(cond)}${long ? ` -l ${long}` : ''}${short ? ` -s ${short}` : ''}${o.value === null ? '' : fishValues(o.value)} -d ${quote(o.description)}`,
      );
    }
    const first = n.arguments[0];
    if (n.commands.length === 0 && first && first.value !== 'text') {
      lines.push(`complete -c mrp -n ${quote(cond)}${fishValues(first.value).replace(' -r', '')}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export interface CompletionOptions {
  json?: boolean;
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('completion')
    .description('print a shell completion script (or, with --json, the command tree it is made from)')
    .argument('[shell]', SHELLS.join(' | '));
  examples(addGlobalOptions(cmd), [
    'eval "$(mrp completion bash)"   # add to ~/.bashrc',
    'source <(mrp completion zsh)     # add to ~/.zshrc',
    'mrp completion fish > ~/.config/fish/completions/mrp.fish',
    'mrp completion --json | jq ".commands[].path"',
  ]);
  cmd.action(
    action(deps, async (ctx: CliContext, _o: CompletionOptions, args: string[]) => {
      const nodes = completionTree(program);
      const shell = args[0];
      // A shell named is checked with --json too (the tree is the same for each, a typo is not).
      const render = shell === undefined ? undefined : { bash, zsh, fish }[shell];
      if (shell !== undefined && !render)
        throw new UsageError(`no completion for "${shell}"; use bash, zsh or fish`, { code: 'invalid_argument' });
      if (ctx.globals.json) {
        ctx.out.jsonLine({ commands: nodes });
        return;
      }
      if (!render)
        throw new UsageError('which shell? give bash, zsh or fish (or --json for the command tree)', {
          code: 'missing_argument',
        });
      ctx.out.write(render(nodes));
    }),
  );
}
