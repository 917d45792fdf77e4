import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TurnCork } from '../../src/core/cork.js';

function socket(destroyed = false) {
  const calls: string[] = [];
  return { calls, destroyed, cork: () => calls.push('cork'), uncork: () => calls.push('uncork') };
}
const nextTick = () => new Promise<void>((resolve) => process.nextTick(resolve));

describe('TurnCork', () => {
  it("corks once per turn and uncorks once after the turn's microtasks", async () => {
    const s = socket();
    const cork = new TurnCork();
    cork.hold(s, 10);
    cork.hold(s, 20);
    assert.equal(cork.bytes, 30);
    assert.deepEqual(s.calls, ['cork']);
    await nextTick();
    assert.deepEqual(s.calls, ['cork', 'uncork']);
    assert.equal(cork.bytes, 0);
    cork.hold(s, 5);
    await nextTick();
    assert.deepEqual(s.calls, ['cork', 'uncork', 'cork', 'uncork'], 'the next turn corks again');
  });

  it('uncorks at once past maxBytes, and every cork has exactly one uncork', async () => {
    const s = socket();
    const cork = new TurnCork(100);
    cork.hold(s, 60);
    cork.check();
    assert.deepEqual(s.calls, ['cork']);
    cork.hold(s, 60);
    cork.check();
    assert.deepEqual(s.calls, ['cork', 'uncork']);
    cork.hold(s, 1);
    await nextTick();
    await nextTick();
    assert.deepEqual(s.calls, ['cork', 'uncork', 'cork', 'uncork']);
  });

  it('leaves a destroyed or missing socket alone', async () => {
    const s = socket(true);
    const cork = new TurnCork();
    cork.hold(s, 1);
    cork.hold(undefined, 1);
    cork.flush();
    await nextTick();
    assert.deepEqual(s.calls, []);
  });
});
