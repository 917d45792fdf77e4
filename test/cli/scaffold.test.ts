import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { selfCommand } from '../../src/cli/deps.js';
import { loadManifest } from '../../src/cli/manifest.js';
import { systemdUnitText, TEMPLATES } from '../../src/cli/scaffold.js';
import type { HandlerContext, Message } from '../../src/index.js';
import { loadHandler } from '../../src/runtime/handler.js';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';

const exec = promisify(execFile);

async function project(t: import('node:test').TestContext, name = 'translator-bot') {
  const root = await tempDir(t);
  const cwd = join(root, name);
  await mkdir(cwd);
  const home = join(root, 'home');
  return { cwd, home, deps: testDeps({ home, cwd, env: { MRP_RELAY_URL: 'http://127.0.0.1:8080' } }) };
}

const systemdAnalyze = await exec('systemd-analyze', ['--version']).then(
  () => true,
  () => false,
);

describe('mrp init --template', () => {
  it('starts from an example handler that loads and works; the manifest announces it', async (t) => {
    const { cwd, deps } = await project(t);
    const res = await runCli(['init', '--template', 'router', '--json'], deps);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(JSON.parse(res.stdout).template, 'router');
    const example = await readFile(new URL('../../handlers/router.ts', import.meta.url), 'utf8');
    assert.equal(await readFile(join(cwd, 'handler.ts'), 'utf8'), example);
    assert.match(await readFile(join(cwd, 'mrp.yaml'), 'utf8'), /- name: router\n/);
    const { handler } = await loadHandler('./handler.ts', { cwd });
    const reply = await handler(
      {
        content_type: 'application/x-mrp-request+json',
        body: { action: 'add', params: { a: 2, b: 3 } },
      } as unknown as Message,
      {} as HandlerContext,
    );
    assert.deepEqual(reply, { status: 'ok', result: { sum: 5 } });
  });

  it("every template's manifest is valid YAML that loads, its description kept exactly (the router's has a colon)", async (t) => {
    for (const template of [undefined, ...TEMPLATES]) {
      const { cwd, deps } = await project(t);
      const res = await runCli(['init', ...(template ? ['--template', template] : []), '--json'], deps);
      assert.equal(res.code, 0, res.stderr);
      const manifest = await loadManifest(join(cwd, 'mrp.yaml'), { cwd });
      const text = await readFile(join(cwd, 'mrp.yaml'), 'utf8');
      const description = /description: (.*)/.exec(text)?.[1];
      assert.equal(manifest.patch.capabilities?.[0]?.description, JSON.parse(description ?? '""'), template);
    }
  });

  it('--handler in a directory that does not exist creates it; one that cannot be made is a usage error and nothing is written', async (t) => {
    const { cwd, deps } = await project(t);
    const res = await runCli(['init', '--handler', 'src/bot.ts', '--json'], deps);
    assert.equal(res.code, 0, res.stderr);
    assert.match(await readFile(join(cwd, 'src', 'bot.ts'), 'utf8'), /const handler: Handler/);
    assert.match(await readFile(join(cwd, 'src', 'bot.test.ts'), 'utf8'), /\.\/bot\.ts/);
    const blocked = await project(t, 'blocked');
    await writeFile(join(blocked.cwd, 'lib'), 'a file, not a directory');
    const bad = await runCli(['init', '--handler', 'lib/bot.ts'], blocked.deps);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--handler: cannot create the directory \.\/lib /);
    assert.deepEqual(await readdir(blocked.cwd), ['lib']);
  });

  it('the commands it prints to paste run this package from any directory when npx launched it (mrp is not on the PATH)', async (t) => {
    const root = await tempDir(t);
    const bin = fileURLToPath(new URL('../../bin/mrp.js', import.meta.url));
    for (const [npmCommand, mrp] of [
      ['exec', `node ${bin}`],
      [undefined, 'mrp'],
      ['run-script', 'mrp'],
    ] as const) {
      const cwd = join(root, `p-${npmCommand}`);
      await mkdir(cwd);
      const deps = testDeps({ home: join(root, 'home'), cwd, env: { npm_command: npmCommand } });
      const json = await runCli(['init', '--json'], deps);
      assert.equal(JSON.parse(json.stdout).next, `${mrp} run --handler ./handler.ts`);
      const text = await runCli(['init', '--handler', 'other.ts'], deps);
      assert.ok(text.stdout.includes(`(no relay handy? \`${mrp} dev --handler ./other.ts\``), text.stdout);
    }
    // What it prints works from elsewhere: the same program, not a registry package named mrp.
    const [node, path] = selfCommand({ npm_command: 'exec' }).split(' ') as [string, string];
    assert.equal(node, 'node');
    const { stdout } = await exec(process.execPath, [path, '--version'], { cwd: root });
    assert.match(stdout, /^\d+\.\d+\.\d+/);
  });

  it('the test command it prints says to install mrp first when this project cannot import it (handler.test.ts imports mrp/testing)', async (t) => {
    const root = await tempDir(t);
    const bare = join(root, 'bare');
    await mkdir(bare);
    const out = await runCli(['init', '--json'], testDeps({ home: join(root, 'home'), cwd: bare }));
    assert.equal(JSON.parse(out.stdout).test, 'npm install --save-dev mrp tsx, then npx tsx --test ./handler.test.ts');
    const text = await runCli(['init', '--handler', 'b.ts'], testDeps({ home: join(root, 'home'), cwd: bare }));
    assert.ok(
      text.stdout.includes('test it: npm install --save-dev mrp tsx, then npx tsx --test ./b.test.ts'),
      text.stdout,
    );
    // Installed in the project (or a directory above it): just the test.
    const app = join(root, 'app');
    await mkdir(join(app, 'node_modules', 'mrp'), { recursive: true });
    await writeFile(join(app, 'node_modules', 'mrp', 'package.json'), '{"name":"mrp"}');
    const nested = join(app, 'src');
    await mkdir(nested);
    const installed = await runCli(['init', '--json'], testDeps({ home: join(root, 'home'), cwd: nested }));
    assert.equal(JSON.parse(installed.stdout).test, 'npx tsx --test ./handler.test.ts');
  });

  it('an unknown template is a usage error naming the choices', async (t) => {
    const { deps } = await project(t);
    const res = await runCli(['init', '--template', 'nope'], deps);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /--template: "nope" must be one of echo, router, slow/);
  });
});

