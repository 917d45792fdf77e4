#!/usr/bin/env node
// Builds vendor/postgres: the ESM sources of the postgres.js driver installed in node_modules
// (pinned in package.json), with the fixes below applied. mrp loads the driver
// from there, never from node_modules; node_modules/postgres still provides the types.
//
//   node scripts/vendor-postgres.mjs           writes vendor/postgres
//   node scripts/vendor-postgres.mjs --check   exits 1 if vendor/postgres differs from what it would write
//
// Why: in postgres.js 3.4.9 (the latest release), a query sent on a connection the server has
// closed (inside sql.begin(), whose rollback runs after the connection died, or on a reserved
// connection) schedules a write that later runs `socket.write` on a null socket. That throws from
// a setImmediate callback, which no caller can catch: the process dies. A database restart, a
// failover, or DROP DATABASE ... WITH (FORCE) killed a relay this way. Upstream:
// https://github.com/porsager/postgres/issues/1208 and #1154 (open; fixes proposed in #1168, #1209).
// Drop this directory when a release carries the fix.
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const from = join(root, 'node_modules', 'postgres');
const to = join(root, 'vendor', 'postgres');
const version = JSON.parse(readFileSync(join(from, 'package.json'), 'utf8')).version;
const EXPECTED_VERSION = '3.4.9';

