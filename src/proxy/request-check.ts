// Request checks before routing, the same for both engines: limits, framing headers,
// Host / absolute-form authority, path normalization. Pure: no socket, no engine type.
// The request stage calls checkRequest() once per request and routes on its result.
import type { ErrorCode } from '../errors';
import type { RequestLimits } from '../snapshot/types';
import { hostFromHeader } from '../routing/names';

export interface CheckedRequest {
  /** As received (upper-case by HTTP convention; not changed). */
  method: string;
  /** Normalized path (percent-decoded unreserved, dot segments removed, no duplicate slashes), no query. */
  path: string;
  /** '' or '?' + the query exactly as received. */
  query: string;
  /** What the upstream gets as request target: path + query. */
  target: string;
  /** Normalized authority (no port), from an absolute-form target or else Host; null when absent. */
  host: string | null;
  /** Authority as the client sent it (port kept), for Host / X-Forwarded-Host upstream. */
  authority: string | null;
  /** Declared body length; null when none or chunked. */
  contentLength: number | null;
  /** Transfer-Encoding: chunked. */
  chunked: boolean;
}

export interface RequestRefusal {
  status: 400 | 408 | 413 | 414 | 431;
  code: ErrorCode;
  message: string;
}

export type CheckResult = { ok: true; req: CheckedRequest } | ({ ok: false } & RequestRefusal);

/**
 * rawHeaders: flat [name, value, name, value…] with names as received.
 * Placeholder until the full policy lands: splits the target and reads Host.
 */
export function checkRequest(method: string, target: string, rawHeaders: readonly string[], limits: RequestLimits): CheckResult {
  void limits;
  let hostHeader: string | null = null;
  let contentLength: number | null = null;
  let chunked = false;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (name === 'host') hostHeader ??= rawHeaders[i + 1]!;
    else if (name === 'content-length') contentLength = Number(rawHeaders[i + 1]);
    else if (name === 'transfer-encoding') chunked = true;
  }
  const q = target.indexOf('?');
  const path = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? '' : target.slice(q);
  return {
    ok: true,
    req: {
      method,
      path,
      query,
      target: path + query,
      host: hostFromHeader(hostHeader ?? undefined),
      authority: hostHeader,
      contentLength: chunked ? null : contentLength,
      chunked,
    },
  };
}
