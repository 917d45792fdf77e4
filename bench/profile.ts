/**
 * Summarises `.cpuprofile` files written by `npm run bench -- --profile <dir>`:
 *
 *   node --import tsx bench/profile.ts <dir>/*.cpuprofile
 *
 * For each profile: where the busy (non-idle) time goes, by the functions that were on the CPU
 * (self time; a blocking syscall such as fdatasync counts as busy) and by source file (inclusive:
 * a sample counts for every file on its stack).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const short = (url: string): string =>
  url.replace(/^file:\/\/\/.*?\/node_modules\//, '').replace(/^file:\/\/\/.*?\/(dist|src|handlers)\//, '$1/');

function summarize(file: string, top = 15): void {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let busy = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const leaf = byId.get(id)!;
    if (leaf.callFrame.functionName === '(idle)') return;
    busy += dt;
    const { functionName, url, lineNumber } = leaf.callFrame;
    const name = url ? `${functionName || '(anonymous)'} ${short(url)}:${lineNumber + 1}` : functionName;
    self.set(name, (self.get(name) ?? 0) + dt);
    const files = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const frame = byId.get(cur)!.callFrame;
      files.add(frame.url ? short(frame.url) : frame.functionName);
    }
    for (const f of files) inclusive.set(f, (inclusive.get(f) ?? 0) + dt);
  });
  const pct = (us: number): string => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  const best = (m: Map<string, number>): Array<[string, number]> => [...m].sort((a, b) => b[1] - a[1]).slice(0, top);
  console.log(`\n== ${file}: busy ${(busy / 1e6).toFixed(2)} s`);
  console.log('-- self time');
  for (const [name, us] of best(self)) console.log(`${pct(us)}  ${name}`);
  console.log('-- inclusive, by file');
  for (const [name, us] of best(inclusive)) if (name !== '(root)' && name) console.log(`${pct(us)}  ${name}`);
}

for (const file of process.argv.slice(2)) summarize(file);
