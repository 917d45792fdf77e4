import type { Command } from 'commander';
import { addContact, type Contact, removeContact } from '../../protocol/contacts.js';
import { formatInstant } from '../../protocol/signing.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { safeText } from '../render.js';

export interface ContactAddOptions {
  alias?: string;
  note?: string;
  force?: boolean;
}

export async function runContactsAdd(ctx: CliContext, options: ContactAddOptions, args: string[]): Promise<void> {
  const [name, key] = args as [string, string];
  const contact: Contact = { name, public_key: key };
  if (options.alias !== undefined) contact.alias = options.alias;
  if (options.note !== undefined) contact.note = options.note;
  contact.added_at = formatInstant(Math.floor(ctx.deps.clock.now() / 1000) * 1000);
  const book = addContact(await ctx.contacts(), contact, { replace: options.force === true });
  await ctx.saveContacts(book);
  ctx.out.result(contact, () => `${ctx.out.style.green('✔')} Added ${ctx.out.style.bold(safeText(name))} → ${key}`);
}

export async function runContactsList(ctx: CliContext): Promise<void> {
  const { contacts } = await ctx.contacts();
  ctx.out.result(
    contacts,
    () =>
      contacts.length === 0
        ? `No contacts yet (${ctx.contactsPath}). Add one with \`mrp contacts add <name> <public-key>\`.`
        : ctx.out.table(
            ['NAME', 'ALIAS', 'PUBLIC KEY', 'NOTE'],
            contacts.map((c) =>
              [c.name, c.alias, c.public_key, c.note].map((v) =>
                safeText(typeof v === 'string' ? v : v === undefined ? '' : JSON.stringify(v)),
              ),
            ),
          ),
    () => contacts.flatMap((c) => (typeof c.name === 'string' && c.name !== '' ? [safeText(c.name)] : [])),
  );
}

export async function runContactsRemove(ctx: CliContext, _options: unknown, args: string[]): Promise<void> {
  const { book, removed } = removeContact(await ctx.contacts(), args[0]!);
  await ctx.saveContacts(book);
  ctx.out.result(removed, () => `${ctx.out.style.green('✔')} Removed ${ctx.out.style.bold(safeText(removed.name))}`);
}

export function register(program: Command, deps: Deps): void {
  const contacts = addGlobalOptions(program.command('contacts')).description(
    `named peers, shared with the official CLI (~/.mrp/contacts.json)`,
  );
  examples(contacts, [
    'mrp contacts add alice 5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA --alias a',
    'mrp contacts ls',
    'mrp contacts rm alice',
  ]);

  const add = contacts
    .command('add')
    .description('add a contact')
    .argument('<name>', 'a unique name')
    .argument('<public-key>', "the peer's 43-character public key")
    .option('--alias <alias>', 'a short alternative name')
    .option('--note <text>', 'a free-form note')
    .option('-f, --force', 'replace a contact with the same name');
  examples(addGlobalOptions(add), [
    'mrp contacts add alice 5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA',
    'mrp contacts add bot <key> --alias b --note "translation bot" --force',
  ]).action(action(deps, runContactsAdd));

  const ls = contacts.command('ls').alias('list').description('list contacts');
  examples(addGlobalOptions(ls), [
    'mrp contacts ls',
    'mrp contacts ls --json',
    'mrp contacts ls -q   # names only',
  ]).action(action(deps, runContactsList));

  const rm = contacts.command('rm').alias('remove').description('remove a contact').argument('<name>', 'contact name');
  examples(addGlobalOptions(rm), ['mrp contacts rm alice']).action(action(deps, runContactsRemove));
}
