// Pre-auth byte cap (documented: "8 KiB received in total, counted as bytes arrive") is checked only
// after ws has parsed a whole socket read: one write of ~60 KB of small pings (or one 60 KB frame)
// before auth is fully parsed and answered.  Usage: node 01b-preauth-chunk.mjs
import { startRelay, sleep } from './lib.mjs';
import { rawConnect, frame, textFrames } from './rawws.mjs';
const relay = await startRelay('/tmp/rt/pc-' + process.pid);
const s = await rawConnect(relay.url); s.keep = true;
const ping = frame(1, '{"type":"ping","ts":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}');
const burst = Buffer.concat(Array(Math.floor(60000 / ping.length)).fill(ping));
s.write(burst);
await sleep(1000);
const fs = textFrames(s.buf);
console.log(`sent ${burst.length} B of pings in one write before auth: ${fs.filter((f) => f.op === 1 && f.data.includes('pong')).length} pongs back (of ${Math.floor(60000 / ping.length)}), close frame: ${fs.some((f) => f.op === 8) ? fs.find((f) => f.op === 8).data.readUInt16BE(0) : 'none'}`);
s.destroy(); await relay.stop();
