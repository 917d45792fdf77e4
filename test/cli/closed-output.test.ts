/**
 * A service outlives its log reader: `mrp run` and `mrp relay` whose stdout/stderr reader goes
 * away (a restarted journald, a log shipper that died, `| head`) keep serving. Before, each exited
 * at its next log line, with 0 — a supervisor's `Restart=on-failure` then left it down.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Peer } from '../helpers/agent.js';
import { tempDir } from '../helpers/cli.js';
import { startRelay } from '../helpers/relay.js';

const BIN = fileURLToPath(new URL('../../bin/mrp.js', import.meta.url));

function spawnMrp(t: TestContext, args: string[], env: Record<string, string>): ChildProcess {
  const child = spawn(process.execPath, [BIN, ...args], {
    env: { ...process.env, ...env, NO_COLOR: '1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return child;
}

/** Resolves with the first line of `stream` that matches. */
async function lineMatching(stream: Readable, re: RegExp): Promise<string> {
  const rl = createInterface({ input: stream });
  for await (const line of rl) if (re.test(line)) return line;
  throw new Error(`the stream ended before a line matching ${re}`);
}

/** Closes our end of a child's pipe: its next write there fails with EPIPE. */
function closeReader(stream: Readable): void {
  stream.destroy();
}

describe('a closed log reader does not end a service', () => {
  it('mrp run: answers messages after its stdout reader is gone, and still drains to exit 0 on SIGTERM', {
    timeout: 60_000,
  }, async (t) => {
    const relay = await startRelay(t, { sendRatePerMinute: 0 });
    const home = await tempDir(t);
    const handler = join(home, 'echo.mjs');
    await writeFile(handler, 'export default (msg) => ({ echo: msg.body });\n');
    const env = { MRP_HOME: home, MRP_RELAY_URL: relay.url };
    const keygen = spawnMrp(t, ['keygen', '-q'], env);
    const key = (await lineMatching(keygen.stdout!, /\S/)).trim();
    const runner = spawnMrp(t, ['run', '-H', handler, '--log-format', 'json'], env);
    const exited = once(runner, 'exit');
    await lineMatching(runner.stdout!, /"event":"ready"/);
    closeReader(runner.stdout!);

    const peer = await Peer.connect(t, relay);
    // Each one is logged (a write to the closed pipe) before the next is sent.
    for (let n = 1; n <= 3; n++) {
      await peer.send(key, { n });
      await peer.waitForReplies(n);
    }
    assert.deepEqual(
      peer.replies.map((r) => r.body),
      [1, 2, 3].map((n) => ({ echo: { n } })),
    );
    assert.equal(runner.exitCode, null, 'still running');

    runner.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0);
  });

  it('mrp relay: answers requests after its stderr (log) reader is gone', { timeout: 60_000 }, async (t) => {
    const dir = await tempDir(t);
    const relay = spawnMrp(t, ['relay', '--port', '0', '--data-dir', dir, '--log-format', 'json'], {});
    const exited = once(relay, 'exit');
    const listening = JSON.parse(await lineMatching(relay.stderr!, /"msg":"listening"/)) as { url: string };
    closeReader(relay.stderr!);
    for (let i = 0; i < 5; i++) {
      // Each request is logged (a write to the closed pipe).
      const res = await fetch(`${listening.url}/v1/health`);
      assert.equal(res.status, 200);
      await res.text();
    }
    assert.equal(relay.exitCode, null, 'still running');
    relay.kill('SIGTERM');
    const [code] = await exited;
    assert.equal(code, 0);
  });
});
