/**
 * The files `mrp init` writes: the manifest, a handler (or one of the examples in handlers/), and
 * for operators a Dockerfile (+ .dockerignore) and a systemd unit. Pure text builders; init.ts
 * decides where they go and never overwrites.
 */

import { UsageError } from '../core/errors.js';

export const TEMPLATES = ['echo', 'router', 'slow'] as const;
export type Template = (typeof TEMPLATES)[number];

interface CapabilityText {
  name: string;
  description: string;
  tags: string;
}

/** What each template announces in mrp.yaml. */
const CAPABILITY: Record<Template | 'default', CapabilityText> = {
  default: { name: 'echo', description: 'Replies with what it receives', tags: '[echo, demo]' },
  echo: { name: 'echo', description: 'Replies with what it receives', tags: '[echo, demo]' },
  router: {
    name: 'router',
    description: 'Answers application/x-mrp-request+json actions: ping, add, upper, whoami',
    tags: '[rpc, demo]',
  },
  slow: {
    name: 'slow',
    description: 'Works for body.ms milliseconds, honouring timeouts and shutdown',
    tags: '[demo]',
  },
};

export function manifestText(name: string, schema: string, template: Template | undefined): string {
  const cap = CAPABILITY[template ?? 'default'];
  return `# yaml-language-server: $schema=${schema}
# The agent's public profile. \`mrp run\` announces it at start; \`mrp announce\` does it on demand.
name: ${JSON.stringify(name)}
visibility: private        # public: listed by \`mrp discover\`
inbox_policy: blocklist    # open | closed | allowlist | blocklist
capabilities:
  - name: ${cap.name}
    description: ${JSON.stringify(cap.description)}
    tags: ${cap.tags}
metadata:
  version: "0.1.0"
# acl:
#   allow: []              # public keys or contact names (with inbox_policy: allowlist)
#   block: []
`;
}

export const DEFAULT_HANDLER = `/**
 * Your agent. Runs with \`mrp run --handler ./handler.ts\` (or \`mrp dev --handler ./handler.ts\`).
 * The return value is the reply; a string becomes {"text": …}; return nothing to stay silent;
 * a thrown error becomes {"status":"error","error":{"code","message"}}.
 */
import type { Handler } from 'mrp';

const handler: Handler = async (msg, ctx) => {
  ctx.log.info('message received', { from: msg.sender_key, content_type: msg.content_type });
  return { echo: msg.body };
};

export default handler;
`;

/**
 * The test `mrp init` writes next to the default handler (\`handler.test.ts\` for \`handler.ts\`):
 * `invoke` from `mrp/testing` runs the handler once with a real ctx and no network. Written in
 * TypeScript Node can strip (no enums, type-only imports), so it runs with `node --test` on
 * Node ≥ 23.6 and with `npx tsx --test` before that.
 */
export function handlerTestText(handlerImport: string): string {
  // The import lines are plain strings (not template lines) so the import scanners of
  // test/architecture.test.ts never mistake them for imports of this file.
  const imports = [
    "import assert from 'node:assert/strict';",
    "import { test } from 'node:test';",
    "import { invoke } from 'mrp/testing';",
    `import handler from '${handlerImport}';`,
  ].join('\n');
  return `/**
 * A test for ${handlerImport}: runs the handler once with a real ctx and no network, and checks
 * what it would send. Run it with \`node --test\` (Node ≥ 23.6) or \`npx tsx --test\`.
 */
${imports}

test('echoes the body back, threaded', async () => {
  const result = await invoke(handler, { message_id: 'msg-1', body: { text: 'hello' } });
  assert.equal(result.outcome, 'ok');
  assert.deepEqual(result.reply?.body, { echo: { text: 'hello' } });
  assert.equal(result.reply?.inReplyTo, 'msg-1');
  assert.equal(result.logs[0]?.message, 'message received');
});

test('a thrown error becomes the error reply', async () => {
  const failing = async () => {
    throw new Error('not today');
  };
  const result = await invoke(failing, {});
  assert.equal(result.outcome, 'error');
  assert.deepEqual(result.reply?.body, { status: 'error', error: { code: 'handler_error', message: 'not today' } });
});
`;
}

/** A name fit for an image tag or a unit file: lowercase letters, digits and dashes. */
export function slug(name: string): string {
  return (
    name
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 60) || 'mrp-agent'
  );
}

export interface DockerOptions {
  name: string;
  handler: string;
  graceSeconds: number;
  healthPort: number;
  version: string;
  /** The project has a package.json (its handler imports npm packages). */
  packageJson: boolean;
}

