import { access, mkdir, readFile } from 'node:fs/promises';
import { userInfo } from 'node:os';
import { basename, dirname, extname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { formatDuration } from '../../core/duration.js';
import { UsageError } from '../../core/errors.js';
import { Keypair } from '../../protocol/signing.js';
import { RUNTIME_DEFAULTS } from '../../runtime/defaults.js';
import type { CliContext } from '../context.js';
import { type Deps, mrpBin, selfCommand } from '../deps.js';
import { writeExclusive } from '../files.js';
import { writeKeyFile } from '../keys.js';
import { durationOption, intOption } from '../options.js';
import { action, addGlobalOptions, examples } from '../program.js';
import {
  DEFAULT_HANDLER,
  DOCKERIGNORE,
  dockerfileText,
  handlerTestText,
  manifestText,
  slug,
  systemdUnitText,
  TEMPLATES,
  type Template,
  unitFileName,
} from '../scaffold.js';
import { packageVersion } from '../version.js';

export interface InitOptions {
  name?: string;
  template?: string;
  handler?: string;
  docker?: boolean;
  systemd?: boolean;
  grace?: string;
  healthPort?: string;
}

const ROOT = new URL('../../../', import.meta.url);
const SCHEMA = fileURLToPath(new URL('schema/mrp.schema.json', ROOT));

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * Whether an `import 'mrp/testing'` from `dir` finds this package: a `node_modules/mrp` in it or
 * above it (how Node resolves a bare import). A global install (`npm i -g`, npx) is not found.
 */
async function projectHasMrp(dir: string): Promise<boolean> {
  for (let d = resolve(dir); ; d = dirname(d)) {
    if (await exists(join(d, 'node_modules', 'mrp', 'package.json'))) return true;
    if (dirname(d) === d) return false;
  }
}

function template(value: string | undefined): Template | undefined {
  if (value === undefined) return undefined;
  if ((TEMPLATES as readonly string[]).includes(value)) return value as Template;
  throw new UsageError(`--template: "${value}" must be one of ${TEMPLATES.join(', ')}`, { code: 'invalid_argument' });
}

/** `./handler.ts` style: relative to the project, with a leading `./`. */
function shownPath(cwd: string, file: string): string {
  const rel = relative(cwd, file);
  return rel.startsWith('..') || rel === '' ? file : `./${rel}`;
}

/**
 * `mrp init`: scaffold mrp.yaml and a handler (never overwriting), create a key if needed, and on
 * request a Dockerfile (+ .dockerignore) and a systemd unit that run it.
 */
export async function runInit(ctx: CliContext, options: InitOptions): Promise<void> {
  const cwd = ctx.deps.cwd;
  const tpl = template(options.template);
  const graceMs = durationOption(options.grace, '--grace', RUNTIME_DEFAULTS.graceMs);
  const graceSeconds = Math.max(1, Math.ceil(graceMs / 1000));
  const healthPort = intOption(options.healthPort, '--health-port', 9090, 1, 65535);
  const name =
    options.name ??
    (basename(cwd)
      .replace(/[^\w .-]/g, '')
      .trim() ||
      'my-agent');
  const schemaRef = (await exists(SCHEMA))
    ? relative(cwd, SCHEMA) || SCHEMA
    : 'https://mrphub.io/schemas/mrp.yaml.json';
  const handlerFile = resolve(cwd, options.handler ?? 'handler.ts');
  const handler = shownPath(cwd, handlerFile);
  const handlerText = tpl ? await readFile(new URL(`handlers/${tpl}.ts`, ROOT), 'utf8') : DEFAULT_HANDLER;
  const { key_file, relay } = await ctx.settings();

  const files: Array<{ path: string; text: string }> = [
    { path: join(cwd, 'mrp.yaml'), text: manifestText(name, schemaRef, tpl) },
    { path: handlerFile, text: handlerText },
  ];
  // The default handler comes with its test (mrp/testing's invoke), unless the handler is there already.
  const handlerTest =
    !tpl && extname(handlerFile) === '.ts' && !(await exists(handlerFile))
      ? handlerFile.replace(/\.ts$/, '.test.ts')
      : undefined;
  if (handlerTest) files.push({ path: handlerTest, text: handlerTestText(`./${basename(handlerFile)}`) });
  if (options.docker) {
    const packageJson = await exists(join(cwd, 'package.json'));
    files.push({
      path: join(cwd, 'Dockerfile'),
      text: dockerfileText({ name, handler, graceSeconds, healthPort, version: packageVersion(), packageJson }),
    });
    files.push({ path: join(cwd, '.dockerignore'), text: DOCKERIGNORE });
  }
  if (options.systemd) {
    files.push({
      path: join(cwd, unitFileName(name)),
      text: systemdUnitText({
        name,
        user: ctx.deps.env['USER'] || userInfo().username,
        cwd,
        node: process.execPath,
        bin: mrpBin(),
        handler,
        graceSeconds,
        env: { MRP_HOME: ctx.home, MRP_KEY_FILE: key_file.value, MRP_RELAY_URL: relay.value },
      }),
    });
  }
  // A handler in a directory that does not exist yet (`--handler src/bot.ts`) gets it, before any
  // file is written: a failure leaves nothing half-made.
  const handlerDir = dirname(handlerFile);
  try {
    await mkdir(handlerDir, { recursive: true });
  } catch (err) {
    throw new UsageError(
      `--handler: cannot create the directory ${shownPath(cwd, handlerDir)} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`,
      { code: 'invalid_argument' },
    );
  }
  const created: string[] = [];
  const kept: string[] = [];
  for (const f of files) {
    try {
      await writeExclusive(f.path, f.text, 0o644);
      created.push(f.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      kept.push(f.path);
    }
  }
  let keyCreated = false;
  let publicKey: string;
  if (await exists(key_file.value)) {
    publicKey = (await ctx.identity()).keypair.publicKey;
  } else {
    const kp = Keypair.generate();
    await writeKeyFile(key_file.value, kp);
    keyCreated = true;
    publicKey = kp.publicKey;
  }
  // The test imports `mrp/testing`: it runs only where this project can import the package.
  const testCommand = handlerTest
    ? `${(await projectHasMrp(cwd)) ? '' : 'npm install --save-dev mrp tsx, then '}npx tsx --test ${shownPath(cwd, handlerTest)}   (Node ≥ 23.6: node --test)`
    : undefined;
  const mrp = selfCommand(ctx.deps.env);
  const next = `${mrp} run --handler ${handler}`;
  const { style } = ctx.out;
  const then: string[] = [];
  if (options.docker)
    then.push(`docker build -t ${slug(name)} .   ${style.dim('(run line and key mount: see the Dockerfile header)')}`);
  if (options.systemd)
    then.push(`sudo cp ${unitFileName(name)} /etc/systemd/system/ && sudo systemctl enable --now ${slug(name)}`);
  ctx.out.result(
    {
      created,
      kept,
      key_file: key_file.value,
      key_created: keyCreated,
      public_key: publicKey,
      template: tpl ?? null,
      next,
      test: testCommand?.replace(/\s+\(Node.*$/, '') ?? null,
    },
    () => [
      ...created.map((p) => `${style.green('✔')} created ${relative(cwd, p)}`),
      ...kept.map((p) => `${style.yellow('•')} kept ${relative(cwd, p)} (already there)`),
      keyCreated
        ? `${style.green('✔')} created identity ${key_file.value}`
        : `${style.dim('•')} using identity ${key_file.value}`,
      `  public key  ${style.cyan(publicKey)}`,
      '',
      `Next: ${style.bold(next)}`,
      ...then.map((l) => `      ${l}`),
      ...(testCommand ? [style.dim(`  test it: ${testCommand}`)] : []),
      style.dim(`  (no relay handy? \`${mrp} dev --handler ${handler}\` runs one locally)`),
    ],
    // -q: the address, as keygen and whoami print it.
    () => publicKey,
  );
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('init')
    .description(
      'scaffold mrp.yaml and a handler here (never overwrites), create a key if needed; optionally a Dockerfile or systemd unit',
    )
    .option('--name <name>', 'display name for mrp.yaml (default: this folder)')
    .option('--template <name>', `start from an example handler: ${TEMPLATES.join(' | ')}`)
    .option('-H, --handler <path>', 'handler file to create or use', './handler.ts')
    .option('--docker', 'also write a Dockerfile and .dockerignore (tini as PID 1, non-root, health check)')
    .option('--systemd', 'also write a systemd unit (<name>.service) for this machine')
    .option(
      '--grace <duration>',
      'shutdown grace for the runner; stop timeouts are set above it',
      formatDuration(RUNTIME_DEFAULTS.graceMs),
    )
    .option('--health-port <port>', 'Dockerfile: port of /healthz, /readyz and /metrics', '9090');
  examples(addGlobalOptions(cmd), [
    'mkdir my-agent && cd my-agent && mrp init',
    'mrp init --name TranslatorBot --template router',
    'mrp init --docker --grace 20s',
    'mrp init --systemd --handler ./bot.ts',
  ]);
  cmd.action(action(deps, runInit));
}
