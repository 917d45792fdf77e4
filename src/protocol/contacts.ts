/**
 * Contacts file codec and name resolution (docs/protocol.md §1.3). Reading accepts every layout §1.3 lists;
 * writing always produces the canonical `{"contacts": [...]}` layout and keeps every field it
 * does not know, so a file shared with the official CLI, MCP server and plugin loses nothing.
 */
import { ConfigError, UsageError } from '../core/errors.js';
import { hasControlChars } from '../core/printable.js';
import { isPublicKey } from './encoding.js';
import { JsonInputError, parseJson } from './json.js';
import { isPlainObject } from './validate.js';

export interface Contact {
  name: string;
  public_key: string;
  alias?: string;
  note?: string;
  added_at?: string;
  [field: string]: unknown;
}

export interface ContactBook {
  contacts: Contact[];
  /** Unknown top-level fields of a canonical-layout file, kept on rewrite. */
  extra: Record<string, unknown>;
}

export function emptyBook(): ContactBook {
  return { contacts: [], extra: {} };
}

function fromEntry(value: unknown, name?: string): Contact {
  if (typeof value === 'string') return { name: name ?? '', public_key: value };
  if (isPlainObject(value)) {
    const entry = { ...value } as Contact;
    if (name !== undefined && typeof entry.name !== 'string') entry.name = name;
    return entry;
  }
  return { name: name ?? '', public_key: '', value };
}

/** How deep a contacts file may nest: the layouts need 3 levels; extra fields get some room. */
export const CONTACTS_MAX_DEPTH = 32;

/**
 * Parses a contacts file in any of the §1.3 layouts. `file` names it in errors. A leading UTF-8
 * BOM (added by some Windows editors) is ignored; nesting deeper than `CONTACTS_MAX_DEPTH` is
 * refused before parsing.
 */
export function parseContacts(text: string, file: string): ContactBook {
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (text.trim() === '') return emptyBook();
  let data: unknown;
  try {
    data = parseJson(text, CONTACTS_MAX_DEPTH);
  } catch (err) {
    const reason = err instanceof JsonInputError ? err.message : String(err);
    throw new ConfigError(
      'contacts_invalid',
      `contacts file ${file} is ${reason.startsWith('not ') ? reason : `refused: ${reason}`}`,
      {
        file,
        hint: 'fix the JSON by hand, or move the file away to start a new one',
      },
    );
  }
  if (Array.isArray(data)) return { contacts: data.map((e) => fromEntry(e)), extra: {} };
  if (isPlainObject(data)) {
    if (Array.isArray(data['contacts'])) {
      const { contacts, ...extra } = data;
      return { contacts: (contacts as unknown[]).map((e) => fromEntry(e)), extra };
    }
    return { contacts: Object.entries(data).map(([name, v]) => fromEntry(v, name)), extra: {} };
  }
  throw new ConfigError('contacts_invalid', `contacts file ${file} must hold a JSON object or array`, { file });
}

/** The canonical layout, pretty-printed, with a trailing newline. */
export function serializeContacts(book: ContactBook): string {
  return `${JSON.stringify({ ...book.extra, contacts: book.contacts }, null, 2)}\n`;
}

function usable(c: Contact): boolean {
  return typeof c.name === 'string' && c.name !== '' && isPublicKey(c.public_key);
}

function pick(matches: Contact[], query: string, how: string): Contact | undefined {
  if (matches.length === 1) return matches[0];
  if (matches.length > 1) {
    throw new UsageError(
      `"${query}" matches ${matches.length} contacts by ${how}: ${matches.map((c) => c.name).join(', ')}`,
      {
        code: 'ambiguous_contact',
        hint: 'use the public key, or rename one of them in contacts.json',
      },
    );
  }
  return undefined;
}

/** Finds a contact by exact name, then exact alias, then case-insensitive name (§1.3). */
export function findContact(book: ContactBook, query: string): Contact | undefined {
  const list = book.contacts.filter(usable);
  return (
    pick(
      list.filter((c) => c.name === query),
      query,
      'name',
    ) ??
    pick(
      list.filter((c) => c.alias === query),
      query,
      'alias',
    ) ??
    pick(
      list.filter((c) => c.name.toLowerCase() === query.toLowerCase()),
      query,
      'name (ignoring case)',
    )
  );
}

