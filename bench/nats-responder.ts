/**
 * The NATS anchor's responder (bench/nats.ts), a child process:
 *
 *   node --import tsx bench/nats-responder.ts <nats-url> <subject> <from-key> → prints {"ready": true}
 *
 * Answers every request on `subject` with the product's echo shape (handlers/echo.ts):
 * `{"echo": <request body>, "from": <from-key>, "message_id": "msg_<unix seconds>_<12 hex>"}`, so
 * the bytes on the wire are those of the floor's and the runner's replies. Like the floor's
 * responder it parses the request and serialises the reply; a request that is not JSON is dropped
 * (the requester counts it lost).
 */
import { connect } from 'nats';

const [url, subject, from] = process.argv.slice(2);
if (!url || !subject || !from) {
  console.error('usage: nats-responder.ts <nats-url> <subject> <from-key>');
  process.exit(2);
}
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const nc = await connect({ servers: url, name: 'mrp-bench-responder' });
let seq = 0;
nc.subscribe(subject, {
  callback: (err, msg) => {
    if (err) return;
    let body: unknown;
    try {
      body = JSON.parse(decoder.decode(msg.data));
    } catch {
      return;
    }
    const id = `msg_${Math.floor(Date.now() / 1000)}_${(++seq).toString(16).padStart(12, '0')}`;
    msg.respond(encoder.encode(JSON.stringify({ echo: body, from, message_id: id })));
  },
});
await nc.flush();
console.log(JSON.stringify({ ready: true }));
process.on('SIGTERM', () => void nc.close().finally(() => process.exit(0)));
// The server going away ends the responder (the bench stops the server last).
void nc.closed().then(() => process.exit(0));
