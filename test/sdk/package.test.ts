/**
 * The package as a user gets it: `npm pack`, the tarball unpacked as node_modules/mrp of a fresh
 * project (its `dependencies`, and only those, linked from this repository, as an offline install
 * cannot fetch them), and plain ESM that imports `mrp` and `mrp/testing` through the package's `exports`.
 * Also `mrp init`'s handler.test.ts, which must pass out of the box.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** A fresh project with the packed tarball installed as node_modules/mrp. */
async function installedProject(): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'mrp-pkg-'));
  const packs = join(dir, 'packs');
  await mkdir(packs);
  // --ignore-scripts: dist is built once below, not by every pack.
  const { stdout } = await exec('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', packs], {
    cwd: ROOT,
  });
  const [info] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const files = new Set(info!.files.map((f) => f.path));
  for (const f of [
    'dist/index.js',
    'dist/index.d.ts',
    'dist/testing.js',
    'dist/testing.d.ts',
    'dist/runtime/agent.js',
    'bin/mrp.js',
    'bin/package.json',
  ]) {
    assert.ok(files.has(f), `the package contains ${f}`);
  }
  assert.ok(
    ![...files].some((f) => f.startsWith('test/') || f.startsWith('src/')),
    'no tests or sources in the package',
  );
  const target = join(dir, 'node_modules', 'mrp');
  await mkdir(target, { recursive: true });
  await exec('tar', ['xzf', join(packs, info!.filename), '-C', target, '--strip-components=1']);
  // Only what `dependencies` lists is installed with the package (from this repository's
  // node_modules, where their own dependencies resolve through the real path): a type a published
  // .d.ts needs from a devDependency (@types/…) is then missing here as it is for a user.
  const { dependencies } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
    dependencies: Record<string, string>;
  };
  for (const name of Object.keys(dependencies)) {
    const link = join(target, 'node_modules', name);
    await mkdir(dirname(link), { recursive: true });
    await symlink(join(ROOT, 'node_modules', name), link, 'dir');
  }
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: 'fresh-project', private: true, type: 'module' }));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

const APP = `import { Agent } from 'mrp';
import { createTestRelay, invoke } from 'mrp/testing';
import { statSync } from 'node:fs';

const relay = await createTestRelay();
const agent = new Agent(relay.url, {
  keyFile: 'realtime.key',
  name: 'RealtimeBot',
  capabilities: [{ name: 'translate', description: 'Translate text', tags: ['text', 'i18n'] }],
});
agent.onMessage(async (msg, ctx) => ({ translation: 'Hola' }));
const announced = agent.next('announced');
const running = agent.run({ mode: 'websocket' });
await announced;

const user = new Agent(relay.url, { keyFile: 'user.key' });
const sentId = await user.send(agent.publicKey, { text: 'Hello' });
let reply;
for await (const msg of user.messages()) {
  reply = msg;
  break;
}
const profile = await user.client.getAgent(agent.publicKey);
const local = await invoke(async () => ({ translation: 'Hola' }), { body: { text: 'Hello' } });
await agent.stop();
await running;
await relay.close();
console.log(JSON.stringify({
  sentId,
  agentKey: agent.publicKey,
  userKey: user.publicKey,
  keyMode: (statSync('realtime.key').mode & 0o777).toString(8),
  reply: { body: reply.body, in_reply_to: reply.in_reply_to, thread_id: reply.thread_id, sender_key: reply.sender_key },
  profile: { display_name: profile.display_name, capabilities: profile.capabilities },
  local: local.reply.body,
}));
`;

describe('the installed package', () => {
  before(async () => {
    if (
      !existsSync(join(ROOT, 'dist', 'testing.js')) ||
      statSync(join(ROOT, 'dist', 'testing.js')).mtimeMs < statSync(join(ROOT, 'src', 'testing.ts')).mtimeMs
    ) {
      await exec('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: ROOT });
    }
  });

  it('a plain ESM script serves, announces, sends and iterates with Agent; prints nothing itself', async (t) => {
    const project = await installedProject();
    t.after(() => project.cleanup());
    await writeFile(join(project.dir, 'app.mjs'), APP);
    const { stdout, stderr } = await exec(process.execPath, ['app.mjs'], { cwd: project.dir, timeout: 60_000 });
    assert.equal(stderr, '', 'the library printed nothing to stderr');
    const lines = stdout.trim().split('\n');
    assert.equal(lines.length, 1, `the library printed nothing to stdout:\n${stdout}`);
    const out = JSON.parse(lines[0]!);
    assert.equal(out.keyMode, '600');
    assert.deepEqual(out.reply, {
      body: { translation: 'Hola' },
      in_reply_to: out.sentId,
      thread_id: out.sentId,
      sender_key: out.agentKey,
    });
    assert.deepEqual(out.profile, {
      display_name: 'RealtimeBot',
      capabilities: [{ name: 'translate', description: 'Translate text', tags: ['text', 'i18n'] }],
    });
    assert.deepEqual(out.local, { translation: 'Hola' });
  });

  it("mrp init's handler.test.ts passes out of the box", async (t) => {
    const project = await installedProject();
    t.after(() => project.cleanup());
    // Without NODE_TEST_CONTEXT: the inner `node --test` must report as on its own, not to this runner.
    const { NODE_TEST_CONTEXT: _, ...outer } = process.env;
    const env = { ...outer, MRP_HOME: join(project.dir, '.mrp'), MRP_RELAY_URL: 'http://127.0.0.1:9' };
    await exec(process.execPath, [join(project.dir, 'node_modules', 'mrp', 'bin', 'mrp.js'), 'init', '--json'], {
      cwd: project.dir,
      env,
    });
    assert.ok(existsSync(join(project.dir, 'handler.test.ts')));
    const tsx = import.meta.resolve('tsx');
    const { stdout } = await exec(
      process.execPath,
      ['--import', tsx, '--test', '--test-reporter', 'tap', 'handler.test.ts'],
      { cwd: project.dir, env, timeout: 60_000 },
    );
    assert.match(stdout, /# pass 2\n/);
    assert.match(stdout, /# fail 0\n/);
  });

  it("its types compile in a Node-only TypeScript project that checks libraries' types too", async (t) => {
    const project = await installedProject();
    t.after(() => project.cleanup());
    await writeFile(
      join(project.dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2023',
          lib: ['ES2023'],
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          types: ['node'],
          typeRoots: [join(ROOT, 'node_modules', '@types')],
        },
        include: ['*.ts'],
      }),
    );
    await writeFile(
      join(project.dir, 'uses.ts'),
      `import { Agent, type Handler } from 'mrp';
import { createRelay } from 'mrp/relay';
import { createTestRelay, invoke } from 'mrp/testing';
const handler: Handler = async (msg) => ({ echo: msg.body });
export const used = [Agent, createRelay, createTestRelay, invoke, handler];
`,
    );
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    // No DOM library: the published types must not pull in ones that need it (@hpke's, SubtleCrypto).
    const result = await exec(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: project.dir }).then(
      () => '',
      (err: { stdout?: string }) => err.stdout ?? String(err),
    );
    assert.equal(result, '');
  });
});
