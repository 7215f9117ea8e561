// Upstream client (h1-client.ts) / socket / TLS errors → one stable gateway code and HTTP status.
import { UpstreamError, type ErrorCode } from '../errors';

export type FailurePhase = 'connect' | 'request';

interface Classified {
  code: ErrorCode;
  status: number;
  reason: string;
}

const TIMEOUTS = new Set(['H1_CONNECT_TIMEOUT', 'H1_READ_TIMEOUT', 'H1_SEND_TIMEOUT', 'ETIMEDOUT']);
/**
 * The connection went away before any response byte: the request may be replayed (when it
 * has no body) — a node going down, or a keep-alive connection the upstream closed as we
 * reused it.
 */
export const RESETS: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'EPIPE',
  'H1_CLOSED',
  'H1_DESTROYED',
  'ECONNABORTED',
]);
const PROTOCOL = new Set([
  'H1_BAD_RESPONSE',
  'ERR_INVALID_CHAR',
  'ERR_HTTP_INVALID_HEADER_VALUE',
  'ERR_INVALID_HTTP_TOKEN',
  'ERR_HTTP_INVALID_STATUS_CODE',
]);
/** Errors about the request as the client sent it, raised before any byte of it left (or its body lied). */
const REQUEST = new Set(['H1_REQ_INVALID', 'H1_REQ_LENGTH']);

/** OpenSSL verification results surface as bare codes (X509_V_ERR_* without the prefix). */
const CERT_CODES =
  /^(UNABLE_TO_|SELF_SIGNED_|DEPTH_ZERO_|CERT_|HOSTNAME_MISMATCH|ERR_TLS_|ERR_SSL_|INVALID_CA|INVALID_PURPOSE|PATH_LENGTH)/;

export function errorCodeOf(err: unknown): string {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : '';
}

export function isTlsFailure(err: unknown): boolean {
  return CERT_CODES.test(errorCodeOf(err));
}

/** The request was refused (bad path, header, body length): the client's fault, no retry, no health mark. */
export function isRequestError(err: unknown): boolean {
  return REQUEST.has(errorCodeOf(err));
}

export function classify(err: unknown, phase: FailurePhase): Classified {
  const code = errorCodeOf(err);
  const name = (err as Error | null)?.name ?? 'Error';
  const reason = `${code || name}: ${String((err as Error | null)?.message ?? err)}`;
  if (REQUEST.has(code)) return { code: 'TLSGATE_E_BAD_REQUEST', status: 400, reason };
  if (TIMEOUTS.has(code)) return { code: 'TLSGATE_E_UPSTREAM_TIMEOUT', status: 504, reason };
  if (CERT_CODES.test(code)) return { code: 'TLSGATE_E_UPSTREAM_TLS', status: 502, reason };
  if (phase === 'connect') return { code: 'TLSGATE_E_UPSTREAM_CONNECT', status: 502, reason };
  if (RESETS.has(code)) return { code: 'TLSGATE_E_UPSTREAM_RESET', status: 502, reason };
  if (PROTOCOL.has(code) || code.startsWith('HPE_') || name === 'HTTPParserError')
    return { code: 'TLSGATE_E_UPSTREAM_PROTOCOL', status: 502, reason };
  return { code: 'TLSGATE_E_UPSTREAM_RESET', status: 502, reason };
}

/** The message shown to the client: names the upstream, never a node address or a TLS detail. */
const CLIENT_MESSAGES: Partial<Record<ErrorCode, string>> = {
  TLSGATE_E_UPSTREAM_CONNECT: 'cannot connect to the upstream',
  TLSGATE_E_UPSTREAM_TLS: 'TLS to the upstream failed',
  TLSGATE_E_UPSTREAM_RESET: 'the upstream closed the connection',
  TLSGATE_E_UPSTREAM_TIMEOUT: 'the upstream did not answer in time',
  TLSGATE_E_UPSTREAM_PROTOCOL: 'the upstream sent an invalid response',
  TLSGATE_E_BAD_REQUEST: 'the request cannot be forwarded as sent',
};

export function toUpstreamError(
  err: unknown,
  phase: FailurePhase,
  upstreamId: string,
): UpstreamError & { reason: string } {
  const c = classify(err, phase);
  const e = new UpstreamError(c.code, c.status, `upstream ${upstreamId}: ${CLIENT_MESSAGES[c.code] ?? c.code}`, {
    cause: err,
  }) as UpstreamError & {
    reason: string;
  };
  e.reason = c.reason;
  return e;
}
