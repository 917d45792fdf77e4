/**
 * A tiny HTTP server for operators: a few GET routes answered from memory (`/healthz`, `/readyz`,
 * `/metrics`). Used by `mrp run --health-port` and `mrp relay --metrics-port`. It never reads a
 * request body and never answers anything but GET/HEAD on the listed paths.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Probe {
  status: number;
  body: string;
  contentType?: string;
}

export type Routes = Record<string, () => Probe | Promise<Probe>>;

export interface OpsServer {
  /** `http://host:port` (after listen). */
  readonly url: string;
  close(): Promise<void>;
}

export async function startOpsServer(options: { host: string; port: number; routes: Routes }): Promise<OpsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const route = Object.hasOwn(options.routes, path) ? options.routes[path] : undefined;
    const answer = (p: Probe): void => {
      res.writeHead(p.status, {
        'Content-Type': p.contentType ?? 'text/plain; charset=utf-8',
        'Cache-Control': 'no-store',
      });
      res.end(req.method === 'HEAD' ? undefined : p.body);
    };
    if (!route) return answer({ status: 404, body: `not found; try ${Object.keys(options.routes).join(' ')}\n` });
    if (req.method !== 'GET' && req.method !== 'HEAD') return answer({ status: 405, body: 'GET only\n' });
    Promise.resolve()
      .then(route)
      .then(answer, (err: unknown) => answer({ status: 500, body: `${(err as Error)?.message ?? String(err)}\n` }));
  });
  // Probes come every few seconds; idle keep-alive sockets must not hold close() up.
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  return {
    url: `http://${host === '0.0.0.0' || host === '[::]' ? '127.0.0.1' : host}:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
