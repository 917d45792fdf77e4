// Item 5: hostile local files. Each case writes one file into a fresh MRP_HOME (or cwd for mrp.yaml),
// runs a command, and reports exit code + code + first stderr line. Flags: exit 0 on a broken file
// (silently ignored), internal_error, stack traces, exit >2 other than 3 (network: the relay is down),
// a run that takes > 20 s, or output larger than 64 KB.
// Usage: node 10-local-files.mjs
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { ROOT, keypair, writeKey, deep, deepObj } from './lib.mjs';

const base = `/tmp/rt/lf10-${process.pid}`;
const K = keypair().pub;
const bom = '\ufeff';
const cases = [];
const add = (file, content, args, want) => cases.push({ file, content, args, want });
// config.json
for (const [name, c] of [
  ['array', '[]'], ['string', '"http://evil"'], ['relay number', '{"relay":5}'], ['relay object', '{"relay":{"a":1}}'],
  ['relay ftp', '{"relay":"ftp://x"}'], ['key_file number', '{"key_file":7}'], ['deep 1e5', deepObj(1e5)], ['deep arr 1e6', deep(1e6)],
  ['BOM', bom + '{"relay":"http://127.0.0.1:9"}'], ['invalid', '{relay:'], ['empty', ''], ['null', 'null'], ['unknown keys only', '{"foo":1}'],
  ['context unknown', '{"context":"nope"}'], ['proto', '{"__proto__":{"relay":"http://127.0.0.1:9"}}'], ['8 MB', JSON.stringify({ relay: 'http://127.0.0.1:9', pad: 'x'.repeat(8e6) })],
  ['DIR', null],
]) {
  for (const args of [['whoami'], ['config', 'ls'], ['send', '--to', K, '--text', 'x']]) add('config.json', c, args, `config.json ${name}`);
}
// contacts.json
for (const [name, c] of [
  ['deep 1e5', deepObj(1e5)], ['deep arr 1e6', deep(1e6)], ['DIR', null], ['BOM', bom + `{"contacts":[{"name":"bob","public_key":"${K}"}]}`],
  ['contacts string', '{"contacts":"x"}'], ['contacts deep item', `{"contacts":[${deepObj(5000)}]}`], ['null', 'null'], ['number', '5'],
  ['invalid', '{'], ['proto', `{"__proto__":{"name":"bob","public_key":"${K}"}}`], ['name map w/ escape', `{"bob\\u001b]0;pwn\\u0007":"${K}"}`],
  ['huge 20 MB', JSON.stringify({ contacts: Array.from({ length: 200000 }, (_, i) => ({ name: 'n' + i, public_key: K, note: 'x'.repeat(60) })) })],
]) {
  for (const args of [['contacts', 'ls'], ['send', '--to', 'bob', '--text', 'x'], ['contacts', 'add', 'carol', K]]) add('contacts.json', c, args, `contacts.json ${name}`);
}
// mrp.yaml (cwd)
const bomb = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'];
for (let i = 1; i < 10; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill('*' + String.fromCharCode(96 + i)).join(',')}]`);
bomb.push('metadata: *j');
for (const [name, c] of [
  ['alias bomb', bomb.join('\n') + '\n'], ['alias bomb in name', bomb.slice(0, -1).join('\n') + '\nname: *j\n'],
  ['unknown keys', 'name: x\nfoo: 1\nvisibility: public\n'], ['deep flow 1e5', 'name: ' + deep(1e5) + '\n'], ['deep block', Array.from({ length: 3000 }, (_, i) => ' '.repeat(i) + 'a:').join('\n') + ' 1\n'],
  ['js function tag', 'name: !!js/function "function(){}"\n'], ['merge keys', 'base: &b {visibility: public}\n<<: *b\nname: x\n'],
  ['DIR', null], ['BOM', bom + 'name: x\n'], ['binary', '\u0000\u0001\u0002'], ['multi doc', 'name: a\n---\nname: b\n'],
  ['capabilities 10k', 'capabilities:\n' + Array.from({ length: 10000 }, (_, i) => `  - tag${i}`).join('\n') + '\n'],
  ['name with ESC', 'name: "\\e]0;pwned\\a\\e[2J"\n'],
]) {
  for (const args of [['announce', '--dry-run'], ['doctor']]) add('mrp.yaml', c, args, `mrp.yaml ${name}`);
}

let n = 0;
let flagged = 0;
for (const c of cases) {
  const home = `${base}/${n++}`;
  fs.mkdirSync(`${home}/cwd`, { recursive: true, mode: 0o700 });
  writeKey(`${home}/agent.key`, keypair());
  const target = c.file === 'mrp.yaml' ? `${home}/cwd/mrp.yaml` : `${home}/${c.file}`;
  if (c.content === null) fs.mkdirSync(target); else fs.writeFileSync(target, c.content, { mode: 0o600 });
  const t0 = Date.now();
  const r = spawnSync(process.execPath, [ROOT + '/bin/mrp.js', ...c.args, ...(c.file === 'config.json' ? [] : ['--relay', 'http://127.0.0.1:9'])], { cwd: `${home}/cwd`, env: { ...process.env, MRP_HOME: home, MRP_RELAY_URL: '', NO_COLOR: '1' }, timeout: 20000, maxBuffer: 64 << 20 });
  const ms = Date.now() - t0;
  const err = (r.stderr?.toString() ?? '') + (r.stdout?.toString() ?? '');
  const first = err.trim().split('\n')[0]?.slice(0, 150);
  const problems = [];
  if (r.error?.code === 'ETIMEDOUT' || ms > 19000) problems.push('TIMEOUT');
  if (/internal_error|at .*\.js:\d+|RangeError|Maximum call stack|TypeError/.test(err)) problems.push('INTERNAL');
  if (r.status === 0 && !/unknown keys|proto|null|empty|BOM|merge|multi|ESC|context|huge/.test(c.want)) problems.push('EXIT0');
  if (r.status === 0 && /config.json (array|string|relay|key_file|deep|invalid)/.test(c.want)) problems.push('IGNORED');
  if (/mrphub\.io/.test(err) && c.file === 'config.json') problems.push('PUBLIC-RELAY');
  if (err.length > 65536) problems.push('HUGE-OUTPUT');
  if (problems.length) flagged++;
  console.log(`${problems.length ? 'FLAG ' + problems.join('+') : 'ok  '} ${c.want} | mrp ${c.args.join(' ')} -> exit ${r.status ?? r.signal} (${ms} ms): ${first}`);
}
console.log(`${cases.length} cases, ${flagged} flagged`);
