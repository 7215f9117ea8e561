// Responses written by the uws engine itself: same status lines and JSON bodies as the node engine.
import { STATUS_CODES } from 'node:http';
import type { ErrorCode } from '../errors';
import type { HttpResponse } from './uws-load';

export function writeStatus(res: HttpResponse, status: number): void {
  res.writeStatus(`${status} ${STATUS_CODES[status] ?? 'Unknown'}`);
}

/** The gateway's own error responses, same JSON as the node engine. Call corked (in the handler or inside res.cork). */
export function sendError(res: HttpResponse, status: number, code: ErrorCode, message: string, close = false): void {
  writeStatus(res, status);
  res.writeHeader('content-type', 'application/json');
  if (close) res.writeHeader('connection', 'close');
  res.end(JSON.stringify({ error: { code, message } }), close);
}
