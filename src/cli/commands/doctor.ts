import type { Command } from 'commander';
import { MrpError } from '../../core/errors.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import type { CheckResult, CheckStatus } from '../doctor.js';
import { EXIT } from '../exit.js';
import { durationOption } from '../options.js';
import type { Style } from '../output.js';
import { action, addGlobalOptions, examples, ReportedError } from '../program.js';
import { safeText } from '../render.js';

export interface DoctorCommandOptions {
  handler?: string;
  manifest?: string;
  timeout?: string;
}

const SYMBOL: Record<CheckStatus, string> = { ok: '✓', warn: '!', fail: '✗', skip: '-' };
const WORD: Record<CheckStatus, string> = { ok: 'ok', warn: 'warn', fail: 'fail', skip: 'skip' };

/** One line per check: `✓ name  summary — hint` on a terminal, `ok    name  summary — hint` piped. */
export function checkLine(r: CheckResult, tty: boolean, style: Style): string {
  const paint =
    r.status === 'ok' ? style.green : r.status === 'warn' ? style.yellow : r.status === 'fail' ? style.red : style.dim;
  const mark = tty ? paint(SYMBOL[r.status]) : WORD[r.status].padEnd(4);
  // Summaries and hints quote the relay (its health status and version, its error messages), a
  // manifest or a handler's error: through safeText, like every other line a terminal shows.
  const hint = r.hint ? style.dim(` — ${safeText(r.hint)}`) : '';
  const text = safeText(r.summary.replace(/\s*\n\s*/g, ' '));
  const summary = r.status === 'skip' ? style.dim(text) : text;
  return `${mark} ${r.name.padEnd(8)} ${summary}${hint}`;
}

/** `mrp doctor`: is this machine set up to run an agent? Exits 1 when a check fails. */
export async function runDoctor(ctx: CliContext, options: DoctorCommandOptions): Promise<void> {
  const timeoutMs = durationOption(options.timeout, '--timeout', 10_000);
  const { runChecks } = await import('../doctor.js');
  const { out } = ctx;
  const streaming = !out.json && !out.quiet;
  const results = await runChecks(ctx, { handler: options.handler, manifest: options.manifest, timeoutMs }, (r) => {
    if (streaming) out.line(checkLine(r, out.isTTY, out.style));
  });
  const failed = results.filter((r) => r.status === 'fail');
  const warned = results.filter((r) => r.status === 'warn');
  if (out.json) out.jsonLine({ ok: failed.length === 0, checks: results });
  else if (streaming && failed.length === 0) {
    out.line(
      warned.length
        ? out.style.yellow(`\nNo failures; ${warned.length} warning${warned.length === 1 ? '' : 's'}.`)
        : out.style.green('\nAll checks passed.'),
    );
  }
  if (failed.length) {
    const names = failed.map((r) => r.name).join(', ');
    out.error(
      new MrpError(
        'config',
        'doctor_failed',
        `${failed.length} check${failed.length === 1 ? '' : 's'} failed: ${names}`,
        {
          details: { failed: failed.map((r) => r.name) },
        },
      ),
    );
    throw new ReportedError(EXIT.failure);
  }
}

export function register(program: Command, deps: Deps): void {
  const cmd = program
    .command('doctor')
    .description(
      'check this setup: node, key and its permissions, config, clock, relay, a real login, locks, manifest, handler',
    )
    .option('-H, --handler <path>', 'also check that this handler module loads')
    .option('--manifest <file>', 'check this manifest (default: ./mrp.yaml if present)')
    .option('-t, --timeout <duration>', 'per network check', '10s');
  examples(addGlobalOptions(cmd), [
    'mrp doctor',
    'mrp doctor --handler ./handler.ts',
    'mrp doctor --context prod --json | jq .checks',
  ]);
  cmd.addHelpText(
    'after',
    "\nEach line: ✓ ok, ! warning, ✗ failure, - skipped (piped: ok/warn/fail/skip). Exit 1 when a check fails.\nThe clock warns from 60 s off the relay's Date header and fails from 5 min (the relay's limit).\n",
  );
  cmd.action(action(deps, runDoctor));
}
