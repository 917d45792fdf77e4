/** cloneJson: a full, independent copy of JSON data, and of anything else through structuredClone. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cloneJson } from '../../src/core/clone.js';

describe('cloneJson', () => {
  it('copies JSON data deeply: equal, and sharing no object with the original', () => {
    const original = JSON.parse(
      '{"a":1,"b":[1,{"c":"x","d":[null,true,false]}],"e":{"f":{"g":-0.5}},"h":"","i":12345678901234567890}',
    );
    const copy = cloneJson(original);
    assert.deepEqual(copy, original);
    assert.notEqual(copy, original);
    assert.notEqual(copy.b, original.b);
    assert.notEqual(copy.b[1], original.b[1]);
    assert.notEqual(copy.e.f, original.e.f);
    copy.b[1].d.push('changed');
    copy.e.f.g = 2;
    assert.deepEqual(original.b[1].d, [null, true, false]);
    assert.equal(original.e.f.g, -0.5);
  });

  it('keeps a "__proto__" member an own property, as JSON.parse made it, without touching the prototype', () => {
    const original = JSON.parse('{"__proto__":{"polluted":true},"x":1}');
    const copy = cloneJson(original);
    assert.equal(Object.getPrototypeOf(copy), Object.prototype);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
    assert.deepEqual(Object.keys(copy), ['__proto__', 'x']);
    const own = (o: object): unknown => Object.getOwnPropertyDescriptor(o, '__proto__')?.value;
    assert.deepEqual(own(copy), { polluted: true });
    assert.notEqual(own(copy), own(original));
  });

  it('copies what is not JSON (typed arrays, dates, maps) through structuredClone', () => {
    const bytes = new Uint8Array([1, 2, 3]);
    const original = { bytes, when: new Date(0), map: new Map([['k', 1]]), list: [new Uint8Array([9])] };
    const copy = cloneJson(original);
    assert.deepEqual(copy, original);
    assert.notEqual(copy.bytes, bytes);
    copy.bytes[0] = 7;
    assert.equal(bytes[0], 1);
    assert.ok(copy.when instanceof Date);
    assert.ok(copy.map instanceof Map);
  });

  it('returns scalars as they are', () => {
    for (const v of [null, 0, 1.5, 'text', true, false]) assert.equal(cloneJson(v), v);
  });
});
