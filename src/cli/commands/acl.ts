import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import { ACL_ENTRY_TYPES, INBOX_POLICIES } from '../../protocol/constants.js';
import { nameForKey } from '../../protocol/contacts.js';
import type { AclEntryType, InboxPolicy } from '../../protocol/types.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { allAclEntries } from '../manifest.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { fullTime, safeText } from '../render.js';

async function setEntry(ctx: CliContext, peer: string, type: AclEntryType): Promise<void> {
  const key = await ctx.resolve(peer);
  const client = await ctx.client();
  const entry = await client.putAcl(key, type);
  const profile = await client.getAgent(client.publicKey);
  const { style } = ctx.out;
  ctx.out.result(entry, () => {
    const lines = [
      `${style.green('✔')} ${type === 'allow' ? 'Allowed' : 'Blocked'} ${peer}${peer === key ? '' : style.dim(` (${key})`)}`,
    ];
    if (type === 'allow' && profile.inbox_policy !== 'allowlist') {
      lines.push(
        style.dim(
          `  note: your inbox policy is ${profile.inbox_policy}; allow entries matter with \`mrp acl policy allowlist\``,
        ),
      );
    }
    if (type === 'block' && profile.inbox_policy !== 'blocklist') {
      lines.push(
        style.dim(
          `  note: your inbox policy is ${profile.inbox_policy}; block entries matter with \`mrp acl policy blocklist\``,
        ),
      );
    }
    return lines;
  });
}

export async function runAclAllow(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  await setEntry(ctx, args[0]!, 'allow');
}

export async function runAclBlock(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  await setEntry(ctx, args[0]!, 'block');
}

export async function runAclRemove(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const key = await ctx.resolve(args[0]!);
  const client = await ctx.client();
  await client.deleteAcl(key);
  ctx.out.result(
    { peer_key: key, removed: true },
    () => `${ctx.out.style.green('✔')} Removed the ACL entry for ${args[0]}`,
  );
}

export async function runAclList(ctx: CliContext, options: { type?: string }): Promise<void> {
  if (options.type !== undefined && !(ACL_ENTRY_TYPES as readonly string[]).includes(options.type)) {
    throw new UsageError(`--type "${options.type}" must be allow or block`, { code: 'invalid_argument' });
  }
  const client = await ctx.client();
  const entries = await allAclEntries(client, options.type as AclEntryType | undefined);
  const profile = await client.getAgent(client.publicKey);
  const contacts = await ctx.contacts();
  ctx.out.result(
    { inbox_policy: profile.inbox_policy, entries },
    () => [
      `${ctx.out.style.dim('inbox policy')} ${profile.inbox_policy}`,
      ...(entries.length === 0
        ? [ctx.out.style.dim('No ACL entries.')]
        : ctx.out.table(
            ['TYPE', 'PEER', 'NAME', 'SINCE'],
            entries.map((e) => [
              safeText(e.entry_type),
              safeText(e.peer_key),
              safeText(nameForKey(contacts, e.peer_key) ?? ''),
              fullTime(e.created_at),
            ]),
          )),
    ],
    () => entries.map((e) => safeText(e.peer_key)),
  );
}

export async function runAclPolicy(ctx: CliContext, _o: unknown, args: string[]): Promise<void> {
  const policy = args[0]!;
  if (!(INBOX_POLICIES as readonly string[]).includes(policy)) {
    throw new UsageError(`"${policy}" is not an inbox policy; use one of ${INBOX_POLICIES.join(', ')}`, {
      code: 'invalid_argument',
    });
  }
  const client = await ctx.client();
  const profile = await client.updateProfile({ inbox_policy: policy as InboxPolicy });
  ctx.out.result(profile, () => `${ctx.out.style.green('✔')} Inbox policy is now ${profile.inbox_policy}`);
}

export function register(program: Command, deps: Deps): void {
  const acl = addGlobalOptions(program.command('acl')).description(
    'who may send to you: allow/block entries and the inbox policy',
  );
  examples(acl, [
    'mrp acl allow alice',
    'mrp acl block 5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA',
    'mrp acl ls --type allow',
    'mrp acl policy allowlist',
    'mrp acl rm alice',
  ]);
  acl.addHelpText(
    'after',
    '\nPolicies: open (anyone), closed (no one), allowlist (only allowed), blocklist (all but blocked; the default).\n',
  );
  const leaf = (cmd: Command, lines: string[]): Command => examples(addGlobalOptions(cmd), lines);
  leaf(
    acl
      .command('allow')
      .description('allow a peer (matters with the allowlist policy)')
      .argument('<peer>', 'key or contact'),
    ['mrp acl allow alice', 'mrp acl allow 5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA --json'],
  ).action(action(deps, runAclAllow));
  leaf(
    acl
      .command('block')
      .description('block a peer (matters with the blocklist policy)')
      .argument('<peer>', 'key or contact'),
    ['mrp acl block spammer', 'mrp acl block 5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA'],
  ).action(action(deps, runAclBlock));
  leaf(acl.command('rm').alias('remove').description("remove a peer's entry").argument('<peer>', 'key or contact'), [
    'mrp acl rm alice',
  ]).action(action(deps, runAclRemove));
  leaf(
    acl
      .command('ls')
      .alias('list')
      .description('list entries and the policy')
      .option('--type <type>', 'allow or block'),
    ['mrp acl ls', 'mrp acl ls --type block --json'],
  ).action(action(deps, runAclList));
  leaf(acl.command('policy').description('set the inbox policy').argument('<policy>', INBOX_POLICIES.join(' | ')), [
    'mrp acl policy allowlist',
    'mrp acl policy open',
  ]).action(action(deps, runAclPolicy));
}
