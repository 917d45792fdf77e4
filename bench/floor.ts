/**
 * The floor: the cheapest possible relay and responder speaking the same frames, to show what
 * the machine, Node and `ws` cost by themselves. Run as child processes:
 *
 *   node --import tsx bench/floor.ts relay                 → prints {"url": "ws://…"}
 *   node --import tsx bench/floor.ts responder <url> <key> → prints {"ready": true}
 *
 * The relay does no auth, no storage and no validation: a connection is named by the
 * `public_key` of the first frame it sends; a `send` is answered with a `send_result` and forwarded
 * as a `message` frame; everything else (acks) is dropped. The responder echoes at once.
 */
import { randomUUID } from 'node:crypto';
import WebSocket, { WebSocketServer } from 'ws';

type Frame = {
  type?: string;
  public_key?: string;
  request_id?: string;
  recipient_key?: string;
  body?: unknown;
  in_reply_to?: string | null;
};

function relay(): void {
  const peers = new Map<string, WebSocket>();
  const prefix = randomUUID().slice(0, 8);
  let seq = 0;
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  wss.on('connection', (ws) => {
    let self: string | undefined;
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as Frame;
      if (self === undefined) {
        self = String(frame.public_key);
        peers.set(self, ws);
        ws.send(`{"type":"auth_result","status":"ok","public_key":"${self}"}`);
        return;
      }
      if (frame.type !== 'send') return;
      const id = `msg_${prefix}_${++seq}`;
      ws.send(`{"type":"send_result","request_id":"${frame.request_id}","status":"ok","message_id":"${id}"}`);
      const message = { message_id: id, sender_key: self, body: frame.body, in_reply_to: frame.in_reply_to ?? null };
      peers.get(String(frame.recipient_key))?.send(JSON.stringify({ type: 'message', message }));
    });
    ws.on('close', () => {
      if (self !== undefined && peers.get(self) === ws) peers.delete(self);
    });
  });
  wss.on('listening', () => {
    const { port } = wss.address() as { port: number };
    console.log(JSON.stringify({ url: `ws://127.0.0.1:${port}` }));
  });
}

function responder(url: string, key: string): void {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  ws.on('open', () => ws.send(JSON.stringify({ type: 'auth', public_key: key })));
  ws.on('message', (data) => {
    const frame = JSON.parse(String(data)) as {
      type: string;
      message?: { message_id: string; sender_key: string; body: unknown };
    };
    if (frame.type === 'auth_result') console.log(JSON.stringify({ ready: true }));
    const m = frame.message;
    if (frame.type !== 'message' || !m) return;
    ws.send(`{"type":"ack","message_id":"${m.message_id}"}`);
    const body = { echo: m.body, from: m.sender_key, message_id: m.message_id };
    ws.send(
      JSON.stringify({
        type: 'send',
        recipient_key: m.sender_key,
        in_reply_to: m.message_id,
        thread_id: m.message_id,
        body,
      }),
    );
  });
  ws.on('close', () => process.exit(0));
}

const [role, url, key] = process.argv.slice(2);
if (role === 'relay') relay();
else if (role === 'responder' && url && key) responder(url, key);
else {
  console.error('usage: floor.ts relay | responder <ws-url> <public-key>');
  process.exit(2);
}
process.on('SIGTERM', () => process.exit(0));
