// Admin API on its own listener (plain HTTP on loopback, or its own TLS).
import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { Logger } from '../log';
import { ListenError } from '../errors';
import { allows, KeyTable, requiredRole, setCaller, type ApiKey, type Principal, type Role } from './access';

/** `caller`: the key that authenticated the request (null on the open routes). */
export interface AdminContext {
  caller: Principal | null;
}

export type Handler = (
  req: IncomingMessage,
  url: URL,
  ctx: AdminContext,
) => Promise<{ status: number; body: unknown; type?: string; headers?: Record<string, string> }>;

/** A request refused by role (403): mutating ones are audited. */
export interface Denied {
  caller: Principal;
  method: string;
  path: string;
  needed: Role;
}

export interface AdminOptions {
  host: string;
  port: number;
  apiKeys: ApiKey[];
  tls?: { cert: string; key: string };
  log: Logger;
  routes: Record<string, Handler>;
  /** Unauthenticated routes (health checks). */
  open: Record<string, Handler>;
  /** Told of every 403 (after it is answered). */
  onDenied?: (d: Denied) => void;
  /** Routes that change the config store (PUT/DELETE): one place to wrap a write check. */
  writes?: Record<string, Handler>;
}

export class AdminServer {
  private readonly server: Server;
  private keys: KeyTable;
  /** Reads and writes together; `writeHandlers` tells a write apart. */
  private readonly routes: Record<string, Handler>;
  private readonly writeHandlers: Set<Handler>;

  constructor(private readonly o: AdminOptions) {
    this.routes = { ...o.routes, ...o.writes };
    this.writeHandlers = new Set(Object.values(o.writes ?? {}));
    this.keys = new KeyTable(o.apiKeys);
    const handler = (req: IncomingMessage, res: ServerResponse): void => void this.handle(req, res);
    this.server = o.tls ? createHttps({ cert: o.tls.cert, key: o.tls.key }, handler) : createHttp(handler);
  }

  /** A reload that changed `admin.api_keys`: an old key stops working at once, a new role applies at once. */
  setApiKeys(keys: ApiKey[]): void {
    this.keys = new KeyTable(keys);
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

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    // HEAD is GET without the body (Node drops it).
    const method = req.method === 'HEAD' ? 'GET' : (req.method ?? 'GET');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    const key = `${method} ${path}`;
    const open = this.o.open[key];
    const route = open ?? this.routes[key] ?? this.matchParam(key);
    let caller: Principal | null = null;
    try {
      if (!open) {
        // 401: no valid key (the client should authenticate); 403: a valid key whose role
        // does not allow this method on this path, decided before the route is looked up.
        const who = this.keys.match(req.headers['x-api-key']);
        if (!who) {
          res.setHeader('www-authenticate', 'ApiKey realm="tlsgate-admin", header="X-API-KEY"');
          return send(res, 401, {
            error: { code: 'TLSGATE_E_ADMIN_UNAUTHORIZED', message: 'missing or wrong X-API-KEY' },
          });
        }
        const needed = requiredRole(method, path);
        if (!allows(who.role, needed)) {
          const message = `key "${who.id}" has role ${who.role}; ${method} ${path} needs ${needed}`;
          send(res, 403, { error: { code: 'TLSGATE_E_ADMIN_FORBIDDEN', message } });
          this.o.log.warn({ key_id: who.id, role: who.role, method, path, needed }, 'admin request refused by role');
          try {
            this.o.onDenied?.({ caller: who, method, path, needed });
          } catch (err) {
            this.o.log.error({ err }, 'cannot audit a refused admin request');
          }
          return;
        }
        caller = who;
        setCaller(req, who);
      }
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
      const r = await route(req, url, { caller });
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
