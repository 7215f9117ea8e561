// Defaults: the config's come from its declaration (declaration.ts); the rest are
// internal timings that no config field sets.
import { CLIENT_IDENTITY_HEADERS, CONFIG, DEFAULT_CIPHERS } from './declaration';
import type { Field } from './decl';

/** The default of the field at `path` (`limits.max_header_count`, `ssls[].client.depth`). */
export function defaultOf<T>(path: string): T {
  let f: Field<unknown> | undefined = CONFIG as Field<unknown>;
  for (const part of path.split('.')) {
    const [name, list] = part.endsWith('[]') ? [part.slice(0, -2), true] : [part, false];
    f = f?.fields?.[name];
    if (list) f = f?.item;
  }
  if (!f?.fallback) throw new Error(`config field ${path} has no default`);
  return f.fallback() as T;
}

export const defaults = {
  workers: () => defaultOf<number>('workers'),
  logLevel: defaultOf<string>('log.level'),
  warnDays: defaultOf<number>('warn_days'),
  drainTimeout: defaultOf<number>('drain_timeout'),
  engine: defaultOf<string>('listeners[].engine'),
  sslType: defaultOf<string>('ssls[].type'),
  sslProtocols: defaultOf<string[]>('ssls[].ssl_protocols'),
  sslStatus: defaultOf<string>('ssls[].status'),
  sslCiphers: DEFAULT_CIPHERS,
  clientDepth: defaultOf<number>('ssls[].client.depth'),
  upstreamScheme: defaultOf<string>('upstreams[].scheme'),
  nodeWeight: defaultOf<number>('upstreams[].nodes[].weight'),
  connectTimeout: defaultOf<number>('upstreams[].timeout.connect'),
  readTimeout: defaultOf<number>('upstreams[].timeout.read'),
  upstreamVerify: defaultOf<boolean>('upstreams[].tls.verify'),
  clientIdentityHeaders: CLIENT_IDENTITY_HEADERS,
  respondStatus: defaultOf<number>('routes[].respond.status'),
  limits: {
    maxHeaderCount: defaultOf<number>('limits.max_header_count'),
    maxHeaderBytes: defaultOf<number>('limits.max_header_bytes'),
    maxRequestLine: defaultOf<number>('limits.max_request_line'),
    maxBodySize: defaultOf<number | null>('limits.max_body_size'),
  },
  timeouts: {
    handshake: defaultOf<number>('timeouts.handshake'),
    requestHeader: defaultOf<number>('timeouts.request_header'),
    keepAlive: defaultOf<number>('timeouts.keepalive'),
  },
  maxConnections: defaultOf<number>('max_connections'),
  fileMaxSize: defaultOf<number>('file_max_size'),
  fileRefreshInterval: defaultOf<number>('file_refresh_interval'),
  /** The proxy's own tuning (no config field sets it); src/proxy/options.ts PROXY_DEFAULTS. */
  proxy: {
    backoffBaseMs: 2_000, // 2 s: first passive-health back-off of a node that failed to connect
    backoffMaxMs: 30_000, // 30 s
    closeTimeoutMs: 10_000, // 10 s graceful wait for in-flight requests at close()
    retireTimeoutMs: 300_000, // 5 min: long downloads on a rotated pool may finish
    connectionsPerNode: null as number | null, // keep-alive connections per node and worker; null = unlimited
    keepAliveTimeoutMs: 4_000, // 4 s, under Node's server default of 5 s
  },
  workerAckTimeout: 10_000, // 10 s for a worker to build and ack a snapshot
  reloadDebounce: 25, // ms: editors write a file in several steps (rename, write, chmod)
};
