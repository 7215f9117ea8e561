// The authority rule (DESIGN.md "Authority rule"): the SSL object that serves a
// request's authority must be the one the connection was verified for when that object
// has mTLS. Without it, a client with no certificate handshakes with another name (no
// SNI, a plain object's SNI, an unknown name served by default_ssl) and then sends
// `Host: <an mTLS name>`: the request would be routed as if verified.
import type { SniMap } from '../routing/sni-map';
import { patternCovers } from '../routing/names';
import type { ConnFacts } from './exchange';
import type { ServingLookup } from './serving-lookup';

export type AuthorityRefusal =
  /** The authority belongs to an mTLS SSL object this connection was not verified for. */
  | 'misdirected_mtls'
  /** A verified mTLS connection used for a host its SSL object does not serve. */
  | 'misdirected_host';

/**
 * host: the request's normalized authority (no port), null when absent or invalid.
 * defaultSsl: the listener's default_ssl, which serves a name no object claims.
 * lookup: the worker state's cached answers (serving-lookup.ts) for the same `sni`; without
 * it the SNI map is asked.
 */
export function checkAuthority(
  sni: SniMap,
  conn: ConnFacts,
  host: string | null,
  defaultSsl?: string,
  lookup?: ServingLookup,
): AuthorityRefusal | null {
  const own = conn.ssl;
  if (own !== undefined && own.clientCa !== undefined) {
    if (host === null || !own.snis.some((p) => patternCovers(p, host))) return 'misdirected_host';
  }
  if (host === null) return null;
  // The object that would serve this name in a handshake, default_ssl included: when the
  // default object has mTLS, a name no other object claims needs its client certificate
  // too (a handshake with that name as SNI would have asked for one).
  const serving = lookup ? lookup.get(host, defaultSsl) : (sni.lookup(host, defaultSsl).ssl ?? null);
  if (serving === null || serving.clientCa === undefined) return null;
  if (!conn.authorized) {
    // An object with exemptions (skip_mtls_paths) serves its own names to a connection without
    // a verified certificate; the stage then serves it only the exempt paths (mtls-exempt.ts).
    const optional = own !== undefined && own.id === serving.id && serving.skipMtls !== undefined;
    return optional ? null : 'misdirected_mtls';
  }
  if (own === undefined || own.clientCa === undefined) return 'misdirected_mtls';
  // Same object (by id: a rotation gives it a new snapshot), or one whose whole client rule
  // is the same: CA, CRL and depth. The CA alone is not enough: a certificate revoked only
  // in the serving object's CRL, or a chain longer than its depth, passes a `*.corp` object
  // without them and would then reach `admin.corp` beneath it.
  if (own.id === serving.id) return null;
  const same =
    own.clientCa === serving.clientCa && own.clientCrl === serving.clientCrl && own.clientDepth === serving.clientDepth;
  return same ? null : 'misdirected_mtls';
}
