/**
 * The handler-exit trap on a stand-in process (the real one would end the test run): calls from
 * handler code — `exit` or the internal `reallyExit` it ends in, also after the handler returned —
 * are reported once and end with 70; the CLI's own (`cliExit`) pass through; `dispose` restores both.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EXIT } from '../../src/cli/exit.js';
import { cliExit, type ExitCall, trapHandlerExit } from '../../src/cli/handler-exit.js';
import { inHandlerScope } from '../../src/runtime/scope.js';

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
