// The etcd3 client as tlsgate uses it: TLS and client certificates, no client-side circuit
// breaker, reconnects capped at about 1 s, and TLS failures explained by their cause.
import { connect as tlsConnect, rootCertificates } from 'node:tls';
import { Etcd3, type IOptions } from 'etcd3';
import type { EtcdSettings } from './settings';

type FaultHandling = NonNullable<IOptions['faultHandling']>;
type Policy = ReturnType<NonNullable<FaultHandling['host']>>;
type Backoff = FaultHandling['watchBackoff'];

/** Reconnect back-off: 50 ms doubling, capped so a change made right after etcd returns is seen in < 2 s. */
export const BACKOFF_FIRST_MS = 50;
export const BACKOFF_MAX_MS = 1_000;

/** Runs each call once: tlsgate's own loop retries (the default breaker would hold calls for 5 s). */
const once = {
  // async: etcd3 reports a failure by a callback that throws, and expects a rejection back.
  execute: async <T>(fn: (ctx: { signal: AbortSignal }) => PromiseLike<T> | T, signal?: AbortSignal): Promise<T> =>
    fn({ signal: signal ?? new AbortController().signal }),
  onSuccess: () => ({ dispose: () => undefined }),
  onFailure: () => ({ dispose: () => undefined }),
} as unknown as Policy;

function backoff(ms: number): Backoff {
  return {
    duration: ms,
    next: () => backoff(Math.min(BACKOFF_MAX_MS, ms * 2)),
  } as Backoff;
}

export function createClient(s: EtcdSettings): Etcd3 {
  const tls = s.tls;
  const secure = !!tls || s.endpoints.some((e) => e.startsWith('https://'));
  return new Etcd3({
    hosts: s.endpoints,
    ...(secure
      ? {
          credentials: {
            rootCertificate: Buffer.from(tls?.ca ?? rootCertificates.join('\n')),
            ...(tls?.cert && tls.key ? { certChain: Buffer.from(tls.cert), privateKey: Buffer.from(tls.key) } : {}),
          },
        }
      : {}),
    ...(s.auth ? { auth: { username: s.auth.username, password: s.auth.password } } : {}),
    dialTimeout: 2_000,
    // Unary calls (list, txn) must not hang while etcd is away: the watch loop retries.
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + 5_000 }),
    grpcOptions: {
      'grpc.initial_reconnect_backoff_ms': BACKOFF_FIRST_MS * 2,
      'grpc.max_reconnect_backoff_ms': BACKOFF_MAX_MS,
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      // One list holds every object: 10k SSL objects with PEM values are ~30 MB, past gRPC's 4 MB default.
      'grpc.max_receive_message_length': 1024 * 1024 * 1024,
    },
    faultHandling: { host: () => once, global: once, watchBackoff: backoff(BACKOFF_FIRST_MS) },
  });
}

/**
 * gRPC reports a TLS failure as "14 UNAVAILABLE: No connection established": one TLS handshake
 * of our own (HTTP/2 preface, waits for the server's SETTINGS) names the cause instead.
 * Resolves null when TLS works (the failure is elsewhere).
 */
export function diagnoseTls(endpoint: string, s: EtcdSettings, timeoutMs = 2_000): Promise<string | null> {
  const url = new URL(endpoint.includes('://') ? endpoint : `https://${endpoint}`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 2379);
  return new Promise((resolve) => {
    const t = s.tls ?? {};
    const sock = tlsConnect({
      host,
      port,
      ...(host.match(/^[\d.]+$|:/) ? {} : { servername: host }),
      ALPNProtocols: ['h2'],
      ...(t.ca ? { ca: t.ca } : {}),
      ...(t.cert && t.key ? { cert: t.cert, key: t.key } : {}),
    });
    const done = (v: string | null): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(`no TLS answer from ${host}:${port} within ${timeoutMs} ms`), timeoutMs);
    sock.once('secureConnect', () => {
      // Preface + an empty SETTINGS frame: a server that accepted our certificate answers with its SETTINGS.
      sock.write(
        Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]),
      );
    });
    sock.once('data', () => done(null));
    sock.once('error', (err: NodeJS.ErrnoException) => done(explainTls(err, host, port, s)));
    sock.once('close', () => done(`${host}:${port} closed the TLS connection`));
  });
}

/** etcd's auth answers, named with the config field to fix (never the password). */
export function explainAuth(message: string, s: EtcdSettings): string {
  const user = s.auth?.username;
  if (/authentication failed|invalid user ID or password/i.test(message))
    return `etcd authentication failed for user "${user ?? '?'}" (config_store.etcd.auth): ${message}`;
  if (/permission denied/i.test(message))
    return user
      ? `etcd user "${user}" may not read or watch ${s.prefix}/: permission denied (grant it a role with ` +
          `readwrite on the prefix) — ${message}`
      : `etcd refused to read ${s.prefix}/: permission denied; etcd auth is on and config_store.etcd.auth is ` +
          `not set (or the client certificate's CN names no etcd user with that permission) — ${message}`;
  if (/user name (is empty|not found)/i.test(message) && !user)
    return `etcd auth is on: set config_store.etcd.auth (username, password) — ${message}`;
  return message;
}

function explainTls(err: NodeJS.ErrnoException, host: string, port: number, s: EtcdSettings): string {
  const code = err.code ?? 'ERROR';
  const at = `TLS to etcd ${host}:${port} failed`;
  if (code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'ETIMEDOUT' || code === 'EHOSTUNREACH')
    return `etcd ${host}:${port} cannot be reached (${code})`;
  if (/CERTIFICATE_REQUIRED|BAD_CERTIFICATE|HANDSHAKE_FAILURE/i.test(code) && !s.tls?.cert)
    return (
      `${at}: etcd asks for a client certificate and none is configured ` + `(config_store.etcd.tls.cert/key) [${code}]`
    );
  if (/CERTIFICATE_REQUIRED|BAD_CERTIFICATE|UNKNOWN_CA|DECRYPT_ERROR/i.test(code))
    return (
      `${at}: etcd refused our client certificate ` +
      `(config_store.etcd.tls.cert is not signed by a CA etcd trusts) [${code}]`
    );
  if (/SELF_SIGNED|UNABLE_TO_(GET|VERIFY)|CERT_UNTRUSTED|LEAF_SIGNATURE/.test(code))
    return `${at}: the etcd server certificate does not chain to config_store.etcd.tls.ca [${code}]`;
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return `${at}: the etcd server certificate does not name ${host} [${code}]`;
  if (code === 'CERT_HAS_EXPIRED') return `${at}: the etcd server certificate has expired [${code}]`;
  return `${at}: ${err.message} [${code}]`;
}