export function dockerfileText(o: DockerOptions): string {
  const tag = slug(o.name);
  const stop = o.graceSeconds + 15;
  const deps = o.packageJson
    ? "\n# The handler's own npm dependencies.\nCOPY --chown=node:node package*.json ./\nRUN npm ci --omit=dev && npm cache clean --force\n"
    : '';
  const cmd = [
    'mrp',
    'run',
    '--handler',
    o.handler,
    '--grace',
    `${o.graceSeconds}s`,
    '--health-port',
    String(o.healthPort),
    '--health-host',
    '0.0.0.0',
    '--log-format',
    'json',
  ];
  return `# syntax=docker/dockerfile:1
# Written by \`mrp init --docker\`.
#   docker build -t ${tag} .
#   docker run -d --name ${tag} --stop-timeout ${stop} \\
#     -v ${tag}-state:/home/node/.mrp \\
#     -v "$PWD/agent.key:/run/secrets/mrp.key:ro" \\
#     -e MRP_RELAY_URL=https://relay.mrphub.io \\
#     ${tag}
# The key is mounted, never built into the image (.dockerignore keeps *.key out); it must be
# mode 0600 and owned by uid 1000 (the image's "node" user). The state volume holds the journal
# that makes handling exactly-once across restarts. Stop timeout (${stop} s) > --grace (${o.graceSeconds} s), so
# running handlers can finish and replies are flushed before Docker kills the container.
FROM node:20-slim

# tini is PID 1: it forwards SIGTERM to mrp and reaps zombie processes (like \`docker run --init\`).
RUN apt-get update \\
 && apt-get install -y --no-install-recommends tini \\
 && rm -rf /var/lib/apt/lists/*

RUN npm install -g mrp@${o.version} && npm cache clean --force

WORKDIR /app
${deps}COPY --chown=node:node . .

RUN mkdir -p /home/node/.mrp && chown node:node /home/node/.mrp && chmod 700 /home/node/.mrp
USER node
ENV NODE_ENV=production \\
    MRP_HOME=/home/node/.mrp \\
    MRP_KEY_FILE=/run/secrets/mrp.key

# /healthz (alive), /readyz (connected, journal writable, not draining), /metrics (Prometheus).
EXPOSE ${o.healthPort}
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \\
  CMD ["node", "-e", "fetch('http://127.0.0.1:${o.healthPort}/readyz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ${JSON.stringify(cmd).replace(/","/g, '", "')}
`;
}

export const DOCKERIGNORE = `# Written by \`mrp init --docker\`: keep keys, state and local installs out of the image.
*.key
*.key.bak-*
.mrp/
data/
node_modules/
.git/
`;

/**
 * A word of a setting systemd splits into quoted words (Environment=, ExecStart=): `%` escaped
 * (specifiers), quoted when it has spaces, quotes or backslashes.
 */
function unitWord(value: string): string {
  const escaped = value.replace(/%/g, '%%');
  return /^[\w@+=:,./-]+$/.test(escaped) ? escaped : `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/** An argument of ExecStart=, which also expands `$VAR`: a literal `$` is `$$` (systemd.service(5)). */
function execWord(value: string): string {
  return unitWord(value).replace(/\$/g, '$$$$');
}

/**
 * A whole-line value systemd takes as it is (WorkingDirectory=, User=): only `%` escaped. It does
 * not unquote these, so quotes would become part of the path ("path is not absolute").
 */
function unitLine(value: string, what: string): string {
  if (/[\r\n]/.test(value) || value !== value.trim()) {
    throw new UsageError(
      `--systemd: the ${what} ${JSON.stringify(value)} cannot be written into a unit file (a line break, or spaces at an end); run mrp init from another directory`,
      { code: 'invalid_argument' },
    );
  }
  return value.replace(/%/g, '%%');
}

export interface SystemdOptions {
  name: string;
  user: string;
  cwd: string;
  node: string;
  bin: string;
  handler: string;
  graceSeconds: number;
  env: Record<string, string>;
}

export function unitFileName(name: string): string {
  return `${slug(name)}.service`;
}

export function systemdUnitText(o: SystemdOptions): string {
  const unit = unitFileName(o.name);
  // The name is a display name (--name, or this folder's): a line break in it must not become a
  // directive of its own, so control characters in Description= are spaces.
  // The executable is taken literally (no $VAR substitution there); its arguments are not.
  // systemd refuses an executable path with quotes, backslashes or control characters.
  if (/["'\\\x00-\x1f\x7f]/.test(o.node)) {
    throw new UsageError(
      `--systemd: systemd cannot start node at ${JSON.stringify(o.node)} (quotes, backslashes or control characters in its path); install node elsewhere or edit the unit`,
      { code: 'invalid_argument' },
    );
  }
  const exec = [
    unitWord(o.node),
    ...[o.bin, 'run', '--handler', o.handler, '--grace', `${o.graceSeconds}s`, '--log-format', 'json'].map(execWord),
  ].join(' ');
  const env = Object.entries(o.env)
    .map(([k, v]) => `Environment=${unitWord(`${k}=${v}`)}`)
    .join('\n');
  return `# Written by \`mrp init --systemd\`.
#   sudo cp ${unit} /etc/systemd/system/ && sudo systemctl daemon-reload
#   sudo systemctl enable --now ${unit.replace(/\.service$/, '')}
#   journalctl -u ${unit.replace(/\.service$/, '')} -f
[Unit]
Description=MRP agent ${o.name.replace(/[\x00-\x1f\x7f]+/g, ' ').replace(/%/g, '%%')}
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
Type=simple
User=${unitLine(o.user, 'user')}
WorkingDirectory=${unitLine(o.cwd, 'working directory')}
${env}
Environment=NODE_ENV=production
ExecStart=${exec}
# On SIGTERM mrp stops taking messages, gives running handlers --grace (${o.graceSeconds} s), flushes
# replies and acks, then exits 0. systemd waits longer than that before it kills.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=${o.graceSeconds + 15}
Restart=on-failure
RestartSec=5
# 2 = bad flag or file, 4 = authentication refused: restarting cannot fix those.
RestartPreventExitStatus=2 4
NoNewPrivileges=true
PrivateTmp=true

[Install]
WantedBy=multi-user.target
`;
}
