import type { ServerResponse } from 'node:http';
import type { ErrorCode } from '../errors';

/** The gateway's own error responses: small JSON with a stable code. */
export function sendError(res: ServerResponse, status: number, code: ErrorCode, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
