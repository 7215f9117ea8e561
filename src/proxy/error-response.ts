// The one shape of a gateway-made error response: {"error":{"code","message"}}.
import type { ErrorCode } from '../errors';
import type { Exchange } from './exchange';

/**
 * close: end the connection after this answer. Also forced when the request body was
 * not read (an upload to a dead upstream, Expect: 100-continue never answered): it would
 * otherwise be drained byte by byte to keep the connection.
 * extra: more headers, flat [name, value, …] (e.g. Allow for 405).
 */
export function sendError(ex: Exchange, status: number, code: ErrorCode, message: string, close = false, extra?: string[]): void {
  const res = ex.res;
  if (res.headersSent || res.gone) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { code, message } });
  const headers = ['content-type', 'application/json', 'content-length', String(Buffer.byteLength(body)), 'cache-control', 'no-store'];
  if (extra !== undefined) headers.push(...extra);
  if (close || !ex.bodyDone) {
    headers.push('connection', 'close');
    res.closeAfter();
  }
  res.writeHead(status, undefined, headers);
  res.end(ex.method === 'HEAD' ? undefined : body);
}
