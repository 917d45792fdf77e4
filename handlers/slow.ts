/**
 * Slow: works for `body.ms` milliseconds (default 2000) and honours `ctx.signal`, so a timeout
 * or a shutdown stops it promptly instead of leaving it running.
 *
 *   mrp run --handler handlers/slow.ts --timeout 1s
 */
import type { Handler } from 'mrp';

const slow: Handler = async (msg, ctx) => {
  const body = (msg.body ?? {}) as { ms?: unknown };
  const ms = typeof body.ms === 'number' ? body.ms : 2000;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    ctx.signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(ctx.signal.reason);
      },
      { once: true },
    );
  });
  return { slept_ms: ms };
};

export default slow;
