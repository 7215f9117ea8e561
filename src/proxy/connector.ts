// How a node's connections are opened (TCP or TLS re-encryption): the h1-client options.
import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { CertKeyPair, UpstreamNodeSnapshot, UpstreamSnapshot } from '../snapshot/types';

export interface NodeTarget {
  /** e.g. `https://[::1]:9443`, for logs. */
  origin: string;
  /** `host:port`, the Host sent when a request has none. */
  authority: string;
  /** null: plain TCP. */
  tls: ConnectionOptions | null;
}

/** SNI sent to the upstream: `tls.sni`, else the Host override, else the node's name (not an IP). */
export function upstreamSni(up: UpstreamSnapshot, node: UpstreamNodeSnapshot): string | undefined {
  if (up.tls?.sni) return up.tls.sni;
  if (up.host) return up.host.replace(/:\d+$/, '');
  return isIP(node.host) ? undefined : node.host;
}

/**
 * The SNI is constant per node (never taken from a passed-through Host): a client's Host
 * neither picks the upstream certificate that is checked nor splits the keep-alive pool.
 */
export function nodeTarget(
  up: UpstreamSnapshot,
  node: UpstreamNodeSnapshot,
  clientPair: CertKeyPair | undefined,
): NodeTarget {
  const hostPart = isIP(node.host) === 6 ? `[${node.host}]` : node.host;
  const authority = `${hostPart}:${node.port}`;
  const origin = `${up.scheme}://${authority}`;
  if (up.scheme !== 'https') return { origin, authority, tls: null };
  const sni = upstreamSni(up, node);
  return {
    origin,
    authority,
    tls: {
      // Node checks the certificate against `servername`, or against `host` (IP SANs) when none.
      rejectUnauthorized: up.tls?.verify !== false,
      ...(up.tls?.ca ? { ca: up.tls.ca } : {}),
      ...(clientPair ? { cert: clientPair.cert, key: clientPair.key } : {}),
      ...(sni ? { servername: sni } : {}),
    },
  };
}