describe('mrp init --docker / --systemd', () => {
  it('writes a Dockerfile: exec-form CMD, tini as PID 1, non-root, STOPSIGNAL SIGTERM, stop timeout above --grace', async (t) => {
    const { cwd, deps } = await project(t);
    const res = await runCli(['init', '--docker', '--grace', '20s', '--template', 'slow', '--json'], deps);
    assert.equal(res.code, 0, res.stderr);
    const docker = await readFile(join(cwd, 'Dockerfile'), 'utf8');
    const lines = docker.split('\n').filter((l) => l && !l.startsWith('#'));
    const directive = (name: string) => lines.filter((l) => l.startsWith(`${name} `));
    assert.deepEqual(directive('ENTRYPOINT'), ['ENTRYPOINT ["/usr/bin/tini", "--"]']);
    const [cmd] = directive('CMD');
    const argv = JSON.parse(cmd!.slice(4)) as string[];
    assert.deepEqual(
      argv.slice(0, 6),
      ['mrp', 'run', '--handler', './handler.ts', '--grace', '20s'],
      'exec form, the handler and the grace',
    );
    assert.ok(argv.includes('--health-port'));
    assert.deepEqual(directive('USER'), ['USER node']);
    assert.deepEqual(directive('STOPSIGNAL'), ['STOPSIGNAL SIGTERM']);
    assert.ok(lines.indexOf('USER node') < lines.indexOf(cmd!), 'runs as the non-root user');
    assert.match(docker, /--stop-timeout 35/);
    assert.match(docker, /HEALTHCHECK[^\n]*\n\s+CMD \["node", "-e", .*\/readyz/);
    assert.match(docker, /MRP_KEY_FILE=\/run\/secrets\/mrp\.key/);
    assert.match(await readFile(join(cwd, '.dockerignore'), 'utf8'), /^\*\.key$/m);

    // Never overwritten.
    await writeFile(join(cwd, 'Dockerfile'), 'FROM scratch\n');
    const again = await runCli(['init', '--docker', '--json'], deps);
    assert.equal(again.code, 0, again.stderr);
    assert.ok(JSON.parse(again.stdout).kept.includes(join(cwd, 'Dockerfile')));
    assert.equal(await readFile(join(cwd, 'Dockerfile'), 'utf8'), 'FROM scratch\n');
  });

  it('a line break in --name does not become a directive of the unit', async (t) => {
    const { deps } = await project(t, 'bot');
    const res = await runCli(['init', '--systemd', '--name', 'x\nExecStartPre=/bin/false\r', '--json'], deps);
    assert.equal(res.code, 0, res.stderr);
    const file = (JSON.parse(res.stdout).created as string[]).find((f) => f.endsWith('.service'))!;
    const unit = await readFile(file, 'utf8');
    assert.deepEqual(
      unit.split('\n').filter((l) => l.startsWith('ExecStartPre') || l.startsWith('Description')),
      ['Description=MRP agent x ExecStartPre=/bin/false '],
    );
  });

  it('writes a systemd unit: Restart=on-failure, TimeoutStopSec above --grace, KillSignal=SIGTERM, the settings in use', async (t) => {
    const { cwd, deps, home } = await project(t, 'My Bot');
    const res = await runCli(
      ['init', '--systemd', '--grace', '1m', '--handler', './bot.ts', '--name', 'My Bot 100%', '--json'],
      deps,
    );
    assert.equal(res.code, 0, res.stderr);
    const out = JSON.parse(res.stdout);
    const file = join(cwd, 'my-bot-100.service');
    assert.ok(out.created.includes(file), JSON.stringify(out));
    assert.ok(out.created.includes(join(cwd, 'bot.ts')));
    assert.equal(out.next, 'mrp run --handler ./bot.ts');
    const unit = await readFile(file, 'utf8');
    const value = (key: string) =>
      unit
        .split('\n')
        .filter((l) => l.startsWith(`${key}=`))
        .map((l) => l.slice(key.length + 1));
    assert.deepEqual(value('Restart'), ['on-failure']);
    assert.deepEqual(value('KillSignal'), ['SIGTERM']);
    assert.deepEqual(value('TimeoutStopSec'), ['75'], '60 s of grace + 15');
    assert.deepEqual(value('Description'), ['MRP agent My Bot 100%%'], '% escaped');
    assert.deepEqual(value('WorkingDirectory'), [cwd], 'as it is: systemd does not unquote WorkingDirectory=');
    assert.ok(
      value('Environment').includes(`"MRP_KEY_FILE=${join(home, 'agent.key')}"`) ||
        value('Environment').includes(`MRP_KEY_FILE=${join(home, 'agent.key')}`),
    );
    assert.ok(value('Environment').includes('MRP_RELAY_URL=http://127.0.0.1:8080'));
    const [execStart] = value('ExecStart');
    assert.ok(execStart!.startsWith(`${process.execPath} `), 'an absolute node');
    assert.match(execStart!, /bin\/mrp\.js run --handler \.\/bot\.ts --grace 60s --log-format json$/);
    await assertUnitVerifies(file);
  });

  it('a unit for paths with spaces, %, $, quotes and backslashes: WorkingDirectory= as it is, ExecStart= quoted', async (t) => {
    const root = await tempDir(t);
    const dir = join(root, 'sp dir 100% $HOME "q" b\\s');
    await mkdir(dir);
    // systemd refuses quotes and backslashes in the executable's path (only there).
    const nodeDir = join(root, 'node dir 100% $HOME');
    await mkdir(nodeDir);
    const node = join(nodeDir, 'node');
    await symlink(process.execPath, node);
    const text = systemdUnitText({
      name: 'x',
      user: userInfo().username,
      cwd: dir,
      node,
      bin: join(dir, 'mrp.js'),
      handler: './handler.ts',
      graceSeconds: 30,
      env: { MRP_HOME: join(dir, 'h') },
    });
    const line = (key: string) =>
      text
        .split('\n')
        .find((l) => l.startsWith(`${key}=`))!
        .slice(key.length + 1);
    const written = dir.replace(/%/g, '%%');
    assert.equal(line('WorkingDirectory'), written);
    const quoted = (s: string) => `"${s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
    assert.equal(line('Environment'), quoted(`MRP_HOME=${join(written, 'h')}`));
    // The executable is literal; an argument's $ is $$ (systemd substitutes $VAR there).
    assert.ok(
      line('ExecStart').startsWith(
        `${quoted(node.replace(/%/g, '%%'))} ${quoted(join(written, 'mrp.js')).replace(/\$/g, '$$$$')} run `,
      ),
      line('ExecStart'),
    );
    const file = join(dir, 'x.service');
    await writeFile(file, text);
    await assertUnitVerifies(file);
    assert.throws(
      () =>
        systemdUnitText({
          name: 'x',
          user: 'nobody',
          cwd: '/tmp/a\nb',
          node,
          bin: 'b',
          handler: 'h',
          graceSeconds: 1,
          env: {},
        }),
      /--systemd: the working directory .* cannot be written into a unit file/,
    );
    assert.throws(
      () =>
        systemdUnitText({
          name: 'x',
          user: 'u',
          cwd: dir,
          node: join(dir, 'node'),
          bin: 'b',
          handler: 'h',
          graceSeconds: 1,
          env: {},
        }),
      /--systemd: systemd cannot start node at .*quotes, backslashes/,
    );
  });
});

/** systemd-analyze (where there is one) finds nothing wrong in the unit's settings. */
async function assertUnitVerifies(file: string): Promise<void> {
  if (!systemdAnalyze) return;
  const verified = await exec('systemd-analyze', ['verify', '--man=no', file]).then(
    () => '',
    (e: { stderr?: string }) => e.stderr ?? 'failed',
  );
  // Complaints about a line of this unit or its settings count; the test machine may lack the user.
  assert.doesNotMatch(
    verified,
    /\.service:\d+:|Unknown (key|section)|Failed to parse|Invalid|bad unit file setting|fatal error|not executable/i,
    verified,
  );
}

describe('mrp keygen --force', () => {
  it('keeps the old key as a 0600 backup and prints both public keys', async (t) => {
    const { deps, home } = await project(t);
    const first = JSON.parse((await runCli(['keygen', '--json'], deps)).stdout);
    const key = join(home, 'agent.key');
    const oldBytes = await readFile(key);
    const forced = await runCli(['keygen', '--force', '--json'], deps);
    assert.equal(forced.code, 0, forced.stderr);
    const out = JSON.parse(forced.stdout);
    assert.notEqual(out.public_key, first.public_key);
    assert.equal(out.previous.public_key, first.public_key);
    assert.match(out.previous.backup, /agent\.key\.bak-\d{8}T\d{6}Z$/);
    assert.deepEqual(await readFile(out.previous.backup), oldBytes);
    assert.equal((await stat(out.previous.backup)).mode & 0o777, 0o600);

    // Twice in one second: a second backup, not an overwrite.
    const human = await runCli(['keygen', '--force'], deps);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, new RegExp(`public key  ${out.public_key.replace(/[-]/g, '\\-')}|public key  \\S{43}`));
    assert.match(
      human.stdout,
      new RegExp(`previous    ${out.public_key.replace(/[-]/g, '\\-')}  kept in .*agent\\.key\\.bak-`),
    );
    const backups = (await readdir(home)).filter((f) => f.startsWith('agent.key.bak-'));
    assert.equal(backups.length, 2);
    // The seed is never printed.
    assert.ok(
      !human.stdout.includes(oldBytes.toString('hex')) && !forced.stdout.includes(oldBytes.toString('base64url')),
    );
  });
});
