// The one shape of a gateway-made error response: {"error":{"code","message"}}.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ErrorCode } from '../errors';

export function sendError(req: IncomingMessage, res: ServerResponse, status: number, code: ErrorCode, message: string): void {
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { code, message } });
  const headers: Record<string, string | number> = {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  };
  // A request body we did not read (upload to a dead upstream, or Expect: 100-continue
  // never answered) would otherwise be drained byte by byte to keep the connection.
  if (!req.complete) headers['connection'] = 'close';
  res.writeHead(status, headers);
  res.end(req.method === 'HEAD' ? undefined : body);
}
