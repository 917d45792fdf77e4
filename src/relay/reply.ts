/**
 * Writing replies in the three modes routes declare (`router.ts`): JSON (an object, or verbatim
 * JSON text), text, and bytes — a stream with a known Content-Length, written with backpressure
 * (never more than the socket's buffer ahead of the client), cut short when the client goes
 * away, and not read at all for HEAD. Once the status line is out, a failing byte source can only
 * end the connection: the client sees a short body against its Content-Length.
 */
import type { ServerResponse } from 'node:http';
import type { BytesReply } from './router.js';

/**
 * A request whose body was not read to its end leaves unread bytes on the connection; the server
 * then ends that connection (server.ts), so the answer must say `Connection: close` rather than
 * promise a keep-alive that the next pooled request would find reset.
 */
function framing(res: ServerResponse, headers: Record<string, string>): Record<string, string> {
  return res.req && !res.req.complete ? { ...headers, Connection: 'close' } : headers;
}

/** Answers longer than this (in UTF-16 units) are written in pieces of this many bytes, each when the socket has room. */
const PIECE = 64 * 1024;

/** Who watches answers until their client has read them (`unsent-responses.ts`). */
export interface AnswerWatch {
  watch(res: ServerResponse, pending?: number): (left: number) => void;
}

/**
 * Writes the status line and headers, sends `text` as the body and ends the answer. A short one
 * in one write; a long one as bytes, piece by piece with backpressure, so the kernel's progress
 * is visible (a `drain` per piece read) and the process never queues more than a piece ahead of
 * the client. `watch` is told what is left. Resolves once a long answer is written.
 */
function answerText(
  res: ServerResponse,
  status: number,
  headers: Record<string, string>,
  contentType: string,
  text: string,
  head: boolean,
  watch: AnswerWatch | undefined,
): void | Promise<void> {
  const bytes = text.length > PIECE ? Buffer.from(text) : undefined;
  res.writeHead(status, {
    ...headers,
    'Content-Type': contentType,
    'Content-Length': String(bytes?.length ?? Buffer.byteLength(text)),
  });
  if (head) {
    res.end();
    return;
  }
  if (!bytes) {
    res.end(text);
    watch?.watch(res, 0);
    return;
  }
  const left = watch?.watch(res, bytes.length);
  return (async () => {
    for (let at = 0; at < bytes.length; ) {
      if (res.destroyed) return;
      const end = Math.min(at + PIECE, bytes.length);
      const room = res.write(bytes.subarray(at, end));
      at = end;
      left?.(bytes.length - at);
      if (!room && at < bytes.length) await drained(res);
    }
    if (!res.destroyed) res.end();
  })();
}

/**
 * Writes a JSON answer (or an empty one for 204/HEAD); a string body is sent as it is. Resolves
 * once a long answer is written (handed to the socket).
 */
export function writeJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string>,
  head = false,
  watch?: AnswerWatch,
): void | Promise<void> {
  if (res.headersSent || res.destroyed) return;
  headers = framing(res, headers);
  if (status === 204 || body === undefined) {
    res.writeHead(status, headers);
    res.end();
    return;
  }
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return answerText(res, status, headers, 'application/json; charset=utf-8', text, head, watch);
}

export function writeText(
  res: ServerResponse,
  status: number,
  text: string,
  contentType: string,
  headers: Record<string, string>,
  head = false,
  watch?: AnswerWatch,
): void | Promise<void> {
  if (res.headersSent || res.destroyed) return;
  return answerText(res, status, framing(res, headers), contentType, text, head, watch);
}

/** Streams `reply.body`; resolves when it is all written, the client left, or the source failed (logged by the caller). */
export async function writeBytes(
  res: ServerResponse,
  reply: BytesReply,
  headers: Record<string, string>,
  head: boolean,
): Promise<void> {
  if (res.headersSent || res.destroyed) {
    reply.cancel?.();
    return;
  }
  res.writeHead(reply.status, {
    ...framing(res, headers),
    'Content-Type': reply.contentType,
    'Content-Length': String(reply.length),
  });
  if (head) {
    reply.cancel?.();
    res.end();
    return;
  }
  let sent = 0;
  try {
    for await (const chunk of reply.body) {
      if (res.destroyed) break;
      sent += chunk.length;
      if (!res.write(chunk)) await drained(res);
    }
  } catch (err) {
    res.destroy();
    throw err;
  }
  // The client left (breaking out of the loop released the source).
  if (res.destroyed) return;
  if (sent !== reply.length) {
    // A source that yields more or less than it declared would corrupt the connection's framing.
    res.destroy();
    throw new Error(`a bytes reply declared ${reply.length} bytes and yielded ${sent}`);
  }
  res.end();
}

/** Resolves once the response can take more (or is gone). */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
