import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ValidationError,
  validateAclPut,
  validateProfilePatch,
  validateSendRequest,
} from '../../src/protocol/validate.js';

const KEY_B = '5_FioQvsVZr-oZXk3OhLaVaNXSywlj60RsBoXisX8vA';

function invalid(fn: () => unknown): ValidationError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof ValidationError, String(err));
    return err;
  }
  assert.fail('expected a ValidationError');
}

describe('send requests', () => {
  it('applies the documented defaults', () => {
    assert.deepEqual(validateSendRequest({ recipient_key: KEY_B, body: { text: 'hi' } }), {
      recipient_key: KEY_B,
      content_type: 'application/json',
      body: { text: 'hi' },
      attachments: [],
      thread_id: null,
      in_reply_to: null,
      expires_in: 604800,
      metadata: {},
    });
  });

  it('accepts any JSON body, including null, strings and arrays', () => {
    for (const body of [null, 'text', [1, 2], 0, false]) {
      assert.deepEqual(validateSendRequest({ recipient_key: KEY_B, body }).body, body);
    }
  });

  it('names the field and picks the status', () => {
    const cases: Array<[unknown, number, string]> = [
      [[], 400, ''],
      [{ body: 1 }, 400, 'recipient_key'],
      [{ recipient_key: 'short', body: 1 }, 400, 'recipient_key'],
      [{ recipient_key: KEY_B }, 400, 'body'],
      [{ recipient_key: KEY_B, body: 1, content_type: 5 }, 400, 'content_type'],
      [{ recipient_key: KEY_B, body: 1, expires_in: 0 }, 400, 'expires_in'],
      [{ recipient_key: KEY_B, body: 1, expires_in: 2592001 }, 400, 'expires_in'],
      [{ recipient_key: KEY_B, body: 1, expires_in: 1.5 }, 400, 'expires_in'],
      [{ recipient_key: KEY_B, body: 1, thread_id: 'has space' }, 400, 'thread_id'],
      [{ recipient_key: KEY_B, body: 1, thread_id: 'x'.repeat(129) }, 400, 'thread_id'],
      [{ recipient_key: KEY_B, body: 1, metadata: [] }, 400, 'metadata'],
      [{ recipient_key: KEY_B, body: 1, attachments: {} }, 400, 'attachments'],
      [
        { recipient_key: KEY_B, attachments: Array.from({ length: 11 }, () => ({ blob_id: 'blob_1' })) },
        422,
        'attachments',
      ],
      [{ recipient_key: KEY_B, attachments: [{ filename: 'x' }] }, 400, 'attachments[0].blob_id'],
      [{ recipient_key: KEY_B, body: 'x'.repeat(1024 * 1024) }, 413, 'body'],
    ];
    for (const [input, status, field] of cases) {
      const e = invalid(() => validateSendRequest(input));
      assert.equal(e.status, status, JSON.stringify(input).slice(0, 80));
      assert.equal(e.field, field, JSON.stringify(input).slice(0, 80));
      assert.deepEqual(e.details, { field, reason: e.reason });
    }
  });

  it('the body limit counts serialised bytes, inclusive', () => {
    // "xxx…" serialises with two quotes.
    validateSendRequest({ recipient_key: KEY_B, body: 'é'.repeat(10) }, 22);
    assert.equal(invalid(() => validateSendRequest({ recipient_key: KEY_B, body: 'é'.repeat(10) }, 21)).status, 413);
    assert.equal(validateSendRequest({ recipient_key: KEY_B, body: 'x', expires_in: 2592000 }).expires_in, 2592000);
  });

  it('allows a message of attachments only', () => {
    const m = validateSendRequest({ recipient_key: KEY_B, attachments: [{ blob_id: 'blob_a', filename: 'a.pdf' }] });
    assert.equal(m.body, null);
    assert.deepEqual(m.attachments, [{ blob_id: 'blob_a', filename: 'a.pdf' }]);
  });
});

