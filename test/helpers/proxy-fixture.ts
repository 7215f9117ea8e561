// Shared scenery for the proxy tests: certificates made at run time, a real
// https front whose handler calls UpstreamSet.handle, real upstream servers.
// (Loaded by `node --test` as a file without tests: it has no side effects.)
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { createCA, issue, type Issued } from '../../src/certs/pki';
import type { ProxyContext, ProxyLogger } from '../../src/proxy';
import { UpstreamSet } from '../../src/proxy';
import type { SslSnapshot, UpstreamSnapshot } from '../../src/snapshot/types';

export interface Pki {
  frontCa: Issued;
  front: Issued;
  upstreamCa: Issued;
  upstreamServer: Issued;
  otherCa: Issued;
  otherServer: Issued;
  clientCa: Issued;
  client: Issued;
  client2: Issued;
}

let cached: Pki | undefined;
export function pki(): Pki {
  if (cached) return cached;
  const frontCa = createCA('front test CA');
  const upstreamCa = createCA('upstream test CA');
  const otherCa = createCA('some other CA');
  const clientCa = createCA('gateway client CA');
  cached = {
    frontCa,
    front: issue({ cn: 'localhost', dns: ['localhost', '*.example.com'], ips: ['127.0.0.1'], eku: ['serverAuth'], issuer: frontCa }),
    upstreamCa,
    upstreamServer: issue({ cn: 'api.internal', dns: ['api.internal'], ips: ['127.0.0.1'], eku: ['serverAuth'], issuer: upstreamCa }),
    otherCa,
    otherServer: issue({ cn: 'api.internal', dns: ['api.internal'], ips: ['127.0.0.1'], eku: ['serverAuth'], issuer: otherCa }),
    clientCa,
    client: issue({ cn: 'gateway-1', eku: ['clientAuth'], issuer: clientCa }),
    client2: issue({ cn: 'gateway-2', eku: ['clientAuth'], issuer: clientCa }),
  };
  return cached;
}

export function clientSsl(id: string, pair: Issued): SslSnapshot {
  return {
    id,
    type: 'client',
    snis: [],
    pairs: [{ cert: pair.cert, key: pair.key }],
    clientDepth: 1,
    protocols: ['TLSv1.2', 'TLSv1.3'],
    ciphers: '',
    hash: createHash('sha256').update(pair.cert).update(pair.key).digest('hex'),
  };
}

export function upstream(o: Partial<UpstreamSnapshot> & Pick<UpstreamSnapshot, 'id' | 'nodes'>): UpstreamSnapshot {
  const u: Omit<UpstreamSnapshot, 'hash'> = {
    scheme: 'http',
    timeout: { connectMs: 2_000, readMs: 10_000 },
    ...o,
  };
  const hash = createHash('sha256').update(JSON.stringify(u)).digest('hex');
  return { ...u, hash };
}

export interface LogLine {
  level: 'info' | 'warn' | 'error';
  obj: Record<string, unknown>;
  msg: string;
}
export function memoryLogger(): ProxyLogger & { lines: LogLine[] } {
  const lines: LogLine[] = [];
  return {
    lines,
    info: (obj, msg) => void lines.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => void lines.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => void lines.push({ level: 'error', obj, msg }),
  };
}

export async function listen<S extends http.Server | https.Server>(server: S): Promise<{ server: S; port: number; url: string }> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const scheme = server instanceof https.Server ? 'https' : 'http';
  return { server, port, url: `${scheme}://127.0.0.1:${port}` };
}

export async function closeServer(server: http.Server | https.Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

export interface FrontOptions {
  /** Which upstream a request goes to: the x-upstream header by default. */
  route?: (req: http.IncomingMessage) => string;
  /** Client identity to pretend the TLS engine verified. */
  clientCert?: ProxyContext['clientCert'];
  /** Wire 'checkContinue' to the proxy (ctx.expectContinue), as the engine should. */
  checkContinue?: boolean;
}

/** The TLS-terminating front, as the node engine will be: https.Server → set.handle. */
export async function startFront(set: UpstreamSet, o: FrontOptions = {}): Promise<{ server: https.Server; port: number; url: string }> {
  const p = pki();
  const route = o.route ?? ((req: http.IncomingMessage) => String(req.headers['x-upstream'] ?? 'api'));
  const handler = (expectContinue: boolean) => (req: http.IncomingMessage, res: http.ServerResponse) => {
    const ctx: ProxyContext = {
      remoteAddress: req.socket.remoteAddress ?? '',
      proto: 'https',
      ...(o.clientCert ? { clientCert: o.clientCert } : {}),
      ...(expectContinue ? { expectContinue } : {}),
    };
    set.handle(req, res, route(req), ctx);
  };
  const server = https.createServer({ cert: p.front.cert, key: p.front.key }, handler(false));
  if (o.checkContinue) server.on('checkContinue', handler(true));
  return listen(server);
}

/** A keep-alive client of the front, trusting its CA. */
export function frontClient(): Agent {
  return new Agent({ connect: { ca: pki().frontCa.cert, servername: 'localhost' } });
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

export async function get(agent: Agent, url: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  const r = await request(url, {
    dispatcher: agent,
    method: (init.method ?? 'GET') as 'GET',
    headers: init.headers ?? {},
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
}

/** An upstream that echoes what it received as JSON. */
export function echoHandler(name: string) {
  return (req: http.IncomingMessage, res: http.ServerResponse): void => {
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('end', () => {
      const body = JSON.stringify({ name, method: req.method, url: req.url, headers: req.headers, rawHeaders: req.rawHeaders, bytes });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
      res.end(body);
    });
  };
}

export interface Echo {
  name: string;
  method: string;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  rawHeaders: string[];
  bytes: number;
}

/** Poll `cond` every `everyMs` until true or `deadlineMs` passes (then throw). */
export async function until(cond: () => boolean | Promise<boolean>, what: string, deadlineMs = 10_000, everyMs = 10): Promise<void> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
