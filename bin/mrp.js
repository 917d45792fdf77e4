#!/usr/bin/env node
// The `mrp` command. CommonJS (bin/package.json), so that `--version` is answered before Node's
// ES module loader is even set up: it starts as fast as bare node. Everything else goes through
// the CLI's `main` (ES modules, in dist/).
'use strict';
const argv = process.argv.slice(2);
if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
  process.stdout.write(`${require('../package.json').version}\n`);
} else {
  import('../dist/cli/bin.js').then(({ run }) => run(argv));
}