/** Each fix: the file, the exact upstream text (must occur once) and its replacement. */
const FIXES = [
  {
    file: 'connection.js',
    why: 'a query on a connection whose socket is gone or destroyed (the server closed it) fails at once instead of scheduling a write',
    find: `  function execute(q) {
    if (terminated)
      return queryError(q, Errors.connection('CONNECTION_DESTROYED', options))
`,
    replace: `  function execute(q) {
    if (terminated)
      return queryError(q, Errors.connection('CONNECTION_DESTROYED', options))

    // mrp: the server closed this connection (socket is null until a reconnect, or destroyed and its
    // 'close' not yet handled): fail the query now. Writing would schedule socket.write on null,
    // which throws where nobody can catch it; or leave the query in \`sent\` past the reconnect.
    if (!socket || socket.destroyed)
      return queryError(q, Errors.connection('CONNECTION_CLOSED', options)), true
`,
  },
  {
    file: 'connection.js',
    why: 'a scheduled write that finds no socket fails what is waiting instead of throwing from the timer',
    find: `  function nextWrite(fn) {
    const x = socket.write(chunk, fn)
`,
    replace: `  function nextWrite(fn) {
    // mrp: belt and braces for the guard in execute(): never throw from a timer.
    if (!socket) {
      chunk = nextWriteTimer = null
      error(Errors.connection('CONNECTION_CLOSED', options))
      return true
    }
    const x = socket.write(chunk, fn)
`,
  },
  {
    file: 'connection.js',
    why: 'terminate() forgets the pending write, so the connection can write again after a reconnect',
    find: `      error(Errors.connection('CONNECTION_DESTROYED', options))

    clearImmediate(nextWriteTimer)
`,
    replace: `      error(Errors.connection('CONNECTION_DESTROYED', options))

    clearImmediate(nextWriteTimer)
    chunk = nextWriteTimer = null // mrp: a cleared timer left set stopped every later write
`,
  },
  {
    file: 'connection.js',
    why: 'closed() forgets the pending write, so the connection can write again after a reconnect',
    find: `    incomings = null
    clearImmediate(nextWriteTimer)
`,
    replace: `    incomings = null
    clearImmediate(nextWriteTimer)
    chunk = nextWriteTimer = null // mrp: a cleared timer left set stopped every later write
`,
  },
  {
    file: 'connection.js',
    why: 'closed() rejects every query sent on the lost socket, also after a socket error (a query sent between the error and the close stayed in `sent`, and after the reconnect took the answers of the queries behind it: they waited forever)',
    find: `    socket.removeAllListeners()
    socket = null

    if (initial)
`,
    replace: `    socket.removeAllListeners()
    socket = null

    // mrp: nothing sent on the lost socket will be answered. Upstream rejected it only when the
    // close came without an error, whose handler had rejected what was in flight at that moment.
    const lost = Errors.connection('CONNECTION_CLOSED', options)
    query && queryError(query, lost)
    query = null
    while (sent.length)
      queryError(sent.shift(), lost)

    if (initial)
`,
  },
  {
    file: 'connection.js',
    why: 'a new session starts clean: the query and the error of the connection the server closed do not carry over',
    find: `      statementCount = 1
      lifeTimer.start()
`,
    replace: `      statementCount = 1
      // mrp: the closed session's query was rejected already; its FATAL error must not reject the
      // first query of this one (it did: the query that reopened the connection failed with 57P01).
      query = results = errorResponse = null
      result = new Result()
      lifeTimer.start()
`,
  },
  {
    file: 'connection.js',
    why: 'the array types query a new session runs first does not reject unhandled when the session dies under it (an unhandled rejection ends the process)',
    find: `      order by b.oid
    \`], [], execute)
    types.forEach`,
    replace: `      order by b.oid
    \`], [], execute).catch(() => []) // mrp: the session died; the next one fetches them again
    types.forEach`,
  },
  {
    file: 'index.js',
    why: "the pool counts each connection's closes, so a transaction or reservation can tell its session is gone",
    find: `  function onclose(c, e) {
    move(c, closed)
`,
    replace: `  function onclose(c, e) {
    c.closes = (c.closes || 0) + 1 // mrp: a new session begins after this; holders of the old one must stop
    move(c, closed)
`,
  },
  {
    file: 'index.js',
    why: 'a reserved connection whose session closed rejects its queries, and releasing it leaves the connection to the pool',
    find: `    move(c, reserved)
    c.reserved = () => queue.length
      ? c.execute(queue.shift())
      : move(c, reserved)
    c.reserved.release = true

    const sql = Sql(handler)
    sql.release = () => {
      c.reserved = null
      onopen(c)
    }

    return sql

    function handler(q) {
      c.queue === full
`,
    replace: `    move(c, reserved)
    c.reserved = () => queue.length
      ? c.execute(queue.shift())
      : move(c, reserved)
    c.reserved.release = true
    const closes = c.closes // mrp

    const sql = Sql(handler)
    sql.release = () => {
      // mrp: once the session closed, the connection is the pool's (reconnected, perhaps serving
      // someone else): onopen() put a dead connection back in \`open\`, or took a live one from its user.
      if (c.closes !== closes)
        return
      c.reserved = null
      onopen(c)
    }

    return sql

    function handler(q) {
      // mrp: never write into a session that is not this reservation's (nor into a dead one).
      if (c.closes !== closes)
        return q.reject(Errors.connection('CONNECTION_CLOSED', options))
      c.queue === full
`,
  },
  {
    file: 'index.js',
    why: "a transaction whose session closed rejects its later statements (and its rollback) instead of sending them on the reconnected connection, where they desynchronised another user's queries",
    find: `      function handler(q) {
        q.catch(e => uncaughtError || (uncaughtError = e))
        c.queue === full
`,
    replace: `      function handler(q) {
        q.catch(e => uncaughtError || (uncaughtError = e))
        // mrp: the pool may have reconnected this connection for someone else by now: a statement
        // sent there answered the other user's query and left one of them waiting forever.
        if (c.closes !== closes)
          return q.reject(Errors.connection('CONNECTION_CLOSED', options))
        c.queue === full
`,
  },
  {
    file: 'index.js',
    why: '(with the above) a transaction remembers the session it began in',
    find: `    function onexecute(c) {
      connection = c
`,
    replace: `    function onexecute(c) {
      connection = c
      closes = c.closes // mrp
`,
  },
  {
    file: 'index.js',
    why: "(with the above) the transaction's session, declared",
    find: `    let savepoints = 0
      , connection
`,
    replace: `    let savepoints = 0
      , connection
      , closes // mrp: c.closes when BEGIN ran
`,
  },
  {
    file: 'connection.js',
    why: "closed() ends a COPY stream of the lost session with the error, as upstream's error() did before the rejection above made closed() skip it (left open, its reader waited forever and the connection refused every later query, or never left `connecting`)",
    find: `    const lost = Errors.connection('CONNECTION_CLOSED', options)
    query && queryError(query, lost)
`,
    replace: `    const lost = Errors.connection('CONNECTION_CLOSED', options)
    // mrp: a COPY of the lost session ends too. Left set, \`stream\` made the next session refuse every
    // query (COPY_IN_PROGRESS): its first query never got a ReadyForQuery, the connection never left
    // \`connecting\`, and the pool's queries waited forever; the stream's reader waited as well.
    stream && (stream.destroy(lost), stream = null)
    query && queryError(query, lost)
`,
  },
  {
    file: 'connection.js',
    why: 'a cursor whose session closed while its callback ran writes nothing afterwards, also when the callback throws (it rejected unhandled on the null query when the loop broke, ending the process, or sent its next Execute into the reconnected session)',
    find: `  async function PortalSuspended() {
    try {
      const x = await Promise.resolve(query.cursorFn(result))
      rows = 0
      x === CLOSE
        ? write(Close(query.portal))
        : (result = new Result(), write(Execute('', query.cursorRows)))
    } catch (err) {
      write(Sync)
`,
    replace: `  async function PortalSuspended() {
    const q = query // mrp: the session can close while the cursor's callback runs
    try {
      const x = await Promise.resolve(q.cursorFn(result))
      // mrp: it closed (q was rejected): no Close, Execute or Sync for q, least of all into a new session,
      // and not \`query.reject\` on the null query, which rejected unhandled and ended the process.
      if (query !== q)
        return
      rows = 0
      x === CLOSE
        ? write(Close(query.portal))
        : (result = new Result(), write(Execute('', query.cursorRows)))
    } catch (err) {
      if (query !== q) // mrp: as above (a Sync sent into a new session answered its query too early)
        return
      write(Sync)
`,
  },
  {
    file: 'query.js',
    why: 'a cursor loop whose session closed between two batches throws the error at its next step instead of ending as if the rows were all read (a page read through a cursor came back short, and said nothing)',
    find: `    let prev
    return {
      [Symbol.asyncIterator]: () => ({
        next: () => {
          if (this.executed && !this.active)
            return { done: true }
`,
    replace: `    let prev
      , failed // mrp: the error that ended the query while the loop's body ran
    return {
      [Symbol.asyncIterator]: () => ({
        next: () => {
          if (this.executed && !this.active)
            return failed ? Promise.reject(failed) : { done: true }
`,
  },
  {
    file: 'query.js',
    why: '(with the above) the cursor remembers the error',
    find: `            this.reject = x => (this.active = false, reject(x))
          })
          this.execute()`,
    replace: `            this.reject = x => (this.active = false, failed = x, reject(x))
          })
          this.execute()`,
  },
  {
    file: 'index.js',
    why: "a transaction's statements still waiting in its own queue (the connection was busy) are rejected when its session closes, not left pending forever",
    find: `        new Promise((_, reject) => connection.onclose = reject)
`,
    replace: `        new Promise((_, reject) => connection.onclose = e => {
          // mrp: nothing will run what waits here; each of them holds its caller (and a closure) forever
          while (queries.length)
            queries.shift().reject(e)
          reject(e)
        })
`,
  },
];

