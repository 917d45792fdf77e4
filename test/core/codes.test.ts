/**
 * The one error-code table (`src/core/codes.ts`): every code the sources use is in it, the README
 * lists exactly its codes, and the CLI's exit codes and hints come from it.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { exitCodeFor } from '../../src/cli/exit.js';
import { hintFor } from '../../src/cli/hints.js';
import { ERROR_CODES, type ErrorCode, EXIT_BY_KIND, errorCodeInfo } from '../../src/core/codes.js';
import { ConfigError, MrpError, RelayError, UsageError } from '../../src/core/errors.js';
import { ERROR_STATUS } from '../../src/protocol/envelope.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const SRC = join(ROOT, 'src');
const CODE = "'([a-z][a-z0-9_]*)'";

/**
 * The shapes in which the sources name an error code. Internal reasons that never reach a user
 * (`FrameParseError`'s and `JsonInputError`'s reasons, `BlobStoreError` codes of the blob store
 * seam) are not codes and are not scanned.
 */
const PATTERNS: RegExp[] = [
  new RegExp(`\\bcode: ${CODE}`, 'g'), // options / frames / replies: { code: 'x' }
  new RegExp(`\\bcode: [^,\\n]*\\? ${CODE} : ${CODE}`, 'g'), // { code: cond ? 'x' : 'y' }
  new RegExp(`\\b(?:options|\\w*[eE]rror\\??)\\.code \\?\\? ${CODE}`, 'g'), // defaults: options.code ?? 'x' (not errno fallbacks)
  new RegExp(`new (?:ConfigError|RelayError|ProtocolError|ApiError)\\(\\s*${CODE}`, 'g'),
  new RegExp(`new MrpError\\(\\s*'[a-z]+',\\s*${CODE}`, 'g'), // new MrpError(kind, 'x', …)
  new RegExp(`super\\(\\s*'[a-z]+',\\s*${CODE}`, 'g'), // subclasses: super(kind, 'x', …)
  new RegExp(`super\\(\\s*${CODE},\\s*message`, 'g'), // ProtocolError subclasses: super('x', message)
  new RegExp(`\\b(?:errorDraft|e2eError|e2eMisuse|fail)\\(\\s*${CODE}`, 'g'),
  new RegExp(`\\bcodeOf\\([^,]+,\\s*${CODE}`, 'g'),
  new RegExp(`'commander\\.\\w+': ${CODE}`, 'g'), // CLI parse errors
  new RegExp(`\\b\\d{3}: ${CODE}`, 'g'), // status → code tables
  new RegExp(`\\bif \\(status [^)]*\\) return ${CODE}`, 'g'), // codeForStatus
];

function withoutComments(source: string): string {
  return source.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
}

/** Every code named in `src/**` (file → codes), by the patterns above. */
function codesInSources(): Map<string, Set<string>> {
  const found = new Map<string, Set<string>>();
  for (const rel of readdirSync(SRC, { recursive: true }).map(String)) {
    if (!rel.endsWith('.ts') || rel.includes('blobs/blob-store') || rel.endsWith('codes.ts')) continue;
    const text = withoutComments(readFileSync(join(SRC, rel), 'utf8'));
    for (const re of PATTERNS) {
      for (const m of text.matchAll(re)) {
        for (const code of m.slice(1)) {
          if (code === undefined) continue;
          const files = found.get(code) ?? new Set();
          files.add(rel.split('\\').join('/'));
          found.set(code, files);
        }
      }
    }
  }
  return found;
}