describe('profile patches', () => {
  it('normalises bare capability strings and keeps explicit nulls', () => {
    assert.deepEqual(validateProfilePatch({ display_name: null, capabilities: ['chat'] }), {
      display_name: null,
      capabilities: [{ name: 'chat', description: '', tags: ['chat'] }],
    });
  });

  it('accepts the documented example', () => {
    const patch = validateProfilePatch({
      display_name: 'TranslatorBot',
      visibility: 'public',
      inbox_policy: 'allowlist',
      metadata: { role: 'translator' },
      capabilities: [
        {
          name: 'translate',
          description: 'Translate text',
          tags: ['text', 'i18n'],
          input_schema: { type: 'object' },
          version: '1.0',
        },
      ],
    });
    assert.equal(patch.capabilities?.[0]?.version, '1.0');
    assert.deepEqual(patch.metadata, { role: 'translator' });
  });

  it('400 for wrong types, 422 for broken rules, with a JSON path', () => {
    const cases: Array<[unknown, number, string]> = [
      ['x', 400, ''],
      [{ display_name: 5 }, 400, 'display_name'],
      [{ display_name: 'x'.repeat(257) }, 422, 'display_name'],
      [{ visibility: 'hidden' }, 422, 'visibility'],
      [{ inbox_policy: 3 }, 400, 'inbox_policy'],
      [{ metadata: { a: 1 } }, 400, 'metadata.a'],
      [{ metadata: { a: 'x'.repeat(257) } }, 422, 'metadata.a'],
      [{ metadata: Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v'])) }, 422, 'metadata'],
      [{ metadata: { ['k'.repeat(65)]: 'v' } }, 422, `metadata.${'k'.repeat(65)}`],
      [{ capabilities: {} }, 400, 'capabilities'],
      [{ capabilities: Array.from({ length: 21 }, () => 'chat') }, 422, 'capabilities'],
      [{ capabilities: ['ab'] }, 422, 'capabilities[0]'],
      [{ capabilities: [{ name: 'x', tags: ['ok-tag', 'bad tag'] }] }, 422, 'capabilities[0].tags[1]'],
      [{ capabilities: [{ tags: [] }] }, 400, 'capabilities[0].name'],
      [{ capabilities: [{ name: '' }] }, 422, 'capabilities[0].name'],
      [{ capabilities: [{ name: 'x', description: 'd'.repeat(1025) }] }, 422, 'capabilities[0].description'],
      [
        { capabilities: [{ name: 'x', tags: Array.from({ length: 21 }, (_, i) => `tag${i}`) }] },
        422,
        'capabilities[0].tags',
      ],
      [{ capabilities: [{ name: 'x', input_schema: [] }] }, 400, 'capabilities[0].input_schema'],
      [{ capabilities: [{ name: 'x', input_schema: { d: 'x'.repeat(16384) } }] }, 422, 'capabilities[0].input_schema'],
      [{ capabilities: [{ name: 'x', version: 'v'.repeat(33) }] }, 422, 'capabilities[0].version'],
    ];
    for (const [input, status, field] of cases) {
      const e = invalid(() => validateProfilePatch(input));
      assert.equal(e.status, status, `${field}: ${e.message}`);
      assert.equal(e.field, field);
      assert.equal(e.code, status === 400 ? 'bad_request' : 'unprocessable_entity');
    }
  });
});

describe('ACL entries', () => {
  it('validates peer and type', () => {
    assert.deepEqual(validateAclPut({ peer_key: KEY_B, entry_type: 'block' }), {
      peer_key: KEY_B,
      entry_type: 'block',
    });
    assert.equal(invalid(() => validateAclPut({ peer_key: 'x', entry_type: 'allow' })).field, 'peer_key');
    assert.equal(invalid(() => validateAclPut({ peer_key: KEY_B, entry_type: 'deny' })).field, 'entry_type');
  });
  it('counts text limits in characters, not UTF-16 units (§3.4 "≤ 256 chars")', () => {
    const emoji = (n: number): string => '😀'.repeat(n);
    assert.equal(validateProfilePatch({ display_name: emoji(256) }).display_name, emoji(256));
    assert.equal(invalid(() => validateProfilePatch({ display_name: emoji(257) })).details?.['field'], 'display_name');
    assert.equal(validateProfilePatch({ metadata: { k: emoji(256) } }).metadata?.['k'], emoji(256));
    invalid(() => validateProfilePatch({ metadata: { k: emoji(257) } }));
  });
});
