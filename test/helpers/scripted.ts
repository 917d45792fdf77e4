/**
 * Scripted relays for misbehaviour the real relay will not produce (hostile frames, hostile poll
 * pages). Both authenticate anything, answer sends as accepted and record what the runner did:
 * the replies it sent and the ids it acknowledged. Nothing here checks signatures.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';

export type Json = Record<string, any>;

/** What a scripted relay saw the runner do. */
export class Seen {
  readonly sends: Json[] = [];
  readonly acks: string[] = [];
  readonly #waiters = new Set<() => void>();

  notify(): void {
    for (const w of [...this.#waiters]) w();
  }

  /** Resolves once `done()` holds; rejects after `timeoutMs` saying what was awaited. */
  until(done: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve();
      };
      const timer = setTimeout(() => {
        this.#waiters.delete(check);
        reject(new Error(`timed out waiting for ${what} (sends: ${this.sends.length}, acks: ${this.acks.join(',')})`));
      }, timeoutMs);
      this.#waiters.add(check);
      check();
    });
  }

  repliesTo(id: string): Json[] {
    return this.sends.filter((s) => s['in_reply_to'] === id);
  }
}

let nextId = 0;
function messageId(): string {
  return `msg_${Math.floor(Date.now() / 1000)}_${(++nextId).toString(16).padStart(12, '0')}`;
}

/**
 * A WebSocket relay: authenticates anything, then sends `frames` (raw texts) in order; answers
 * `send` frames with `send_result` ok and records them and acks. `url` is the HTTP base URL.
 */
export async function scriptedWsRelay(
  t: TestContext,
  frames: () => string[],
): Promise<{ url: string; record: Seen; sockets: WebSocket[] }> {
  const wss = new WebSocketServer({ port: 0, host: '127.0.0.1' });
  await once(wss, 'listening');
  const record = new Seen();
  const sockets: WebSocket[] = [];
  wss.on('connection', (ws) => {
    sockets.push(ws);
    ws.on('message', (data) => {
      const frame = JSON.parse(data.toString()) as Json;
      if (frame['type'] === 'auth') {
        ws.send(JSON.stringify({ type: 'auth_result', status: 'ok', public_key: frame['public_key'] }));
        for (const text of frames()) ws.send(text);
      } else if (frame['type'] === 'send') {
        record.sends.push(frame);
        const id = messageId();
        ws.send(
          JSON.stringify({
            type: 'send_result',
            request_id: frame['request_id'],
            status: 'ok',
            message_id: id,
            created_at: new Date().toISOString(),
            expires_at: new Date(Date.now() + 86_400_000).toISOString(),
          }),
        );
      } else if (frame['type'] === 'ack') {
        record.acks.push(frame['message_id'] as string);
      }
      record.notify();
    });
  });
  t.after(() => {
    for (const c of wss.clients) c.terminate();
    wss.close();
  });
  return { url: `http://127.0.0.1:${(wss.address() as AddressInfo).port}`, record, sockets };
}

/**
 * An HTTP relay for poll mode: the first `GET /v1/messages` (status sent) is answered with
 * `page` (raw text), later ones with an empty page; `POST /v1/messages` is recorded and accepted;
 * anything else answers `{}`.
 */
export async function scriptedPollRelay(
  t: TestContext,
  pages: string[],
): Promise<{ url: string; record: Seen; polls: () => number }> {
  const record = new Seen();
  let polls = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://x');
      res.setHeader('Content-Type', 'application/json');
      if (
        req.method === 'GET' &&
        url.pathname === '/v1/messages' &&
        (url.searchParams.get('status') ?? 'sent') === 'sent'
      ) {
        polls++;
        res.end(pages.shift() ?? '{"messages":[],"has_more":false,"next_cursor":null}');
        record.notify();
        return;
      }
      if (req.method === 'POST' && url.pathname === '/v1/messages') {
        record.sends.push(JSON.parse(body) as Json);
        res.statusCode = 201;
        res.end(
          JSON.stringify({
            message_id: messageId(),
            status: 'sent',
            created_at: new Date().toISOString(),
            expires_at: new Date(Date.now() + 86_400_000).toISOString(),
          }),
        );
        record.notify();
        return;
      }
      if (req.method === 'GET' && url.pathname.startsWith('/v1/messages')) {
        res.end('{"messages":[],"has_more":false,"next_cursor":null}');
        return;
      }
      res.end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, record, polls: () => polls };
}

/** Text of a message object with a body nested `depth` deep (arrays). */
export function deepBody(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}
