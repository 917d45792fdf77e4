/**
 * A request router for `application/x-mrp-request+json` (docs/protocol.md §4.2): `{action, params}` in,
 * `{status: "ok", result}` or `{status: "error", error: {code, message}}` out.
 *
 *   mrp send <key> --content-type application/x-mrp-request+json \
 *     --json '{"action":"add","params":{"a":2,"b":3}}' --wait
 */
import type { Handler, HandlerContext, Message } from 'mrp';

type Params = Record<string, unknown>;
type Action = (params: Params, ctx: HandlerContext, msg: Message) => unknown;

class ActionError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

function number(params: Params, name: string): number {
  const v = params[name];
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new ActionError('invalid_params', `params.${name} must be a number`);
  return v;
}

const actions: Record<string, Action> = {
  ping: () => ({ pong: true }),
  add: (p) => ({ sum: number(p, 'a') + number(p, 'b') }),
  upper: (p) => {
    if (typeof p['text'] !== 'string') throw new ActionError('invalid_params', 'params.text must be a string');
    return { text: p['text'].toUpperCase() };
  },
  whoami: (_p, ctx, msg) => ({ you: msg.sender_key, me: ctx.self }),
};

const router: Handler = async (msg, ctx) => {
  if (msg.content_type !== 'application/x-mrp-request+json') {
    return {
      status: 'error',
      error: {
        code: 'unsupported_content_type',
        message: `send application/x-mrp-request+json, not ${msg.content_type}`,
      },
    };
  }
  const body = (msg.body ?? {}) as { action?: unknown; params?: unknown };
  const action = typeof body.action === 'string' ? actions[body.action] : undefined;
  if (!action) {
    return {
      status: 'error',
      error: {
        code: 'unsupported_action',
        message: `unknown action ${JSON.stringify(body.action)}; try one of ${Object.keys(actions).join(', ')}`,
      },
    };
  }
  try {
    const params = (body.params && typeof body.params === 'object' ? body.params : {}) as Params;
    return { status: 'ok', result: (await action(params, ctx, msg)) as never };
  } catch (err) {
    if (err instanceof ActionError) return { status: 'error', error: { code: err.code, message: err.message } };
    throw err;
  }
};

export default router;
