// Every default in one place.
import { availableParallelism } from 'node:os';

export const defaults = {
  workers: () => Math.max(1, availableParallelism()),
  logLevel: 'info' as const,
  warnDays: 30, // days before not-after that a certificate is reported as expiring
  drainTimeout: 10_000, // 10 s: SIGTERM waits this long for in-flight requests
  engine: 'node' as const,
  sslType: 'server' as const,
  sslProtocols: ['TLSv1.2', 'TLSv1.3'] as const,
  sslStatus: 'enabled' as const,
  // Mozilla "intermediate" for TLS 1.2, minus DHE: ECDHE key exchange and AEAD only (no
  // CBC, no 3DES, no static RSA); TLS 1.3 suites are added by the engines.
  sslCiphers: [
    'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
    'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
  ].join(':'),
  clientDepth: 1, // intermediates allowed between a client certificate and its CA
  upstreamScheme: 'http' as const,
  nodeWeight: 1,
  connectTimeout: 5_000, // 5 s
  readTimeout: 30_000, // 30 s
  upstreamVerify: true,
  clientIdentityHeaders: {
    subject: 'x-client-cert-subject',
    fingerprint: 'x-client-cert-fingerprint',
    verify: 'x-client-verify',
  },
  respondStatus: 200,
  // Edge limits (nginx / HAProxy as reference; README "Limits and timeouts").
  limits: {
    maxHeaderCount: 100, // request headers → 431
    maxHeaderBytes: 32 * 1024, // 32 KiB of request header lines → 431
    maxRequestLine: 8 * 1024, // 8 KiB request line → 414
    maxBodySize: null as number | null, // bytes → 413; null = unlimited (streamed with backpressure)
  },
  timeouts: {
    handshake: 10_000, // 10 s for the TLS handshake to finish
    requestHeader: 30_000, // 30 s for a request's headers to arrive → 408
    keepAlive: 60_000, // 60 s idle between keep-alive requests
  },
  maxConnections: 10_000, // per worker and listener; new connections beyond it are refused
  workerAckTimeout: 10_000, // 10 s for a worker to build and ack a snapshot
  fileMaxSize: 1024 * 1024, // 1 MiB: largest `$file://` value (a FIFO or /dev/zero is refused, not read)
  fileRefreshInterval: 60_000, // 60 s: `$file://` re-read in the background, in case a watch event was missed
  reloadDebounce: 25, // ms: editors write a file in several steps (rename, write, chmod)
};
