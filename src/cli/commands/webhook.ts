/**
 * `mrp webhook set|get|rm`: this agent's webhook on the relay (docs/protocol.md §3.8). `set`
 * without `--secret` generates one (32 random bytes, base64url) and prints it ONCE — the only
 * output of mrp that ever contains a webhook secret (with --json, only when it was generated).
 * The receiving side is `mrp run --mode webhook`, or any server that checks the signature (README).
 */
import type { Command } from 'commander';
import { UsageError } from '../../core/errors.js';
import { withoutUrlCredentials } from '../../core/printable.js';
import type { WebhookConfig } from '../../protocol/types.js';
import { isWebhookSecret, newWebhookSecret, WEBHOOK_SECRET_LIMITS } from '../../protocol/webhook.js';
import type { CliContext } from '../context.js';
import type { Deps } from '../deps.js';
import { action, addGlobalOptions, examples } from '../program.js';
import { fullTime, safeText } from '../render.js';

export interface WebhookSetOptions {
  secret?: string;
}

function describe(ctx: CliContext, hook: WebhookConfig): string[] {
  const { style } = ctx.out;
  return [
    `${style.dim('url')}       ${safeText(hook.url)}`,
    `${style.dim('enabled')}   ${hook.enabled ? 'yes' : style.yellow('no — disabled after repeated failures; `mrp webhook set` again to re-enable')}`,
    `${style.dim('failures')}  ${hook.consecutive_failures} in a row`,
    `${style.dim('since')}     ${fullTime(hook.created_at)}`,
  ];
}

export async function runWebhookSet(ctx: CliContext, options: WebhookSetOptions, args: string[]): Promise<void> {
  const url = args[0]!;
  let parsed: URL | undefined;
  try {
    parsed = new URL(url);
  } catch {
    parsed = undefined;
  }
  if (!parsed || (parsed.protocol !== 'https:' && parsed.protocol !== 'http:')) {
    throw new UsageError(
      `<url> "${withoutUrlCredentials(url)}" must be an absolute http or https URL, e.g. https://my-agent.example.com/incoming`,
      { code: 'invalid_argument' },
    );
  }
  if (parsed.username !== '' || parsed.password !== '') {
    throw new UsageError(
      `<url> "${withoutUrlCredentials(url)}" must not contain a user name or password: relays refuse them (deliveries are signed with the secret instead)`,
      { code: 'invalid_argument' },
    );
  }
  const given = options.secret;
  if (given !== undefined && !isWebhookSecret(given)) {
    throw new UsageError(
      `--secret must be ${WEBHOOK_SECRET_LIMITS.min}–${WEBHOOK_SECRET_LIMITS.max} characters (leave it out to generate one)`,
      {
        code: 'invalid_argument',
      },
    );
  }
  const secret = given ?? newWebhookSecret();
  const client = await ctx.client();
  const hook = await client.setWebhook(url, secret);
  const { style } = ctx.out;
  ctx.out.result(
    given === undefined ? { ...hook, secret } : hook,
    () => [
      `${style.green('✔')} Webhook set: ${safeText(hook.url)}`,
      ...(given === undefined
        ? [
            `${style.dim('secret')}  ${secret}`,
            style.yellow(
              '  Shown once: give it to your receiver (e.g. mrp run --mode webhook); the relay never returns it.',
            ),
          ]
        : [style.dim('  Deliveries are signed with the secret you gave (HMAC-SHA256, X-M2M-Webhook-Signature).')]),
    ],
    () => (given === undefined ? secret : []),
  );
}

export async function runWebhookGet(ctx: CliContext): Promise<void> {
  const client = await ctx.client();
  const hook = await client.getWebhook();
  ctx.out.result(
    hook,
    () => describe(ctx, hook),
    () => hook.url,
  );
}

export async function runWebhookRemove(ctx: CliContext): Promise<void> {
  const client = await ctx.client();
  await client.deleteWebhook();
  ctx.out.result(
    { removed: true },
    () => `${ctx.out.style.green('✔')} Webhook removed; pending deliveries dropped (messages stay in your inbox)`,
  );
}

export function register(program: Command, deps: Deps): void {
  const hook = addGlobalOptions(program.command('webhook')).description(
    'have the relay POST your messages to a URL (signed), instead of connecting',
  );
  examples(hook, ['mrp webhook set https://my-agent.example.com/incoming', 'mrp webhook get --json', 'mrp webhook rm']);
  const leaf = (cmd: Command, lines: string[]): Command => examples(addGlobalOptions(cmd), lines);
  leaf(
    hook
      .command('set')
      .description('register or replace your webhook (re-enables it); prints a generated secret once')
      .argument('<url>', 'absolute http(s) URL the relay POSTs each message to')
      .option(
        '--secret <secret>',
        `the signing secret (${WEBHOOK_SECRET_LIMITS.min}–${WEBHOOK_SECRET_LIMITS.max} characters; default: generate one)`,
      ),
    [
      'mrp webhook set https://my-agent.example.com/incoming',
      'mrp webhook set https://my-agent.example.com/incoming --secret "$SECRET" --json',
    ],
  ).action(action(deps, runWebhookSet));
  leaf(
    hook.command('get').alias('show').description('your webhook: URL, enabled, failures in a row (never the secret)'),
    ['mrp webhook get', 'mrp webhook get --json'],
  ).action(action(deps, runWebhookGet));
  leaf(hook.command('rm').alias('remove').description('remove your webhook and its pending deliveries'), [
    'mrp webhook rm',
  ]).action(action(deps, runWebhookRemove));
}
