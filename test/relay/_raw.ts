/**
 * Wire-level tools for hostile-input tests (not a test file): a WebSocket over a bare TCP socket
 * (hand-made handshake and frames, so a test can stall mid-frame or never read), a WebSocket that
 * keeps frames as raw text (to check bytes travel verbatim), and signed HTTP with a raw byte body.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import WebSocket from 'ws';
import { type Keypair, signRequest, uniqueTimestamp } from '../../src/protocol/signing.js';
import type { RawResponse } from '../helpers/relay.js';

/** A client frame header: FIN, `opcode` (1 text, 2 binary, 8 close), masked with a zero key (payload unchanged). */
export function frameHeader(len: number, opcode = 1): Buffer {
  const first = 0x80 | opcode;
  if (len < 126) return Buffer.from([first, 0x80 | len, 0, 0, 0, 0]);
  if (len < 65536) {
    const b = Buffer.alloc(8);
    b[0] = first;
    b[1] = 0x80 | 126;
    b.writeUInt16BE(len, 2);
    return b;
  }
  const b = Buffer.alloc(14);
  b[0] = first;
  b[1] = 0x80 | 127;
  b.writeBigUInt64BE(BigInt(len), 2);
  return b;
}

/** One whole client text frame. */
export function textFrame(text: string | Buffer): Buffer {
  const payload = typeof text === 'string' ? Buffer.from(text) : text;
  return Buffer.concat([frameHeader(payload.length), payload]);
}

export interface TcpWs {
  socket: Socket;
  /** Bytes received after the handshake. */
  received(): Buffer;
  /** Resolves when the TCP connection is gone (closed by either side, reset included). */
  gone: Promise<void>;
  /** Resolves with the code of the first close frame the relay sends. */
  closeCode(): Promise<number>;
}

/** A WebSocket handshake over a bare TCP socket; everything after is up to the test. Destroyed at test end. */
export async function tcpWs(t: TestContext, url: string, localAddress?: string): Promise<TcpWs> {
  const u = new URL(url);
  const socket = connect({ port: Number(u.port), host: u.hostname, ...(localAddress ? { localAddress } : {}) });
  t.after(() => socket.destroy());
  socket.on('error', () => {});
  const gone = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  socket.write(
    `GET /v1/ws HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let buffer = Buffer.alloc(0);
  let headerDone = false;
  const waiters = new Set<() => void>();
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      buffer = Buffer.concat([buffer, d]);
      if (!headerDone) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffer.subarray(0, end).toString('latin1');
        buffer = buffer.subarray(end + 4);
        headerDone = true;
        if (!head.startsWith('HTTP/1.1 101')) reject(new Error(head.split('\r\n')[0]));
        else resolve();
      }
      for (const w of waiters) w();
    });
  });
  const closeCode = (): Promise<number> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        // Walk the server frames (unmasked) looking for a close frame.
        let i = 0;
        while (i + 2 <= buffer.length) {
          const opcode = buffer[i]! & 0x0f;
          let len = buffer[i + 1]! & 0x7f;
          let off = i + 2;
          if (len === 126) {
            if (off + 2 > buffer.length) return;
            len = buffer.readUInt16BE(off);
            off += 2;
          } else if (len === 127) {
            if (off + 8 > buffer.length) return;
            len = Number(buffer.readBigUInt64BE(off));
            off += 8;
          }
          if (off + len > buffer.length) return;
          if (opcode === 8) {
            waiters.delete(check);
            resolve(len >= 2 ? buffer.readUInt16BE(off) : 1005);
            return;
          }
          i = off + len;
        }
      };
      waiters.add(check);
      check();
      void gone.then(() => {
        check();
        if (waiters.has(check)) {
          waiters.delete(check);
          reject(new Error('connection closed without a close frame'));
        }
      });
    });
  return { socket, received: () => buffer, gone, closeCode };
}

/** Writes and resolves once the bytes are handed to the kernel, or the socket is gone. */
export function write(socket: Socket, data: Buffer | string): Promise<boolean> {
  return new Promise((resolve) => {
    if (socket.destroyed) return resolve(false);
    const done = (err?: Error | null): void => {
      socket.off('close', onClose);
      resolve(!err);
    };
    const onClose = (): void => done(new Error('closed'));
    socket.once('close', onClose);
    socket.write(data, done);
  });
}

/** A WebSocket (ws library) whose frames are kept as raw text. */
export class TextSocket {
  readonly ws: WebSocket;
  readonly #frames: string[] = [];
  readonly #waiters: Array<(f: string) => void> = [];
  readonly closed: Promise<{ code: number; reason: string }>;

  constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.on('error', () => {});
    this.ws.on('message', (data) => {
      const text = data.toString();
      const w = this.#waiters.shift();
      if (w) w(text);
      else this.#frames.push(text);
    });
    this.closed = new Promise((resolve) =>
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
  }

  static async open(t: TestContext, url: string): Promise<TextSocket> {
    const s = new TextSocket(url);
    t.after(() => s.ws.terminate());
    await new Promise<void>((resolve, reject) => {
      s.ws.once('open', () => resolve());
      s.ws.once('error', reject);
    });
    return s;
  }

  send(text: string | Buffer, binary = false): void {
    this.ws.send(text, { binary });
  }

  next(timeoutMs = 5000): Promise<string> {
    const queued = this.#frames.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no frame within ${timeoutMs} ms`)), timeoutMs);
      // A waiter the test no longer cares about (the socket closed) must not hold the process open.
      timer.unref();
      this.#waiters.push((f) => {
        clearTimeout(timer);
        resolve(f);
      });
    });
  }

  /** The next frame whose text matches. */
  async nextMatching(pred: (text: string) => boolean, timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = await this.next(Math.max(1, deadline - Date.now()));
      if (pred(f)) return f;
    }
  }
}

/** A signed request whose body is exactly `body` (bytes or text), signed over those bytes. */
export async function signedBytes(
  baseUrl: string,
  kp: Keypair,
  method: string,
  target: string,
  body: Buffer | string,
): Promise<RawResponse> {
  const bytes = typeof body === 'string' ? Buffer.from(body) : body;
  const headers = signRequest(kp, method, target, bytes, Date.now(), { timestamp: uniqueTimestamp(Date.now()) });
  const res = await fetch(baseUrl + target, {
    method,
    headers: { ...headers, ...(bytes.length ? { 'Content-Type': 'application/json' } : {}) },
    ...(bytes.length ? { body: bytes } : {}),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = text;
  }
  return { status: res.status, headers: res.headers, body: parsed, text };
}

/** Nested arrays `depth` levels deep, as text. */
export const deep = (depth: number): string => `${'['.repeat(depth)}${']'.repeat(depth)}`;
