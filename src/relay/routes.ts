/**
 * The HTTP API (docs/protocol.md §3) as one table: the unauthenticated health and OpenAPI routes (§3.3)
 * here, the agent, message and blob routes in `routes-agents.ts`, `routes-messages.ts` and
 * `routes-blobs.ts`, and any
 * extra routes a caller of `createRelay` adds. The OpenAPI document is built from the table.
 */
import { LIMITS } from '../protocol/constants.js';
import { formatTimestamp } from '../protocol/signing.js';
import { NO_BODY } from './router.js';
import { AGENT_ROUTES } from './routes-agents.js';
import { blobRoutes } from './routes-blobs.js';
import { MESSAGE_ROUTES } from './routes-messages.js';
import { ok, type RelayRoute } from './services.js';

/** Unauthenticated routes (§3.3). */
export const PUBLIC_ROUTES: RelayRoute[] = [
  {
    method: 'GET',
    path: '/v1/health',
    auth: false,
    summary: 'Basic health',
    body: NO_BODY,
    reply: 'json',
    handler: async (_req, svc) =>
      ok({
        status: (await svc.storageHealth()).ok ? 'ok' : 'degraded',
        version: svc.version,
        timestamp: formatTimestamp(svc.clock.now()),
      }),
  },
  {
    method: 'GET',
    path: '/v1/health/ready',
    auth: false,
    summary: 'Readiness',
    body: NO_BODY,
    reply: 'json',
    handler: async (_req, svc) => {
      const health = await svc.storageHealth();
      return health.ok ? ok({ status: 'ok' }) : ok({ status: 'unavailable', reason: health.reason }, 503);
    },
  },
  {
    method: 'GET',
    path: '/v1/health/live',
    auth: false,
    summary: 'Liveness',
    body: NO_BODY,
    reply: 'json',
    handler: () => ok({ status: 'ok' }),
  },
  {
    method: 'GET',
    path: '/v1/health/details',
    auth: false,
    summary: 'Per-component health',
    body: NO_BODY,
    reply: 'json',
    handler: async (_req, svc) => {
      const started = performance.now();
      const health = await svc.storageHealth();
      const dbOk = health.ok;
      const latency = Math.round(performance.now() - started);
      const blobs = await svc.blobs.store().catch(() => undefined);
      const blobCheck = blobs
        ? await blobs.check().catch((err: unknown) => String((err as Error)?.message ?? err))
        : 'disabled';
      return ok({
        status: dbOk ? 'ok' : 'degraded',
        version: svc.version,
        timestamp: formatTimestamp(svc.clock.now()),
        mode: 'embedded',
        components: {
          database: dbOk ? { status: 'ok', latency_ms: latency } : { status: 'unavailable', reason: health.reason },
          blob_store:
            blobCheck === 'ok' || blobCheck === 'disabled'
              ? { status: blobCheck }
              : { status: 'unavailable', reason: blobCheck },
          websocket: { status: 'ok', connections: svc.connections() },
        },
      });
    },
  },
];

/** Every route of a relay, built-in ones first (they win ties), the OpenAPI route last. */
export function relayRoutes(
  extra: readonly RelayRoute[] = [],
  limits: { maxBlobBytes: number } = { maxBlobBytes: LIMITS.maxBlobBytes },
): RelayRoute[] {
  const table: RelayRoute[] = [
    ...PUBLIC_ROUTES,
    ...AGENT_ROUTES,
    ...MESSAGE_ROUTES,
    ...blobRoutes(limits.maxBlobBytes),
    ...extra,
  ];
  const document = (version: string): unknown => openApi(version, table);
  table.push({
    method: 'GET',
    path: '/v1/openapi.json',
    auth: false,
    summary: 'This API as OpenAPI 3.1',
    body: NO_BODY,
    reply: 'json',
    handler: (_req, svc) => ok(document(svc.version)),
  });
  return table;
}

function openApi(version: string, routes: readonly RelayRoute[]): unknown {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const r of routes) {
    const path = r.path.replace(/:(\w+)/g, (_m, name: string) => `{${name === 'key' ? 'publicKey' : name}}`);
    paths[path] ??= {};
    paths[path][r.method.toLowerCase()] = {
      summary: r.summary,
      ...(r.auth ? { security: [{ publicKey: [], timestamp: [], signature: [] }] } : {}),
      responses: { default: { description: 'JSON; errors use the {"error": {...}} envelope' } },
    };
  }
  return {
    openapi: '3.1.0',
    info: { title: 'MRP relay (mrp)', version },
    components: {
      securitySchemes: {
        publicKey: { type: 'apiKey', in: 'header', name: 'X-M2M-Public-Key' },
        timestamp: { type: 'apiKey', in: 'header', name: 'X-M2M-Timestamp' },
        signature: { type: 'apiKey', in: 'header', name: 'X-M2M-Signature' },
      },
    },
    paths,
  };
}
