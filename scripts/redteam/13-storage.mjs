// Item 8: a second relay on the same --data-dir (same path, ../ path, symlinked dir, in-process
// createRelay twice), file modes of mrp.db & co in an existing 0755 dir under umask 000,
// /v1/health/ready with a corrupted / truncated / deleted db while running, start-up on a corrupt db,
// disk full under the relay (16 MiB tmpfs, root only).  Usage: node 13-storage.mjs
import { spawnSync, execSync } from 'node:child_process';
import fs from 'node:fs';
import { ROOT, startRelay, keypair, req, sleep } from './lib.mjs';

let bad = 0;
const check = (ok, what) => { console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`); if (!ok) bad++; };
const base = `/tmp/rt/s13-${process.pid}`;
fs.mkdirSync(base, { recursive: true });

// 1. second relay
{
  const D = `${base}/d1`;
  process.umask(0);
  fs.mkdirSync(D, { mode: 0o755 });
  const a = await startRelay(D);
  for (const [name, dir] of [['same path', D], ['../ path', `${D}/../d1`], ['symlinked dir', (fs.symlinkSync(D, `${base}/link`), `${base}/link`)]]) {
    const r = spawnSync(process.execPath, [ROOT + '/bin/mrp.js', 'relay', '--port', '0', '--data-dir', dir], { timeout: 10000 });
    const out = (r.stderr + r.stdout).toString();
    check(r.status !== 0 && r.status !== null && /data_dir_locked|another relay|locked/i.test(out) && out.includes(String(a.pid)), `second relay (${name}): exit ${r.status}, "${out.trim().split('\n')[0].slice(0, 140)}"`);
  }
  // in-process twice
  const r = spawnSync(process.execPath, ['-e', `import('${ROOT}/dist/relay/index.js').then(async ({ createRelay }) => { const x = createRelay({ dataDir: '${D}-ip', port: 0 }); await x.listen(); try { const y = createRelay({ dataDir: '${D}-ip', port: 0 }); await y.listen(); console.log('SECOND STARTED'); await y.close(); } catch (e) { console.log('refused', e.code, e.message); } await x.close(); })`], { timeout: 15000 });
  check(/refused data_dir_locked/.test(r.stdout.toString()), `in-process createRelay twice: ${r.stdout.toString().trim().slice(0, 140)}`);
  await req(a.url, 'POST', '/v1/messages', { kp: keypair(), body: JSON.stringify({ recipient_key: keypair().pub, body: 1 }) });
  await sleep(300);
  // Files 0600, directories (the blob store's) 0700.
  const modes = fs.readdirSync(D).map((f) => {
    const st = fs.statSync(`${D}/${f}`);
    return { text: `${f}=${(st.mode & 0o777).toString(8)}`, ok: (st.mode & 0o777) === (st.isDirectory() ? 0o700 : 0o600) };
  });
  check(modes.every((m) => m.ok), `file modes in an existing 0755 dir, umask 000: ${modes.map((m) => m.text).join(' ')}`);
  process.umask(0o022);
  // corrupt while running
  const ready = async () => { const r = await req(a.url, 'GET', '/v1/health/ready'); const h = await req(a.url, 'GET', '/v1/health'); return `${r.status} ${r.text.trim()} | health ${JSON.parse(h.text).status}`; };
  check((await ready()).startsWith('200'), `ready before corruption: ${await ready()}`);
  const db = `${D}/mrp.db`;
  const orig = fs.readFileSync(db);
  const fd = fs.openSync(db, 'r+');
  fs.writeSync(fd, Buffer.alloc(100, 0x41), 0, 100, 0); // header
  fs.closeSync(fd);
  await sleep(1200);
  let r1 = await ready();
  check(r1.startsWith('503') && /degraded/.test(r1), `header overwritten: ready ${r1}`);
  fs.writeFileSync(db, orig);
  await sleep(1200);
  // corrupt pages in the middle of a checkpointed db (5 MB of messages first, so pages leave the WAL)
  { const k = keypair(); const t = keypair().pub; for (let i = 0; i < 100; i++) await req(a.url, 'POST', '/v1/messages', { kp: k, body: JSON.stringify({ recipient_key: t, body: { pad: 'q'.repeat(50000) } }) }); }
  await sleep(1500);
  const fd2 = fs.openSync(db, 'r+');
  const st = fs.fstatSync(fd2);
  // The page size from the file's header (bytes 16–17, big-endian; 1 means 65536): page 1 stays.
  const header = Buffer.alloc(2);
  fs.readSync(fd2, header, 0, 2, 16);
  const page = header.readUInt16BE(0) === 1 ? 65536 : header.readUInt16BE(0);
  if (st.size > 2 * page) fs.writeSync(fd2, Buffer.alloc(st.size - page, 0x5a), 0, st.size - page, page);
  fs.closeSync(fd2);
  await sleep(1200);
  r1 = await ready();
  check(r1.startsWith('503'), `pages 2..n overwritten (size ${st.size}): ready ${r1}`);
  const s = await req(a.url, 'POST', '/v1/messages', { kp: keypair(), body: JSON.stringify({ recipient_key: keypair().pub, body: 1 }) });
  check(s.status === 503 || s.status === 201, `send on corrupt db: ${s.status} ${s.text.slice(0, 100)}`);
  fs.truncateSync(db, 0);
  await sleep(1200);
  check((await ready()).startsWith('503'), `truncated to 0: ready ${await ready()}`);
  fs.rmSync(db);
  await sleep(1200);
  check((await ready()).startsWith('503'), `deleted: ready ${await ready()}`);
  check(a.alive, 'relay still running after corruption');
  await a.stop();
  // start on a corrupt db
  for (const [name, prep] of [['garbage db', (d) => fs.writeFileSync(`${d}/mrp.db`, Buffer.alloc(8192, 0x42))], ['db is a dir', (d) => fs.mkdirSync(`${d}/mrp.db`)], ['data dir is a file', null]]) {
    const d = `${base}/start-${name.replace(/ /g, '_')}`;
    if (prep) { fs.mkdirSync(d); prep(d); } else fs.writeFileSync(d, 'x');
    const r = spawnSync(process.execPath, [ROOT + '/bin/mrp.js', 'relay', '--port', '0', '--data-dir', d], { timeout: 10000, env: { ...process.env, NO_COLOR: '1' } });
    const out = (r.stderr + r.stdout).toString().trim();
    check(r.status !== 0 && r.status !== null && out.includes(d) && !/at .*\.js:\d+/.test(out), `start with ${name}: exit ${r.status}, "${out.split('\n').slice(0, 2).join(' / ').slice(0, 170)}"`);
  }
}
// disk full under the relay
{
  const M = `${base}/tmpfs`;
  fs.mkdirSync(M);
  execSync(`mount -t tmpfs -o size=16m tmpfs ${M}`);
  const a = await startRelay(`${M}/data`);
  const kp = keypair(); const to = keypair();
  const send = async () => (await req(a.url, 'POST', '/v1/messages', { kp, body: JSON.stringify({ recipient_key: to.pub, body: { pad: 'x'.repeat(50000) } }) })).status;
  check((await send()) === 201, 'send before full');
  try { execSync(`dd if=/dev/zero of=${M}/filler bs=64k 2>/dev/null`); } catch {}
  await sleep(1200);
  const rd = await req(a.url, 'GET', '/v1/health/ready');
  const statuses = [];
  for (let i = 0; i < 40; i++) statuses.push(await send());
  const hist = statuses.reduce((o, s) => ((o[s] = (o[s] || 0) + 1), o), {});
  check(rd.status === 503, `disk full: ready ${rd.status} ${rd.text.trim()}`);
  check(!statuses.includes(500) && a.alive, `40 sends while full: ${JSON.stringify(hist)}, relay alive ${a.alive}`);
  fs.rmSync(`${M}/filler`);
  await sleep(1500);
  const after = await send();
  const rd2 = await req(a.url, 'GET', '/v1/health/ready');
  check(after === 201 && rd2.status === 200, `space freed: send ${after}, ready ${rd2.status}`);
  await a.stop();
  execSync(`umount ${M}`);
}
console.log(bad ? `FAILED (${bad})` : 'HELD');
process.exit(0);
