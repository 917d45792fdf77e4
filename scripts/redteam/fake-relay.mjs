// A scripted, hostile relay: authenticates anyone, pushes whatever frames it is told to (WebSocket),
// serves whatever poll pages it is told to (HTTP), accepts every send, records everything.
import http from 'node:http';
import { WebSocket } from './lib.mjs';
import { createRequire } from 'node:module';
const require = createRequire(new URL('../../package.json', import.meta.url));
const { WebSocketServer } = require('ws');

let seq = 0;
export async function fakeRelay({ frames = [], pages = [], threadPages = {}, onSend } = {}) {
  const rec = { sends: [], acks: [], posts: [], requests: [], wsFrames: [], conns: 0 };
  const pageQueue = [...pages];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      rec.requests.push(`${req.method} ${req.url}`);
      const json = (status, text) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(typeof text === 'string' ? text : JSON.stringify(text)); };
      const u = new URL(req.url, 'http://x');
      if (req.method === 'POST' && u.pathname === '/v1/messages') {
        rec.posts.push(body);
        onSend?.(JSON.parse(body));
        const id = `msg_${Math.floor(Date.now() / 1000)}_${(++seq).toString(16).padStart(12, '0')}`;
        return json(201, { message_id: id, status: 'sent', created_at: new Date().toISOString(), expires_at: new Date(Date.now() + 864e5).toISOString() });
      }
      if (req.method === 'GET' && u.pathname === '/v1/messages') {
        if ((u.searchParams.get('status') ?? 'sent') === 'sent' && pageQueue.length) return json(200, pageQueue.shift());
        const wait = Number(u.searchParams.get('wait') || 0);
        return setTimeout(() => json(200, { messages: [], has_more: false, next_cursor: null }), Math.min(wait, 1) * 1000);
      }
      if (req.method === 'GET' && u.pathname.startsWith('/v1/messages/threads/')) {
        const t = decodeURIComponent(u.pathname.split('/').pop());
        return json(200, threadPages[t] ?? { thread_id: t, messages: [], has_more: false, next_cursor: null });
      }
      if (u.pathname.startsWith('/v1/health')) return json(200, { status: 'ok' });
      if (u.pathname.startsWith('/v1/agents/')) return json(200, { public_key: 'x', display_name: null, status: 'active', visibility: 'private', inbox_policy: 'open', created_at: new Date().toISOString(), last_active_at: new Date().toISOString(), metadata: {}, capabilities: [] });
      return json(404, { error: { code: 'not_found', message: 'fake', request_id: 'req_0' } });
    });
  });
  const wss = new WebSocketServer({ noServer: true });
  server.on('upgrade', (req, socket, head) => wss.handleUpgrade(req, socket, head, (ws) => {
    rec.conns++;
    ws.on('message', (d) => {
      const text = d.toString();
      let f; try { f = JSON.parse(text); } catch { return; }
      rec.wsFrames.push(f.type);
      if (f.type === 'auth') {
        ws.send(JSON.stringify({ type: 'auth_result', status: 'ok', public_key: f.public_key }));
        const list = rec.conns === 1 ? frames : [];
        for (const fr of list) ws.send(fr.data, { binary: !!fr.binary });
      } else if (f.type === 'send') {
        rec.sends.push(f);
        onSend?.(f);
        const id = `msg_${Math.floor(Date.now() / 1000)}_${(++seq).toString(16).padStart(12, '0')}`;
        ws.send(JSON.stringify({ type: 'send_result', request_id: f.request_id, status: 'ok', message_id: id, created_at: new Date().toISOString(), expires_at: new Date(Date.now() + 864e5).toISOString() }));
      } else if (f.type === 'ack') rec.acks.push(f.message_id);
      else if (f.type === 'ping') ws.send(JSON.stringify({ type: 'pong', ts: f.ts }));
    });
  }));
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}`;
  return { url, rec, pageQueue, close: () => { for (const c of wss.clients) c.terminate(); wss.close(); server.closeAllConnections?.(); server.close(); } };
}
