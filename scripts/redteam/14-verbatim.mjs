// Issue item 5 re-check: bodies travel verbatim (HTTP send, WS send, nested WS send) to HTTP poll,
// GET, thread and WS push.  Usage: node 14-verbatim.mjs
import { startRelay, keypair, req, wsAuthed, waitFor, sleep } from './lib.mjs';
const relay = await startRelay('/tmp/rt/vb-' + process.pid);
const a = keypair(); const b = keypair();
const bodies = ['{"a":1,"a":2,"n":12345678901234567890,"x":1e999,"y":-0,"z":1E+2}', '{ "sp" :\t[ 1 ,2 ]\n}', '"\\u00e9\\ud83d\\ude00é"', '[1.0000000000000000000000001]', '{"__proto__":{"p":1},"constructor":1}'];
const wsB = await wsAuthed(relay.url, b);
const wsA = await wsAuthed(relay.url, a);
let bad = 0;
for (const [i, body] of bodies.entries()) {
  for (const via of ['http', 'ws', 'ws-nested']) {
    const tid = `t${i}${via}`;
    if (via === 'http') await req(relay.url, 'POST', '/v1/messages', { kp: a, body: `{"recipient_key":"${b.pub}","thread_id":"${tid}","body":${body}}` });
    else if (via === 'ws') wsA.send(`{"type":"send","request_id":"${tid}","recipient_key":"${b.pub}","thread_id":"${tid}","body":${body}}`);
    else wsA.send(`{"type":"send","request_id":"${tid}","message":{"recipient_key":"${b.pub}","thread_id":"${tid}","body":${body}}}`);
    await waitFor(() => wsB.frames.some((f) => f.includes(`"thread_id":"${tid}"`)), 3000);
    const push = wsB.frames.find((f) => f.includes(`"thread_id":"${tid}"`)) ?? '';
    const th = (await req(relay.url, 'GET', `/v1/messages/threads/${tid}`, { kp: b })).text;
    const ok = push.includes(`"body":${body},`) && th.includes(`"body":${body},`);
    if (!ok) bad++;
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${via} ${JSON.stringify(body)}${ok ? '' : ' push: ' + (push.match(/"body":(.*?),"attachments"/s)?.[1] ?? push.slice(0, 200))}`);
  }
}
wsA.terminate(); wsB.terminate(); await relay.stop();
console.log(bad ? `FAILED (${bad})` : 'HELD');
