#!/usr/bin/env node
// The `mrp` command. `--version` is answered without loading anything else, so it starts as fast
// as bare node; everything else goes through the CLI's `main`.
const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  const { readFileSync } = await import('node:fs');
  process.stdout.write(`${JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).version}\n`);
} else {
  const { run } = await import('../dist/cli/bin.js');
  await run(argv);
}
