// The snapshot: everything a worker needs, nothing it must not hold (no provider
// credentials, no references). It crosses process boundaries only as msgpack bytes.

export type TlsProtocol = 'TLSv1.2' | 'TLSv1.3';
export type EngineName = 'node' | 'uws';

export interface CertKeyPair {
  /** PEM chain: leaf first. */
  cert: string;
  /** PEM private key. Never logged, never shown by the admin API. */
  key: string;
}

export interface SslSnapshot {
  id: string;
  type: 'server' | 'client';
  /** Normalised (lower-case, no trailing dot). */
  snis: string[];
  /** Preferred pair first (ECDSA before RSA). */
  pairs: CertKeyPair[];
  /** PEM bundle of the client CA; present = mTLS on. */
  clientCa?: string;
  /** PEM CRLs (one per CA of the client chain) checked with clientCa. */
  clientCrl?: string;
  /** Maximum number of intermediates between the client certificate and the CA. */
  clientDepth: number;
  /**
   * client.skip_mtls_paths as written (`/p`, `/p/*`, `= /p`): present = the handshake asks for a
   * certificate without requiring it, and a request without a verified one is served only on these.
   */
  skipMtls?: string[];
  protocols: TlsProtocol[];
  /** OpenSSL cipher list for TLS ≤ 1.2 (TLS 1.3 suites by their TLS_ names, else the default three). */
  ciphers: string;
  /** sha256 over pairs, client CA/CRL/depth/exemptions, protocols and ciphers: the SecureContext cache key. */
  hash: string;
}

export interface RequestLimits {
  maxHeaderCount: number;
  /** Bytes of header lines (names, values, separators), request line excluded. */
  maxHeaderBytes: number;
  maxRequestLine: number;
  /** Bytes; null = unlimited. A route may override it. */
  maxBodySize: number | null;
}

export interface ListenerTimeouts {
  handshakeMs: number;
  requestHeaderMs: number;
  keepAliveMs: number;
}

export interface ListenerSnapshot {
  name: string;
  host: string;
  port: number;
  engine: EngineName;
  defaultSsl?: string;
  /** false: no session tickets (every connection makes a full handshake). */
  sessionTickets: boolean;
  limits: RequestLimits;
  timeouts: ListenerTimeouts;
  /** Per worker; connections beyond it are refused, open ones keep being served. */
  maxConnections: number;
  /** HTTP/2 on a node listener (ALPN h2, http/1.1); absent: http/1.1 only. */
  h2?: H2Settings;
}

export interface H2Settings {
  maxConcurrentStreams: number;
  /** Client stream resets allowed in a burst per connection; refilled at a tenth per second. */
  maxResets: number;
  streamIdleMs: number;
}

export interface RespondSnapshot {
  status: number;
  body: string;
  headers: Record<string, string>;
}

export interface RouteSnapshot {
  id: string;
  /** Normalised; undefined = any host. `*` alone also means any host. */
  hosts?: string[];
  /** As written in the config: `= /exact`, `/prefix`, `/prefix/*` (routing/router.ts parses them). */
  paths: string[];
  /** Every path of the route is exact. */
  exact?: boolean;
  /** Higher first among routes with the same path (default 0). */
  priority?: number;
  upstream?: string;
  respond?: RespondSnapshot;
  /** Upper-case methods; absent = any method but TRACE. */
  methods?: string[];
  /** Overrides the listener's maxBodySize when present (null = unlimited). */
  maxBodySize?: number | null;
}

export interface UpstreamNodeSnapshot {
  host: string;
  port: number;
  weight: number;
}

export interface UpstreamTlsSnapshot {
  verify: boolean;
  /** PEM bundle; absent = system store. */
  ca?: string;
  /** id of an SSL object of type client, presented to the upstream. */
  clientSsl?: string;
  sni?: string;
}

/** How a worker picks a node (src/proxy/balance.ts). */
export type BalanceSnapshot =
  | { type: 'roundrobin' }
  | { type: 'least_conn' }
  | { type: 'chash'; hashOn: 'vars' | 'header' | 'cookie'; key: string };

export interface UpstreamSnapshot {
  id: string;
  scheme: 'http' | 'https';
  nodes: UpstreamNodeSnapshot[];
  /** Overrides the Host header sent upstream. */
  host?: string;
  tls?: UpstreamTlsSnapshot;
  /** sendMs: the node accepts no request body byte for that long → 504; absent: no limit. */
  timeout: { connectMs: number; readMs: number; sendMs?: number };
  /** size: idle connections kept per node (absent: all); idleMs absent: the proxy's default. */
  keepalive?: { size?: number; idleMs?: number };
  /** Retries on other nodes (absent: each other node once). */
  retries?: number;
  /** No retry starts this long after the first try; absent or 0: no limit. */
  retryTimeoutMs?: number;
  /** Client identity headers for mTLS routes; undefined = not sent. */
  clientIdentityHeaders?: { subject: string; fingerprint: string; verify: string };
  /** Balancer; absent: roundrobin (snapshots of older builds). */
  balance?: BalanceSnapshot;
  /** sha256 over the fields above: pools are kept while it does not change. */
  hash: string;
}

export interface Snapshot {
  version: number;
  createdAt: number;
  listeners: ListenerSnapshot[];
  ssls: SslSnapshot[];
  /** [normalised sni pattern, ssl id] for enabled server SSL objects. */
  sni: Array<[string, string]>;
  routes: RouteSnapshot[];
  upstreams: UpstreamSnapshot[];
  /** 48 bytes shared by every worker so a session ticket resumes on any of them. */
  ticketKeys?: Uint8Array;
}
