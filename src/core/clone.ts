/**
 * A deep copy of JSON data (what parsing a message gives: plain objects, arrays, strings, numbers,
 * booleans, null), several times faster than `structuredClone`, which serialises to a buffer and
 * back. Anything else found inside (a class instance, a typed array, a Map: what a custom codec
 * might put in a message) is copied by `structuredClone`, so the result is always a full copy.
 * A member named `__proto__` is copied as an own property, as JSON.parse made it.
 *
 * Recursive: meant for values whose depth is bounded (messages are checked against
 * `LIMITS.maxJsonDepth` when they arrive).
 */
export function cloneJson<T>(value: T): T {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) {
    const out = new Array<unknown>(value.length);
    for (let i = 0; i < value.length; i++) out[i] = cloneJson(value[i] as unknown);
    return out as T;
  }
  if (Object.getPrototypeOf(value) !== Object.prototype) return structuredClone(value);
  const out: Record<string, unknown> = {};
  const source = value as Record<string, unknown>;
  for (const key of Object.keys(source)) {
    const copy = cloneJson(source[key]);
    if (key === '__proto__')
      Object.defineProperty(out, key, { value: copy, enumerable: true, writable: true, configurable: true });
    else out[key] = copy;
  }
  return out as T;
}