function build() {
  if (version !== EXPECTED_VERSION) {
    throw new Error(
      `node_modules/postgres is ${version}, the fixes are written for ${EXPECTED_VERSION}: check whether ${version} still needs them, then update EXPECTED_VERSION`,
    );
  }
  const files = new Map();
  for (const name of readdirSync(join(from, 'src'))
    .filter((f) => f.endsWith('.js'))
    .sort()) {
    let text = readFileSync(join(from, 'src', name), 'utf8');
    for (const fix of FIXES.filter((f) => f.file === name)) {
      const at = text.indexOf(fix.find);
      if (at < 0 || text.indexOf(fix.find, at + 1) >= 0) {
        throw new Error(`${name}: the text to fix (${fix.why}) is not there exactly once`);
      }
      text = text.replace(fix.find, () => fix.replace);
    }
    files.set(name, text);
  }
  files.set(
    'index.d.ts',
    `// The driver's own types (node_modules/postgres ${version}): the code here is that version's, patched.\nexport { default } from 'postgres';\n`,
  );
  files.set(
    'README.md',
    [
      `# postgres.js ${version}, patched`,
      '',
      `The ESM sources of [postgres.js](https://github.com/porsager/postgres) ${version} (Unlicense: public domain),`,
      'generated by `node scripts/vendor-postgres.mjs` from the pinned package in node_modules. Do not edit by hand;',
      '`npm test` checks that this directory is exactly what the script writes.',
      '',
      'Fixes applied (each marked `mrp:` in the code):',
      '',
      ...FIXES.map((f) => `- \`${f.file}\`: ${f.why}`),
      '',
      'Without them, a query on a connection the server closed (a database restart or failover, during a',
      'transaction) throws from a timer and kills the process. Upstream: porsager/postgres#1208, #1154.',
      'test/relay/pg-driver.test.ts kills every connection repeatedly under load and checks that each query settles.',
      '',
      'Known and left: `sql.reserve()` under repeated kills can still lose a waiting reservation (the pool hands',
      'it to a reconnecting connection, which drops it when it fetches array types first). mrp never reserves.',
      '',
    ].join('\n'),
  );
  return files;
}

const files = build();
if (process.argv.includes('--check')) {
  const stale = [];
  for (const [name, text] of files) {
    let have;
    try {
      have = readFileSync(join(to, name), 'utf8');
    } catch {
      have = undefined;
    }
    if (have !== text) stale.push(name);
  }
  const extra = readdirSync(to).filter((f) => !files.has(f));
  if (stale.length || extra.length) {
    console.error(
      `vendor/postgres is stale (${[...stale, ...extra].join(', ')}): run node scripts/vendor-postgres.mjs`,
    );
    process.exit(1);
  }
} else {
  mkdirSync(to, { recursive: true });
  for (const [name, text] of files) writeFileSync(join(to, name), text);
  console.log(`vendor/postgres: postgres.js ${version} with ${FIXES.length} fixes`);
}
