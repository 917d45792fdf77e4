/**
 * Reading a small answer whole, bounded: a relay (or anything at its address) that answers on
 * and on is cut off after `maxBytes` instead of being read into memory.
 */

/**
 * How much of a small answer is read: a refusal's error envelope, the health record, an upload's
 * blob record. The rest is dropped unread (what was read then does not parse: `invalid_response`).
 */
export const MAX_SMALL_ANSWER_BYTES = 64 * 1024;

/**
 * A fetch answer's text, at most its first `maxBytes`; `cut` when there was more (the rest is
 * then cancelled unread: leaving the loop cancels the body).
 */
export async function readBounded(res: globalThis.Response, maxBytes: number): Promise<{ text: string; cut: boolean }> {
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  let cut = false;
  for await (const chunk of (res.body ?? []) as AsyncIterable<Uint8Array>) {
    if (bytes + chunk.byteLength > maxBytes) {
      chunks.push(chunk.subarray(0, maxBytes - bytes));
      bytes = maxBytes;
      cut = true;
      break;
    }
    chunks.push(chunk);
    bytes += chunk.byteLength;
  }
  return { text: Buffer.concat(chunks, bytes).toString('utf8'), cut };
}

/** `readBounded`'s text alone: what was read of a small answer (a cut one then does not parse). */
export async function boundedText(res: globalThis.Response, maxBytes: number): Promise<string> {
  return (await readBounded(res, maxBytes)).text;
}
