/** `isAlive`: a pid lock's question. A killed process its parent has not reaped yet (a zombie) holds nothing. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { isAlive } from '../../src/runtime/pid.js';

function state(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

describe('isAlive', () => {
  it('this process is alive; a pid nobody has is not', () => {
    assert.equal(isAlive(process.pid), true);
    assert.equal(isAlive(2 ** 22 + 12345), false);
  });

  it('a killed process its parent has not reaped (a zombie) is not alive', {
    skip: process.platform !== 'linux',
  }, async (t) => {
    // The shell starts a child, prints its pid and becomes `sleep`, which never reaps it.
    const parent = spawn('sh', ['-c', 'sleep 60 & echo $!; exec sleep 60'], { stdio: ['ignore', 'pipe', 'ignore'] });
    t.after(() => parent.kill('SIGKILL'));
    const child = await new Promise<number>((resolve) =>
      parent.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim()))),
    );
    assert.equal(isAlive(child), true);
    process.kill(child, 'SIGKILL');
    const deadline = Date.now() + 10_000;
    while (state(child) !== 'Z' && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    assert.equal(state(child), 'Z');
    assert.doesNotThrow(() => process.kill(child, 0), 'signal 0 still reaches a zombie');
    assert.equal(isAlive(child), false);
  });
});