describe('error codes: one table', () => {
  it('every code used in src/ is in the table', () => {
    const found = codesInSources();
    assert.ok(found.size > 50, `the scan found only ${found.size} codes; did the patterns break?`);
    const missing = [...found]
      .filter(([code]) => errorCodeInfo(code) === undefined)
      .map(([c, f]) => `${c} (${[...f].join(', ')})`);
    assert.deepEqual(missing, [], 'codes used in src/ but missing from src/core/codes.ts');
  });

  it('the scan sees the codes it should (a sample from each shape)', () => {
    const found = codesInSources();
    for (const code of [
      'invalid_argument',
      'connection_refused',
      'network_error',
      'aborted',
      'outcome_unknown',
      'invalid_frame',
      'unknown_option',
      'conflict',
      'handler_crashed',
      'decryption_failed',
      'journal_unwritable',
      'acl_denied',
    ]) {
      assert.ok(found.has(code), code);
    }
  });

  it('every relay code (ERROR_STATUS) is a relay code of the table', () => {
    for (const code of Object.keys(ERROR_STATUS)) {
      assert.equal(errorCodeInfo(code)?.source, 'relay', code);
    }
  });

  it("the README's Error codes section lists exactly the table's codes, with their kind and exit", () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const start = readme.indexOf('## Error codes');
    assert.ok(start >= 0);
    const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
    const rows = section
      .split('\n')
      .filter((l) => l.startsWith('| `'))
      .map((l) => l.split('|').map((c) => c.trim()));
    const listed = rows.flatMap((cells) => [...(cells[1] ?? '').matchAll(/`([a-z0-9_]+)`/g)].map((m) => m[1]));
    assert.deepEqual(
      [...listed].sort(),
      Object.keys(ERROR_CODES).sort(),
      'run `node --import tsx scripts/error-codes.mjs --write`',
    );
    for (const cells of rows) {
      const code = cells[1]!.replace(/`/g, '') as ErrorCode;
      const info = ERROR_CODES[code];
      assert.deepEqual(cells.slice(2, 5), [info.source, info.kind, String(info.exit)], code);
    }
  });

  it("each code's exit is its kind's, except the deliberate ones", () => {
    const exceptions = Object.entries(ERROR_CODES)
      .filter(([, info]) => info.exit !== EXIT_BY_KIND[info.kind])
      .map(([code]) => code)
      .sort();
    assert.deepEqual(exceptions, ['doctor_failed', 'handler_exit', 'journal_locked']);
  });

  it("docs/protocol.md §6 lists exactly the relay's codes with their statuses (ERROR_STATUS)", () => {
    const doc = readFileSync(join(ROOT, 'docs/protocol.md'), 'utf8');
    const section = doc.slice(doc.indexOf('\n## 6. Errors'), doc.indexOf('\n## 7.'));
    const rows = [...section.matchAll(/^\| (\d{3}) \| `([a-z_]+)` \|/gm)].map((m) => [m[2]!, Number(m[1])] as const);
    assert.deepEqual(
      Object.fromEntries(rows),
      { ...ERROR_STATUS },
      'one row per code, with the status the relay answers it with',
    );
    assert.equal(rows.length, Object.keys(ERROR_STATUS).length, 'no code listed twice');
  });

  it('the CLI reads exit codes and hints from the table', () => {
    assert.equal(exitCodeFor(new ConfigError('journal_locked', 'x')), 1);
    assert.equal(exitCodeFor(new ConfigError('doctor_failed', 'x')), 1, 'as mrp doctor exits');
    assert.equal(exitCodeFor(new ConfigError('key_invalid', 'x')), 2);
    assert.equal(exitCodeFor(new RelayError('invalid_signature', 'x')), 4);
    assert.equal(exitCodeFor(new RelayError('acl_denied', 'x')), 1);
    // A relay code raised by local validation exits as what it is: a usage error.
    assert.equal(exitCodeFor(new UsageError('x', { code: 'bad_request' })), 2);
    assert.equal(exitCodeFor(new MrpError('network', 'agent_suspended', 'x')), 3);
    assert.equal(exitCodeFor(new Error('x')), 1);
    assert.equal(new RelayError('timestamp_expired', 'x').kind, 'auth');
    assert.equal(new RelayError('forbidden', 'x').kind, 'api');
    assert.equal(new RelayError('some_newer_code', 'x').kind, 'api');
    assert.equal(hintFor(new RelayError('acl_denied', 'x')), ERROR_CODES.acl_denied.hint);
    assert.equal(hintFor(new RelayError('rate_limit_exceeded', 'x', { retryAfter: 2.5 })), 'retry in 3 s');
    assert.equal(hintFor(new RelayError('bad_request', 'x', { details: { field: 'to' } })), 'check to');
    assert.equal(hintFor(new RelayError('bad_request', 'x')), undefined);
    assert.equal(hintFor(new ConfigError('key_invalid', 'x')), undefined);
  });
});
