// The request stage, the same for both engines: request checks, the authority/mTLS
// rule, route match, method rule, body limit, then a direct answer or the upstream.
// An engine calls serve() once per request with its exchange; nothing here knows
// which engine it is.
import { dataPlane as m } from '../metrics';
import type { Router } from '../routing/router';
import type { SniMap } from '../routing/sni-map';
import type { RequestLimits, RespondSnapshot, RouteSnapshot } from '../snapshot/types';
import { checkAuthority } from './authority';
import { sendError } from './error-response';
import type { Exchange } from './exchange';
import { checkRequest } from './request-check';
import { countRequest } from './request-metrics';
import { refuseUnverified } from './mtls-exempt';
import { servingLookup } from './serving-lookup';
import type { UpstreamSet } from './upstream-set';
import type { ProxyContext } from './options';

/** What the stage reads from a worker's current state (engines/engine.ts DataPlaneState has it). */
export interface StageState {
  /** The snapshot version: a delta patches `sni` in place and bumps it. */
  readonly version: number;
  readonly sni: SniMap;
  readonly router: Router;
  readonly proxy: UpstreamSet;
}

export interface StageListener {
  readonly name: string;
  readonly limits: RequestLimits;
  /** Serves names no SSL object claims: its mTLS (if any) covers them in the authority rule. */
  readonly defaultSsl?: string;
}

/** Methods a route without `methods` allows, for the Allow header of a refused TRACE. */
const DEFAULT_ALLOW = 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT';

export function serve(state: StageState, listener: StageListener, ex: Exchange): void {
  const checked = checkRequest(ex.method, ex.target, ex.rawHeaders, listener.limits, ex.httpVersion);
  if (!checked.ok) {
    // A request we cannot frame or bound: the connection cannot be trusted for another one.
    countRequest('-', checked.status);
    sendError(ex, checked.status, checked.code, checked.message, true);
    return;
  }
  const req = checked.req;
  const refusal = checkAuthority(state.sni, ex.conn, req.host, listener.defaultSsl, servingLookup(state));
  if (refusal !== null) {
    m.refused.inc({ listener: listener.name, reason: refusal });
    countRequest('-', 421);
    const msg =
      refusal === 'misdirected_host'
        ? `host ${req.host ?? '(none)'} is not served by this mTLS connection`
        : `host ${req.host ?? '(none)'} requires a client certificate verified for it: connect with that name as SNI`;
    sendError(ex, 421, 'TLSGATE_E_MISDIRECTED', msg);
    return;
  }
  if (refuseUnverified(state.sni, listener.name, ex, req.path)) return;
  const route = state.router.match(req.host, req.path, req.method);
  if (route === undefined) {
    countRequest('-', 404);
    sendError(ex, 404, 'TLSGATE_E_NO_ROUTE', 'no route matches this request');
    return;
  }
  if (!methodAllowed(route, req.method)) {
    countRequest(route.id, 405);
    const allow = route.methods?.join(', ') ?? DEFAULT_ALLOW;
    sendError(ex, 405, 'TLSGATE_E_ROUTE_METHOD', `method ${req.method} is not allowed here`, false, ['allow', allow]);
    return;
  }
  const limit = route.maxBodySize !== undefined ? route.maxBodySize : listener.limits.maxBodySize;
  if (limit !== null && req.contentLength !== null && req.contentLength > limit) {
    countRequest(route.id, 413);
    sendError(ex, 413, 'TLSGATE_E_BODY_TOO_LARGE', `the request body is larger than ${limit} bytes`, true);
    return;
  }
  if (route.respond !== undefined) {
    const r = compiledRespond(route.respond);
    // A direct answer does not read the body: a client waiting on 100-continue gets the final status.
    if (!ex.bodyDone) ex.res.closeAfter();
    countRequest(route.id, r.status);
    ex.res.writeHead(r.status, undefined, ex.bodyDone ? r.headers : r.headersClose);
    ex.res.end(req.method === 'HEAD' ? undefined : r.body);
    return;
  }
  const conn = ex.conn;
  const cert = conn.authorized ? conn.clientIdentity() : undefined;
  const ctx: ProxyContext = { remoteAddress: conn.remoteAddress, proto: 'https' };
  if (cert !== undefined) ctx.clientCert = cert;
  if (req.authority !== null) ctx.authority = req.authority;
  if (ex.expectContinue) ctx.expectContinue = true;
  // A declared length is enforced by the engine's parser; only a chunked body is counted.
  state.proxy.forward(ex, route.upstream!, route.id, req.target, ctx, req.contentLength === null ? limit : null);
}

/** A direct answer, built once per route object (a new snapshot brings new objects). */
interface CompiledRespond {
  status: number;
  /**
   * A string, not a Buffer: node:http joins a string body to the head and writes both at once;
   * a Buffer takes a writev of two. uWS takes either.
   */
  body: string;
  /** Never mutated by an engine (ResponseWriter.writeHead only reads them). */
  headers: string[];
  headersClose: string[];
}
const respondCache = new WeakMap<RespondSnapshot, CompiledRespond>();

function compiledRespond(r: RespondSnapshot): CompiledRespond {
  let c = respondCache.get(r);
  if (c !== undefined) return c;
  const headers: string[] = [];
  let type = false;
  for (const k of Object.keys(r.headers)) {
    const lower = k.toLowerCase();
    type ||= lower === 'content-type';
    if (!RESPOND_SKIP.has(lower)) headers.push(k, r.headers[k]!);
  }
  if (!type) headers.push('content-type', 'text/plain');
  // RFC 9110 §8.6: no Content-Length in a 204; a 304 has no body to measure.
  if (r.status !== 204 && r.status !== 304) headers.push('content-length', String(Buffer.byteLength(r.body)));
  c = { status: r.status, body: r.body, headers, headersClose: [...headers, 'connection', 'close'] };
  respondCache.set(r, c);
  return c;
}

/** absent `methods`: any method but TRACE (it echoes the request, cookies included: XST). */
function methodAllowed(route: RouteSnapshot, method: string): boolean {
  return route.methods === undefined ? method !== 'TRACE' : route.methods.includes(method);
}

/** Set by the stage or framed by the engine. */
const RESPOND_SKIP = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date']);