/**
 * Resolves a recipient/peer argument: a 43-character key is used as is; anything else must name
 * exactly one contact.
 */
export function resolveRecipient(book: ContactBook, query: string, file: string): string {
  if (isPublicKey(query)) return query;
  const found = findContact(book, query);
  if (found) return found.public_key;
  throw new UsageError(`"${query}" is neither a public key nor a contact in ${file}`, {
    code: 'unknown_contact',
    hint: `add it with \`mrp contacts add ${/^[\w.-]+$/.test(query) ? query : '<name>'} <public-key>\`, or pass the 43-character key`,
  });
}

/** A contact's display name for a key, if the book knows it. */
export function nameForKey(book: ContactBook, key: string): string | undefined {
  return book.contacts.find((c) => usable(c) && c.public_key === key)?.name;
}

/** Adds a contact; names and aliases are unique ignoring case. `replace` overwrites a same-name one. */
export function addContact(book: ContactBook, contact: Contact, options: { replace?: boolean } = {}): ContactBook {
  const keyLike: (s: string) => boolean = isPublicKey;
  if (!contact.name || keyLike(contact.name)) {
    throw new UsageError('a contact name must be non-empty and must not look like a public key', {
      code: 'invalid_argument',
    });
  }
  // A key-shaped alias could never be used: resolution takes such a string as the key itself (§1.3).
  if (contact.alias !== undefined && (contact.alias === '' || keyLike(contact.alias))) {
    throw new UsageError('a contact alias must be non-empty and must not look like a public key', {
      code: 'invalid_argument',
    });
  }
  // A name is typed to address someone and shown in lists: no line breaks or other control characters.
  for (const [what, value] of [
    ['name', contact.name],
    ['alias', contact.alias],
  ] as const) {
    if (value !== undefined && hasControlChars(value)) {
      throw new UsageError(`a contact ${what} must not contain control characters (line breaks, tabs, escapes)`, {
        code: 'invalid_argument',
      });
    }
  }
  if (!keyLike(contact.public_key)) {
    throw new UsageError(`"${contact.public_key}" is not a public key (43 base64url characters)`, {
      code: 'invalid_argument',
    });
  }
  const lower = contact.name.toLowerCase();
  const existing = book.contacts.findIndex((c) => typeof c.name === 'string' && c.name.toLowerCase() === lower);
  if (existing >= 0 && !options.replace) {
    throw new UsageError(`a contact named "${book.contacts[existing]!.name}" already exists`, {
      code: 'contact_exists',
      hint: 'pass --force to replace it, or choose another name',
    });
  }
  const clash = (s: string | undefined): boolean =>
    s !== undefined &&
    book.contacts.some(
      (c, i) =>
        i !== existing && [c.name, c.alias].some((v) => typeof v === 'string' && v.toLowerCase() === s.toLowerCase()),
    );
  if (clash(contact.alias) || clash(contact.name)) {
    throw new UsageError(`the alias or name "${contact.alias ?? contact.name}" is already used by another contact`, {
      code: 'contact_exists',
    });
  }
  const contacts = [...book.contacts];
  if (existing >= 0) contacts[existing] = { ...contacts[existing], ...contact };
  else contacts.push(contact);
  return { ...book, contacts };
}

/** Removes the contact with this name (exact, else ignoring case). */
export function removeContact(book: ContactBook, name: string): { book: ContactBook; removed: Contact } {
  let index = book.contacts.findIndex((c) => c.name === name);
  if (index < 0)
    index = book.contacts.findIndex((c) => typeof c.name === 'string' && c.name.toLowerCase() === name.toLowerCase());
  if (index < 0)
    throw new UsageError(`no contact named "${name}"`, { code: 'unknown_contact', hint: 'see `mrp contacts ls`' });
  const contacts = [...book.contacts];
  const [removed] = contacts.splice(index, 1);
  return { book: { ...book, contacts }, removed: removed! };
}
