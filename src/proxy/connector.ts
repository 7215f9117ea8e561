// How a pool opens a connection to one upstream node (TCP or TLS re-encryption).
import { isIP } from 'node:net';
import { buildConnector } from 'undici';
import type { CertKeyPair, UpstreamNodeSnapshot, UpstreamSnapshot } from '../snapshot/types';

export interface NodeTarget {
  /** undici origin, e.g. `https://[::1]:9443`. */
  origin: string;
  /**
   * Constant per node, passed as `servername` on every dispatch. Why: undici
   * derives the TLS server name from the request's Host header when none is
   * given, and reconnects whenever it changes, so a passed-through Host would pick
   * the SNI and churn connections.
   */
  dispatchServername: string;
  connect: buildConnector.connector;
}

/** SNI sent to the upstream: `tls.sni`, else the Host override, else the node's name (not an IP). */
export function upstreamSni(up: UpstreamSnapshot, node: UpstreamNodeSnapshot): string | undefined {
  if (up.tls?.sni) return up.tls.sni;
  if (up.host) return up.host.replace(/:\d+$/, '');
  return isIP(node.host) ? undefined : node.host;
}

export function nodeTarget(
  up: UpstreamSnapshot,
  node: UpstreamNodeSnapshot,
  clientPair: CertKeyPair | undefined,
): NodeTarget {
  const hostPart = isIP(node.host) === 6 ? `[${node.host}]` : node.host;
  const origin = `${up.scheme}://${hostPart}:${node.port}`;
  const sni = up.scheme === 'https' ? upstreamSni(up, node) : undefined;
  const base = buildConnector({
    timeout: up.timeout.connectMs,
    ...(up.scheme === 'https'
      ? {
          // Node checks the certificate against `servername`, or against `host` (IP SANs) when none.
          rejectUnauthorized: up.tls?.verify !== false,
          ...(up.tls?.ca ? { ca: up.tls.ca } : {}),
          ...(clientPair ? { cert: clientPair.cert, key: clientPair.key } : {}),
          ...(sni ? { servername: sni } : {}),
        }
      : {}),
  });
  const connect: buildConnector.connector = (opts, cb) => {
    base(sni === undefined ? { ...opts, servername: undefined } : { ...opts, servername: sni }, cb);
  };
  return { origin, dispatchServername: sni ?? node.host, connect };
}
