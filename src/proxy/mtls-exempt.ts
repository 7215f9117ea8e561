// mTLS exemptions (`ssls[].client.skip_mtls_paths`): an SSL object with them asks for a client
// certificate without requiring it (node engine: requestCert without rejectUnauthorized), so a
// partner's monitor can call `/health` without one. Every request on a connection without a
// verified certificate is then checked here, on the one request path, after the authority rule
// (authority.ts lets such a connection reach only its own object's names):
// exempt path → served; any other → 400, as nginx answers a missing or failed client certificate
// under `ssl_verify_client on` ("400 No required SSL certificate was sent").
//
// Paths are the router's (router.ts parsePath: `= /p` exact, `/p` and `/p/*` segment-aware
// prefixes), matched case-sensitively on the normalized path the router uses (escapes of
// unreserved characters decoded, dot segments and `//` removed). Stricter than the router in
// one way: a normalized path still holding `%` (an escaped `/`, `\`, `%`, …) or `;` is never
// exempt, so no upstream that splits on `%2F`, strips `;params` or decodes twice can read an
// exempt path as another one.
import { dataPlane as m } from '../metrics';
import { parsePath, type PathPattern } from '../routing/router';
import type { SniMap } from '../routing/sni-map';
import type { SslSnapshot } from '../snapshot/types';
import { sendError } from './error-response';
import type { Exchange } from './exchange';
import { countRequest } from './request-metrics';

/** Parsed once per snapshot object (a reload or rotation brings a new one). */
const compiled = new WeakMap<SslSnapshot, PathPattern[]>();

function patterns(ssl: SslSnapshot): PathPattern[] {
  let p = compiled.get(ssl);
  if (p === undefined) {
    p = [];
    // validate refused any other; a snapshot holding one anyway exempts nothing by it.
    for (const raw of ssl.skipMtls ?? []) {
      const pat = parsePath(raw, false);
      if (typeof pat !== 'string') p.push(pat);
    }
    compiled.set(ssl, p);
  }
  return p;
}

/** path: the normalized path (request-check.ts); `*` (OPTIONS *) is never exempt. */
export function exemptPath(ssl: SslSnapshot, path: string): boolean {
  if (path.charCodeAt(0) !== 47 /* / */ || path.indexOf('%') >= 0 || path.indexOf(';') >= 0) return false;
  for (const p of patterns(ssl)) {
    if (p.exact ? path === p.key
      : path.startsWith(p.key) || (p.bare && path.length === p.key.length - 1 && p.key.startsWith(path))) return true;
  }
  return false;
}

/**
 * true: answered 400 (a connection of an mTLS object without a verified certificate, on a path
 * its object's current exemptions do not cover). The current object, not the handshake's copy:
 * a reload that narrows or drops the exemptions applies to open connections at their next request.
 */
export function refuseUnverified(sni: SniMap, listener: string, ex: Exchange, path: string): boolean {
  const conn = ex.conn;
  const own = conn.ssl;
  if (own === undefined || own.clientCa === undefined || conn.authorized) return false;
  const current = sni.byId.get(own.id);
  if (current !== undefined && current.skipMtls !== undefined && exemptPath(current, path)) return false;
  m.refused.inc({ listener, reason: 'mtls_required' });
  countRequest('-', 400);
  sendError(ex, 400, 'TLSGATE_E_CLIENT_CERT_REQUIRED',
    'this path requires a verified client certificate (only the SSL object\'s skip_mtls_paths are served without one)');
  return true;
}
