/**
 * The handler-exit trap on a stand-in process (the real one would end the test run): calls from
 * handler code — `exit` or the internal `reallyExit` it ends in, also after the handler returned —
 * are reported once and end with 70; the CLI's own (`cliExit`) pass through; `dispose` restores both.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it, type TestContext } from 'node:test';
import { EXIT } from '../../src/cli/exit.js';
import { cliExit, type ExitCall, trapHandlerExit } from '../../src/cli/handler-exit.js';
import { inHandlerScope } from '../../src/runtime/scope.js';
import { runCli, tempDir, testDeps } from '../helpers/cli.js';

class Ended extends Error {}

/** Like node's process: `exit` ends in `reallyExit`, which is what ends the process. */
function standIn() {
  const ended: unknown[] = [];
  const proc = {
    exit(code?: number | string | null): never {
      proc.reallyExit(Number(code ?? 0));
      throw new Ended();
    },
    reallyExit(code?: number): void {
      ended.push(code);
      throw new Ended();
    },
  };
  return { proc, ended, original: { exit: proc.exit, reallyExit: proc.reallyExit } };
}

describe('trapHandlerExit', () => {
  for (const call of ['exit', 'reallyExit'] as const) {
    it(`process.${call}(0) from a handler is reported once and ends with ${EXIT.handlerExit}`, () => {
      const { proc, ended } = standIn();
      const reports: Array<[string, unknown, ExitCall]> = [];
      const trap = trapHandlerExit(proc, (id, code, via) => reports.push([id, code, via]));
      assert.throws(() => inHandlerScope('m1', () => proc[call](0)), Ended);
      assert.deepEqual(reports, [['m1', 0, call]]);
      assert.deepEqual(ended, [EXIT.handlerExit]);
      trap.dispose();
    });
  }

  it('a call after the handler returned (code it left running) is still the handler’s', () => {
    const { proc, ended } = standIn();
    const reports: Array<[string, unknown, ExitCall]> = [];
    const trap = trapHandlerExit(proc, (id, code, via) => reports.push([id, code, via]));
    inHandlerScope('m1', () => 'returned');
    assert.throws(() => proc.exit(0), Ended);
    assert.deepEqual(reports, [['no message (code a handler left running)', 0, 'exit']]);
    assert.deepEqual(ended, [EXIT.handlerExit]);
    trap.dispose();
  });

  it('the CLI’s own calls (cliExit) pass through; dispose restores both', () => {
    const { proc, ended, original } = standIn();
    const reports: unknown[] = [];
    const trap = trapHandlerExit(proc, (...args) => reports.push(args));
    assert.notEqual(proc.reallyExit, original.reallyExit);
    assert.throws(() => inHandlerScope('m1', () => cliExit(3, proc)), Ended);
    assert.deepEqual(ended, [3]);
    assert.deepEqual(reports, []);
    trap.dispose();
    assert.equal(proc.exit, original.exit);
    assert.equal(proc.reallyExit, original.reallyExit);
  });
});

describe('handler code that ends or stalls mrp while loading', () => {
  const BIN = new URL('../../bin/mrp.js', import.meta.url).pathname;

  async function project(t: TestContext) {
    const dir = await tempDir(t);
    await writeFile(join(dir, 'exits.mjs'), 'process.exit(0);\nexport default async () => null;\n');
    await writeFile(join(dir, 'stalls.mjs'), 'await new Promise(() => {});\nexport default async () => null;\n');
    const home = join(dir, 'home');
    // Nothing listens there: loading comes before any connection.
    const deps = testDeps({ home, cwd: dir, env: { MRP_RELAY_URL: 'http://127.0.0.1:1' } });
    assert.equal((await runCli(['keygen', '-q'], deps)).code, 0);
    return { dir, home, deps };
  }

  function mrp(
    argv: string[],
    cwd: string,
    home: string,
    offline = false,
  ): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return new Promise((resolve, reject) => {
      const env: NodeJS.ProcessEnv = { ...process.env, MRP_HOME: home, NO_COLOR: '1' };
      // `mrp dev` runs its own relay and refuses another one.
      if (offline) delete env['MRP_RELAY_URL'];
      else env['MRP_RELAY_URL'] = 'http://127.0.0.1:1';
      const child = spawn(process.execPath, [BIN, ...argv], { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code, stdout, stderr }));
    });
  }

  it('mrp run: process.exit(0) at load exits 70 saying so (not 0, silently); a top-level await that never settles exits 2 saying so', async (t) => {
    const { dir, home } = await project(t);
    const exits = await mrp(['run', '--handler', 'exits.mjs'], dir, home);
    assert.equal(exits.code, EXIT.handlerExit, exits.stderr);
    assert.match(exits.stderr, /^error: the handler called process\.exit\(0\) while loading/m);
    const json = await mrp(['run', '--handler', 'exits.mjs', '--json'], dir, home);
    assert.equal(JSON.parse(json.stderr).error.code, 'handler_exit');
    const stalls = await mrp(['run', '--handler', 'stalls.mjs'], dir, home);
    assert.equal(stalls.code, EXIT.usage, stalls.stderr);
    assert.match(stalls.stderr, /^error: the handler never finished loading/m);
  });

  it('mrp dev --once: a handler calling process.exit(0) on the demo message exits 70 saying so (not 0, as if answered)', async (t) => {
    const { dir, home } = await project(t);
    await writeFile(join(dir, 'exits-on-message.mjs'), 'export default async () => process.exit(0);\n');
    const res = await mrp(['dev', '--once', '--port', '0', '--handler', 'exits-on-message.mjs'], dir, home, true);
    assert.equal(res.code, EXIT.handlerExit, res.stderr);
    assert.match(res.stdout, /"event":"handler_exit".*the handler called process\.exit\(0\) while handling msg_/);
  });

  it('mrp doctor: either is a failed handler check, and doctor goes on to its summary (exit 1)', async (t) => {
    const { deps } = await project(t);
    // Should doctor let the call through, it must fail this test, not end the test process with 0.
    const exit = process.exit;
    const stand = ((code?: number) => {
      throw new Error(`process.exit(${code}) reached the process`);
    }) as typeof process.exit;
    process.exit = stand;
    t.after(() => {
      process.exit = exit;
    });
    const exits = await runCli(['doctor', '--handler', 'exits.mjs', '--json'], deps);
    assert.equal(process.exit, stand, 'process.exit is restored');
    assert.equal(exits.code, EXIT.failure, exits.stderr);
    const handler = (doc: string) =>
      (JSON.parse(doc).checks as Array<{ name: string; status: string; summary: string }>).find(
        (c) => c.name === 'handler',
      )!;
    assert.equal(handler(exits.stdout).status, 'fail');
    assert.match(handler(exits.stdout).summary, /called process\.exit\(0\) while loading/);
    const stalls = await runCli(['doctor', '--handler', 'stalls.mjs', '--timeout', '300ms', '--json'], deps);
    assert.equal(stalls.code, EXIT.failure, stalls.stderr);
    assert.match(handler(stalls.stdout).summary, /did not finish loading within 300 ms/);
  });
});
