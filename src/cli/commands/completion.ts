import type { Command, Option } from 'commander';
import { UsageError } from '../../core/errors.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, examples } from '../program.js';

interface Node {
  path: string[];
  description: string;
  commands: Array<{ name: string; description: string }>;
  options: Array<{ flags: string[]; description: string }>;
}

/** Every command path with its sub-commands and options, from the commander tree. */
function walk(cmd: Command, path: string[] = []): Node[] {
  const visible = cmd.commands.filter((c) => !(c as unknown as { _hidden?: boolean })._hidden);
  const node: Node = {
    path,
    description: cmd.description(),
    commands: visible.map((c) => ({ name: c.name(), description: c.description() })),
    options: (cmd.options as readonly Option[])
      .filter((o) => !o.hidden)
      .map((o) => ({ flags: [o.long, o.short].filter((f): f is string => !!f), description: o.description })),
  };
  return [node, ...visible.flatMap((c) => walk(c, [...path, c.name()]))];
}

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

function bash(nodes: Node[]): string {
  const cases = nodes
    .map((n) => `      ${quote(n.path.join(' '))}) words=${quote([...n.commands.map((c) => c.name), ...n.options.flatMap((o) => o.flags)].join(' '))}; break ;;`)
    .join('\n');
  return `# mrp bash completion: eval "$(mrp completion bash)"
_mrp() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" path="" words="" w
  for w in "\${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
    case "$w" in -*) ;; *) path="\${path:+$path }$w" ;; esac
  done
  # Drop trailing arguments until the words name a known command.
  while :; do
    case "$path" in
${cases}
    esac
    case "$path" in *" "*) path="\${path% *}" ;; *) path="" ;; esac
  done
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
  [ \${#COMPREPLY[@]} -eq 0 ] && COMPREPLY=($(compgen -f -- "$cur"))
}
complete -F _mrp mrp
`;
}

function zsh(nodes: Node[]): string {
  // _describe wants "name:description"; colons inside the name are escaped.
  const item = (name: string, description: string): string => quote(`${name.replace(/:/g, '\\:')}:${description}`);
  const entries = nodes
    .map((n) => {
      const items = [...n.commands.map((c) => item(c.name, c.description)), ...n.options.flatMap((o) => o.flags.map((f) => item(f, o.description)))];
      return `      ${quote(n.path.join(' '))}) items=(${items.join(' ')}); break ;;`;
    })
    .join('\n');
  return `#compdef mrp
# mrp zsh completion: mrp completion zsh > "\${fpath[1]}/_mrp"  (or: source <(mrp completion zsh))
_mrp() {
  local -a items
  local path="" w
  for w in "\${(@)words[2,CURRENT-1]}"; do
    [[ "$w" == -* ]] || path="\${path:+$path }$w"
  done
  while true; do
    case "$path" in
${entries}
    esac
    if [[ "$path" == *" "* ]]; then path="\${path% *}"; else path=""; fi
  done
  _describe 'mrp' items || _files
}
compdef _mrp mrp
`;
}

function fish(nodes: Node[]): string {
  const lines = ['# mrp fish completion: mrp completion fish > ~/.config/fish/completions/mrp.fish', 'complete -c mrp -f'];
  for (const n of nodes) {
    const cond =
      n.path.length === 0
        ? '__fish_use_subcommand'
        : `__fish_seen_subcommand_from ${n.path[n.path.length - 1]}${n.path.length > 1 ? `; and __fish_seen_subcommand_from ${n.path[0]}` : ''}`;
    for (const c of n.commands) lines.push(`complete -c mrp -n ${quote(cond)} -a ${quote(c.name)} -d ${quote(c.description)}`);
    for (const o of n.options) {
      const long = o.flags.find((f) => f.startsWith('--'))?.slice(2);
      const short = o.flags.find((f) => /^-[^-]/.test(f))?.slice(1);
      lines.push(`complete -c mrp -n ${quote(cond)}${long ? ` -l ${long}` : ''}${short ? ` -s ${short}` : ''} -d ${quote(o.description)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('completion')
    .description('print a shell completion script')
    .argument('<shell>', 'bash | zsh | fish');
  examples(cmd, ['eval "$(mrp completion bash)"   # add to ~/.bashrc', 'mrp completion zsh > "${fpath[1]}/_mrp"', 'mrp completion fish > ~/.config/fish/completions/mrp.fish']);
  cmd.action(
    action(deps, async (ctx: CliContext, _o: unknown, args: string[]) => {
      const shell = args[0]!;
      const render = { bash, zsh, fish }[shell];
      if (!render) throw new UsageError(`no completion for "${shell}"; use bash, zsh or fish`, { code: 'invalid_argument' });
      ctx.out.write(render(walk(program)));
    }),
  );
}
