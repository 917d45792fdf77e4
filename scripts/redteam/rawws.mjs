// Raw WebSocket client over net (no library), for floods and malformed frames.
import net from 'node:net';
import crypto from 'node:crypto';
export function frame(opcode, payload, { fin = true, mask = true } = {}) {
  payload = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const len = payload.length;
  let head;
  if (len < 126) head = Buffer.from([(fin ? 0x80 : 0) | opcode, (mask ? 0x80 : 0) | len]);
  else if (len < 65536) { head = Buffer.alloc(4); head[0] = (fin ? 0x80 : 0) | opcode; head[1] = (mask ? 0x80 : 0) | 126; head.writeUInt16BE(len, 2); }
  else { head = Buffer.alloc(10); head[0] = (fin ? 0x80 : 0) | opcode; head[1] = (mask ? 0x80 : 0) | 127; head.writeBigUInt64BE(BigInt(len), 2); }
  if (!mask) return Buffer.concat([head, payload]);
  return Buffer.concat([head, Buffer.alloc(4), payload]); // zero mask key: payload unchanged
}
export function rawConnect(base, { read = true } = {}) {
  const u = new URL(base);
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(u.port), u.hostname);
    s.received = 0; s.buf = Buffer.alloc(0); s.ended = false;
    s.on('error', (e) => { s.err = e.code; });
    s.on('close', () => { s.ended = true; });
    s.on('connect', () => {
      s.write(`GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    let upgraded = false;
    s.on('data', (d) => {
      s.received += d.length;
      if (!upgraded) {
        s.buf = Buffer.concat([s.buf, d]);
        const i = s.buf.indexOf('\r\n\r\n');
        if (i >= 0) { upgraded = true; const rest = s.buf.subarray(i + 4); s.buf = rest; if (!read) s.pause(); resolve(s); }
      } else if (s.keep) s.buf = Buffer.concat([s.buf, d]);
    });
    setTimeout(() => reject(new Error('no upgrade')), 5000);
  });
}
/** Text frames received so far (unmasked server frames, simple parse). */
export function textFrames(buf) {
  const out = [];
  let i = 0;
  while (i + 2 <= buf.length) {
    const op = buf[i] & 0x0f; let len = buf[i + 1] & 0x7f; let p = i + 2;
    if (len === 126) { len = buf.readUInt16BE(p); p += 2; } else if (len === 127) { len = Number(buf.readBigUInt64BE(p)); p += 8; }
    if (p + len > buf.length) break;
    out.push({ op, data: buf.subarray(p, p + len) });
    i = p + len;
  }
  return out;
}
