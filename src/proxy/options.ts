// What the proxy needs from its caller; its defaults are in src/config/defaults.ts.
import { defaults } from '../config/defaults';
import type { SslSnapshot } from '../snapshot/types';

/** pino-compatible subset: `(fields, message)`. */
export interface ProxyLogger {
  info(obj: Record<string, unknown>, msg: string): void;
  warn(obj: Record<string, unknown>, msg: string): void;
  error(obj: Record<string, unknown>, msg: string): void;
}

/** The verified client certificate of the TLS connection (mTLS), as the engine read it. */
export interface ClientIdentity {
  /** e.g. `CN=alice,O=Example`; newlines (Node's X509Certificate.subject) become `,`. */
  subject: string;
  /** SHA-256 fingerprint, as the engine formats it. */
  fingerprint: string;
}

/** Per request, from the TLS engine. */
export interface ProxyContext {
  clientCert?: ClientIdentity;
  /** Peer address of the client connection: appended to X-Forwarded-For. */
  remoteAddress: string;
  proto: 'https';
  /** The request's authority as checkRequest found it (absolute-form target or Host), port kept. */
  authority?: string;
  /**
   * true when the engine calls `handle` from the server's 'checkContinue' event
   * (the request carries `Expect: 100-continue` and Node has NOT sent 100 yet):
   * the proxy then sends `100 Continue` only once a connection to the upstream is
   * ready, so a client never uploads a body that cannot be forwarded.
   */
  expectContinue?: boolean;
}

/** Client SSL objects by id (a Map), or the snapshot's `ssls` array. */
export type SslLookup = ReadonlyMap<string, SslSnapshot> | readonly SslSnapshot[];

export interface ProxyOptions {
  logger: ProxyLogger;
  /** First passive-health back-off of a node that failed to connect; doubles per failure. */
  backoffBaseMs?: number;
  backoffMaxMs?: number;
  /** `close()`: graceful wait for in-flight requests before destroying the pools. */
  closeTimeoutMs?: number;
  /** A pool replaced by `update()` is closed when idle, destroyed after this at the latest. */
  retireTimeoutMs?: number;
  /** Keep-alive connections per upstream node and worker; null = unlimited. */
  connectionsPerNode?: number | null;
  /** Idle keep-alive connection lifetime when the upstream gives no `Keep-Alive: timeout` hint. */
  keepAliveTimeoutMs?: number;
}

export type FilledProxyOptions = Required<ProxyOptions>;

export const PROXY_DEFAULTS: Readonly<Omit<FilledProxyOptions, 'logger'>> = Object.freeze({ ...defaults.proxy });

function checkMs(name: string, v: unknown): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new TypeError(`${name} must be a number of milliseconds >= 0`);
  }
}

export function fillProxyOptions(o: ProxyOptions): FilledProxyOptions {
  if (!o || typeof o.logger !== 'object' || typeof o.logger.warn !== 'function') {
    throw new TypeError('logger must be an object with info, warn and error methods');
  }
  const f: FilledProxyOptions = { ...PROXY_DEFAULTS, ...stripUndefined(o) } as FilledProxyOptions;
  checkMs('backoffBaseMs', f.backoffBaseMs);
  checkMs('backoffMaxMs', f.backoffMaxMs);
  checkMs('closeTimeoutMs', f.closeTimeoutMs);
  checkMs('retireTimeoutMs', f.retireTimeoutMs);
  checkMs('keepAliveTimeoutMs', f.keepAliveTimeoutMs);
  if (f.connectionsPerNode !== null && (!Number.isInteger(f.connectionsPerNode) || f.connectionsPerNode < 1)) {
    throw new TypeError('connectionsPerNode must be null or an integer greater than 0');
  }
  return f;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] !== undefined) out[k] = o[k];
  return out;
}
