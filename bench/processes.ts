/** The processes under test: `mrp relay`, `mrp run` (echo handler) and the floor's pair. */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { type Child, MRP, startNode, tempDir } from './lib.js';

/** Extra node flags for the product's processes (e.g. `--cpu-prof`), set by `--profile`. */
export const nodeFlags: string[] = [];

export interface Relay {
  child: Child;
  url: string;
  wsUrl: string;
}

/**
 * `mrp relay` on a free port with its limits off. `bin`: the `mrp.js` to run (another checkout's,
 * to compare); `logLevel`: what it prints.
 */
export async function startRelay(options: { bin?: string; logLevel?: string } = {}): Promise<Relay> {
  const dir = tempDir('relay');
  const args = [
    'relay',
    '--port',
    '0',
    '--data-dir',
    dir,
    '--send-rate',
    '0',
    '--receive-rate',
    '0',
    '--request-rate',
    '0',
    '--json',
    '--log-level',
    options.logLevel ?? 'warn',
  ];
  const child = startNode('mrp relay', [...nodeFlags, options.bin ?? MRP, ...args]);
  const { url } = await child.waitForJson((v) => typeof v['url'] === 'string', 15_000);
  return { child, url: String(url), wsUrl: `${String(url).replace(/^http/, 'ws')}/v1/ws` };
}

export interface Runner {
  child: Child;
  publicKey: string;
}

/** `mrp keygen` in a fresh MRP_HOME, then `mrp run` with the echo handler until it is ready. */
export async function startRunner(relayUrl: string, mode: 'websocket' | 'poll'): Promise<Runner> {
  const home = tempDir('home');
  const env = { MRP_HOME: home, MRP_KEY_FILE: join(home, 'agent.key') };
  const keygen = spawnSync(process.execPath, [MRP, 'keygen', '--json'], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  if (keygen.status !== 0) throw new Error(`mrp keygen failed: ${keygen.stderr}`);
  const publicKey = String((JSON.parse(keygen.stdout) as { public_key: string }).public_key);
  const args = [
    'run',
    '--handler',
    'handlers/echo.ts',
    '--relay',
    relayUrl,
    '--log-format',
    'json',
    '--concurrency',
    '64',
    '--mode',
    mode,
  ];
  const child = startNode(`mrp run (${mode})`, [...nodeFlags, MRP, ...args], env);
  await child.waitForJson((v) => v['event'] === 'ready', 20_000);
  return { child, publicKey };
}

export interface Floor {
  relay: Child;
  responder: Child;
  wsUrl: string;
}

export async function startFloor(responderKey: string): Promise<Floor> {
  const script = join('bench', 'floor.ts');
  const relay = startNode('floor relay', ['--import', 'tsx', script, 'relay']);
  const wsUrl = String((await relay.waitForJson((v) => typeof v['url'] === 'string', 15_000))['url']);
  const responder = startNode('floor responder', ['--import', 'tsx', script, 'responder', wsUrl, responderKey]);
  await responder.waitForJson((v) => v['ready'] === true, 15_000);
  return { relay, responder, wsUrl };
}
