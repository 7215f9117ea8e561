// Admin API on its own listener (plain HTTP on loopback, or its own TLS).
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { timingSafeEqual, createHash } from 'node:crypto';
import type { Logger } from '../log';
import { ListenError } from '../errors';

export type Handler = (
  req: IncomingMessage,
  url: URL,
) => Promise<{ status: number; body: unknown; type?: string; headers?: Record<string, string> }>;

export interface AdminOptions {
  host: string;
  port: number;
  apiKeys: string[];
  tls?: { cert: string; key: string };
  log: Logger;
  routes: Record<string, Handler>;
  /** Unauthenticated routes (health checks). */
  open: Record<string, Handler>;
  /** Routes that change the config store (PUT/DELETE): one place to wrap a write check. */
  writes?: Record<string, Handler>;
}

export class AdminServer {
  private readonly server: Server;
  private keyDigests: Buffer[];
  /** Reads and writes together; `writeHandlers` tells a write apart. */
  private readonly routes: Record<string, Handler>;
  private readonly writeHandlers: Set<Handler>;

  constructor(private readonly o: AdminOptions) {
    this.routes = { ...o.routes, ...o.writes };
    this.writeHandlers = new Set(Object.values(o.writes ?? {}));
    this.keyDigests = o.apiKeys.map(digest);
    const handler = (req: IncomingMessage, res: ServerResponse): void => void this.handle(req, res);
    this.server = o.tls ? createHttps({ cert: o.tls.cert, key: o.tls.key }, handler) : createHttp(handler);
  }

  /** A reload that changed `admin.api_keys`: an old key stops working at once. */
  setApiKeys(keys: string[]): void {
    this.keyDigests = keys.map(digest);
  }

  /** A rotated admin certificate: new connections get it, open ones keep theirs. */
  setTls(tls: { cert: string; key: string }): void {
    const s = this.server as Server & { setSecureContext?: (o: { cert: string; key: string }) => void };
    s.setSecureContext?.({ cert: tls.cert, key: tls.key });
  }

  listen(): Promise<{ host: string; port: number }> {
    return new Promise((resolve, reject) => {
      this.server.once('error', (err) => reject(new ListenError('admin', `${this.o.host}:${this.o.port}`, err)));
      this.server.listen(this.o.port, this.o.host, () => {
        const a = this.server.address();
        resolve({ host: this.o.host, port: typeof a === 'object' && a ? a.port : this.o.port });
      });
    });
  }

  private authorized(req: IncomingMessage): boolean {
    const given = req.headers['x-api-key'];
    if (typeof given !== 'string' || given.length === 0) return false;
    // Compare digests: constant time and independent of the key's length.
    const d = digest(given);
    let ok = false;
    for (const k of this.keyDigests) ok = timingSafeEqual(d, k) || ok;
    return ok;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    // HEAD is GET without the body (Node drops it).
    const key = `${req.method === 'HEAD' ? 'GET' : req.method} ${url.pathname.replace(/\/+$/, '') || '/'}`;
    const open = this.o.open[key];
    const route = open ?? this.routes[key] ?? this.matchParam(key);
    try {
      if (!open && !this.authorized(req))
        return send(res, 401, {
          error: { code: 'TLSGATE_E_ADMIN_UNAUTHORIZED', message: 'missing or wrong X-API-KEY' },
        });
      if (!route) {
        const allow = this.allowed(key.slice(key.indexOf(' ') + 1));
        if (allow.length === 0) {
          return send(res, 404, { error: { code: 'TLSGATE_E_NO_ROUTE', message: `no admin endpoint ${key}` } });
        }
        res.setHeader('allow', allow.join(', '));
        const message = `${key}: allowed methods are ${allow.join(', ')}`;
        return send(res, 405, { error: { code: 'TLSGATE_E_METHOD_NOT_ALLOWED', message } });
      }
      if (this.writeHandlers.has(route)) this.o.log.debug({ endpoint: key }, 'admin write');
      const r = await route(req, url);
      send(res, r.status, r.body, r.type, r.headers);
    } catch (err) {
      this.o.log.error({ err, endpoint: key }, 'admin endpoint failed');
      send(res, 500, {
        error: { code: (err as { code?: string }).code ?? 'TLSGATE_E_INTERNAL', message: (err as Error).message },
      });
    }
  }

  /** Methods that have an endpoint at this path (for 405 + Allow). */
  private allowed(path: string): string[] {
    const methods = new Set<string>();
    for (const pattern of [...Object.keys(this.o.open), ...Object.keys(this.routes)]) {
      const [method, p] = pattern.split(' ') as [string, string];
      const base = p.endsWith('/:id') ? p.slice(0, -3) : undefined;
      const hit = p === path || (base !== undefined && path.startsWith(base) && !path.slice(base.length).includes('/'));
      if (hit) methods.add(method);
    }
    if (methods.has('GET')) methods.add('HEAD');
    return [...methods].sort();
  }

  /** `GET /v1/ssls/:id` style routes. */
  private matchParam(key: string): Handler | undefined {
    for (const [pattern, h] of Object.entries(this.routes)) {
      if (!pattern.endsWith('/:id')) continue;
      const base = pattern.slice(0, -3);
      if (key.startsWith(base) && !key.slice(base.length).includes('/')) return h;
    }
    return undefined;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  type?: string,
  headers?: Record<string, string>,
): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, {
    ...headers,
    'content-type': type ?? 'application/json',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(text);
}
