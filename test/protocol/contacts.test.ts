import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type ConfigError, UsageError } from '../../src/core/errors.js';
import {
  addContact,
  CONTACTS_MAX_DEPTH,
  emptyBook,
  nameForKey,
  parseContacts,
  removeContact,
  resolveRecipient,
  serializeContacts,
} from '../../src/protocol/contacts.js';

const A = 'ebVWLo_mVPlAeLES6KmLp5AfhTrmlb7X4OORC60ElmQ';
const B = '5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA';

describe('contacts layouts', () => {
  it('reads the canonical layout and keeps unknown fields on rewrite', () => {
    const text = JSON.stringify({
      version: 3,
      contacts: [
        {
          name: 'TranslateBot',
          public_key: B,
          alias: 'tr',
          note: 'fast',
          added_at: '2026-03-05T12:00:00Z',
          color: 'blue',
        },
      ],
    });
    const book = parseContacts(text, 'f');
    assert.equal(book.contacts[0]?.['color'], 'blue');
    const again = JSON.parse(serializeContacts(book));
    assert.equal(again.version, 3);
    assert.equal(again.contacts[0].color, 'blue');
    assert.equal(again.contacts[0].alias, 'tr');
  });

  it('ignores a leading UTF-8 BOM; refuses nesting deeper than CONTACTS_MAX_DEPTH before parsing', () => {
    const book = parseContacts(`\uFEFF${JSON.stringify({ contacts: [{ name: 'a', public_key: A }] })}`, 'f');
    assert.equal(nameForKey(book, A), 'a');
    const deep = `{"contacts":[{"name":"a","public_key":"${A}","x":${'['.repeat(CONTACTS_MAX_DEPTH)}${']'.repeat(CONTACTS_MAX_DEPTH)}}]}`;
    assert.throws(
      () => parseContacts(deep, 'f.json'),
      (err: ConfigError) =>
        err.code === 'contacts_invalid' && /f\.json is refused: JSON nested deeper than 32/.test(err.message),
    );
    assert.throws(
      () => parseContacts('{', 'f.json'),
      (err: ConfigError) => err.code === 'contacts_invalid' && /f\.json is not valid JSON/.test(err.message),
    );
  });

  it('reads a bare array', () => {
    const book = parseContacts(JSON.stringify([{ name: 'a', public_key: A }]), 'f');
    assert.deepEqual(book.contacts, [{ name: 'a', public_key: A }]);
  });

  it('reads a name → key map and a name → object map, writing the canonical layout', () => {
    const book = parseContacts(JSON.stringify({ alice: A, bob: { public_key: B, alias: 'b', extra: 1 } }), 'f');
    assert.deepEqual(book.contacts, [
      { name: 'alice', public_key: A },
      { name: 'bob', public_key: B, alias: 'b', extra: 1 },
    ]);
    assert.deepEqual(JSON.parse(serializeContacts(book)), { contacts: book.contacts });
    assert.ok(serializeContacts(book).endsWith('}\n'));
  });

  it('treats an empty file as no contacts and rejects broken JSON naming the file', () => {
    assert.deepEqual(parseContacts('  \n', 'f'), emptyBook());
    assert.throws(() => parseContacts('{', '/h/contacts.json'), /\/h\/contacts\.json/);
    assert.throws(() => parseContacts('42', '/h/contacts.json'), /\/h\/contacts\.json/);
  });
});

describe('resolution (§1.3)', () => {
  const book = parseContacts(
    JSON.stringify({
      contacts: [
        { name: 'Alice', public_key: A, alias: 'bob' },
        { name: 'bob', public_key: B },
        { name: 'carol', public_key: B, alias: 'c' },
      ],
    }),
    'f',
  );

  it('a key is used as is', () => {
    assert.equal(resolveRecipient(book, A, 'f'), A);
  });
  it('exact name beats alias', () => {
    assert.equal(resolveRecipient(book, 'bob', 'f'), B);
  });
  it('then exact alias, then case-insensitive name', () => {
    assert.equal(resolveRecipient(book, 'c', 'f'), B);
    assert.equal(resolveRecipient(book, 'alice', 'f'), A);
    assert.equal(resolveRecipient(book, 'CAROL', 'f'), B);
  });
  it('no match is an error with a fix', () => {
    assert.throws(
      () => resolveRecipient(book, 'dave', '/h/contacts.json'),
      (e: unknown) => e instanceof UsageError && e.code === 'unknown_contact' && /contacts add dave/.test(e.hint ?? ''),
    );
  });
  it('an ambiguous match is an error', () => {
    const twins = parseContacts(
      JSON.stringify([
        { name: 'Sam', public_key: A },
        { name: 'SAM', public_key: B },
      ]),
      'f',
    );
    assert.equal(resolveRecipient(twins, 'Sam', 'f'), A);
    assert.equal(resolveRecipient(twins, 'SAM', 'f'), B);
    assert.throws(
      () => resolveRecipient(twins, 'sam', 'f'),
      (e: unknown) => e instanceof UsageError && e.code === 'ambiguous_contact',
    );
  });
  it('names the contact of a key', () => {
    assert.equal(nameForKey(book, A), 'Alice');
    assert.equal(nameForKey(book, 'zzz'), undefined);
  });
});

describe('editing', () => {
  it('adds, refuses duplicates ignoring case, replaces with force, removes', () => {
    let book = addContact(emptyBook(), { name: 'alice', public_key: A });
    assert.throws(
      () => addContact(book, { name: 'ALICE', public_key: B }),
      (e: unknown) => e instanceof UsageError && e.code === 'contact_exists',
    );
    book = addContact(book, { name: 'alice', public_key: B, note: 'new' }, { replace: true });
    assert.deepEqual(book.contacts, [{ name: 'alice', public_key: B, note: 'new' }]);
    assert.throws(() => addContact(book, { name: 'eve', public_key: 'nope' }));
    assert.throws(() => addContact(book, { name: A, public_key: A }), /must not look like a public key/);
    assert.throws(() => addContact(book, { name: 'bob', public_key: A, alias: 'Alice' }), /already used/);
    const { book: after, removed } = removeContact(book, 'ALICE');
    assert.equal(removed.name, 'alice');
    assert.equal(after.contacts.length, 0);
    assert.throws(
      () => removeContact(after, 'alice'),
      (e: unknown) => e instanceof UsageError && e.code === 'unknown_contact',
    );
  });
});
