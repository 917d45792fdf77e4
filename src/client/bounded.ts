/**
 * Reading a small answer whole, bounded: a relay (or anything at its address) that answers on
 * and on is cut off after `maxBytes` instead of being read into memory.
 */

/**
 * How much of a small answer is read: a refusal's error envelope, the health record, an upload's
 * blob record. The rest is dropped unread (what was read then does not parse: `invalid_response`).
 */
export const MAX_SMALL_ANSWER_BYTES = 64 * 1024;

/** A fetch answer's text, at most its first `maxBytes` (the rest is cancelled unread). */
export async function boundedText(res: globalThis.Response, maxBytes: number): Promise<string> {
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for await (const chunk of (res.body ?? []) as AsyncIterable<Uint8Array>) {
    const room = maxBytes - bytes;
    if (chunk.byteLength >= room) {
      chunks.push(chunk.subarray(0, room));
      bytes += room;
      // Leaving the loop cancels the rest of the answer.
      break;
    }
    chunks.push(chunk);
    bytes += chunk.byteLength;
  }
  return Buffer.concat(chunks, bytes).toString('utf8');
}
