#!/usr/bin/env node
// Prints the README's "Error codes" section from the one error-code table (src/core/codes.ts);
// `--write` replaces the section in README.md. Run with tsx: `node --import tsx scripts/error-codes.mjs`.
// test/core/codes.test.ts checks that the README lists exactly the table's codes.
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES } from '../src/core/codes.ts';

const HEADING = '## Error codes';

const rows = Object.entries(ERROR_CODES).map(
  ([code, info]) => `| \`${code}\` | ${info.source} | ${info.kind} | ${info.exit} | ${info.doc} |`,
);

const section = [
  HEADING,
  '',
  'Every error has a stable `code` (shown with `--json`); branch on it, never on the message. This',
  'table is printed from `src/core/codes.ts` (`node --import tsx scripts/error-codes.mjs --write`). An',
  "error exits with its code's exit when it has the code's kind, else with its kind's (a relay code",
  'such as `bad_request` raised by local validation is a usage error: exit 2). For relay codes the CLI',
  'adds a hint.',
  '',
  '| Code | From | Kind | Exit | Meaning |',
  '|---|---|---|---|---|',
  ...rows,
  '',
  'Handler replies (`reply` above) also carry the `code` of the error the handler threw, and the',
  "message codec's code when a message cannot be opened (`decryption_failed`) or a reply cannot be sealed.",
  '',
].join('\n');

if (process.argv.includes('--write')) {
  const path = fileURLToPath(new URL('../README.md', import.meta.url));
  const readme = readFileSync(path, 'utf8');
  const start = readme.indexOf(HEADING);
  const end = readme.indexOf('\n## ', start + HEADING.length);
  if (start < 0 || end < 0) throw new Error(`README.md has no "${HEADING}" section`);
  writeFileSync(path, `${readme.slice(0, start)}${section}${readme.slice(end)}`);
} else {
  process.stdout.write(section);
}
