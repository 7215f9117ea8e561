// The node engine's own HTTP parser (llhttp) at the edges: its limits follow the
// listener's, and what it refuses gets a real status line in the gateway's error shape
// instead of Node's bare 400 or a silent close.
//
// Measured on Node 20.20 (raw TLS probes, see README "HTTP parsing: node vs uws"):
// - maxHeadersCount does not refuse: headers past it are dropped silently, so a request
//   with too many headers would reach the request check with a truncated list. It is set
//   one above the listener's max_header_count, so the check sees "too many" and answers 431.
// - maxHeaderSize counts the request line and the header lines together and fails with
//   HPE_HEADER_OVERFLOW. It is set above max_request_line + max_header_bytes, so requests
//   within both limits always reach the request check (exact 414 / 431 there); only larger
//   ones are refused here (414 or 431, see overflowInRequestLine).
// - CONNECT goes to the server's 'connect' event and, with no listener, is closed without
//   a word: it gets a 400 like every other non-origin request form.
// Both values are read by Node per connection (server.maxHeaderSize / maxHeadersCount in
// the connection listener), so getters keep them current across snapshot updates.
import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { ErrorCode } from '../errors';
import type { RequestLimits } from '../snapshot/types';

const ANSWERED = Symbol('tlsgate.answered');

/** Room for the CRLFs and separators of the request line beyond the two limits. */
const SLACK = 1024;

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  408: 'Request Timeout',
  413: 'Content Too Large',
  414: 'URI Too Long',
  431: 'Request Header Fields Too Large',
};

/** Status line, headers and the JSON error body of a refusal written straight to the socket. */
export function rawErrorResponse(status: number, code: ErrorCode, message: string): string {
  const body = JSON.stringify({ error: { code, message } });
  return (
    `HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}\r\n` +
    'content-type: application/json\r\ncache-control: no-store\r\nconnection: close\r\n' +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

/** What a parser error becomes: status, code and message. */
export function classifyClientError(
  err: Error & { code?: string; rawPacket?: Buffer; bytesParsed?: number },
  limits: RequestLimits,
): { status: 400 | 408 | 413 | 414 | 431; code: ErrorCode; message: string } {
  switch (err.code) {
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, code: 'TLSGATE_E_REQUEST_TIMEOUT', message: 'the request headers did not arrive in time' };
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return { status: 413, code: 'TLSGATE_E_BAD_REQUEST', message: 'chunk extensions too large' };
    case 'HPE_HEADER_OVERFLOW':
      if (overflowInRequestLine(err, limits)) {
        const message = `request line longer than ${limits.maxRequestLine} bytes`;
        return { status: 414, code: 'TLSGATE_E_URI_TOO_LONG', message };
      }
      return {
        status: 431,
        code: 'TLSGATE_E_HEADERS_TOO_LARGE',
        message: `request headers larger than ${limits.maxHeaderBytes} bytes`,
      };
    default:
      return { status: 400, code: 'TLSGATE_E_BAD_REQUEST', message: 'malformed request' };
  }
}

/**
 * Node reports one overflow for the request line and the headers together. 414 only when
 * the packet it failed in starts a request and the failure lies in its first line (a target
 * over the limit within one TLS record); otherwise 431. A target so long that it spans TLS
 * records is then answered 431: still a refusal with a status line, and the other way round
 * a browser's oversized Cookie header (the likelier legitimate case) would be told 414.
 * Heads within max_request_line + max_header_bytes never get here: checkRequest answers
 * them exactly.
 */
function overflowInRequestLine(err: { rawPacket?: Buffer; bytesParsed?: number }, limits: RequestLimits): boolean {
  const raw = err.rawPacket;
  if (!raw) return false;
  const head = raw.subarray(0, Math.min(raw.length, err.bytesParsed ?? raw.length, limits.maxRequestLine + 64 * 1024));
  const text = head.toString('latin1');
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+ /.test(text)) return false;
  const nl = text.indexOf('\n');
  return nl < 0 || nl > limits.maxRequestLine;
}

/** The answer to a parser error on `socket`, or a destroy when nothing can be written any more. */
export function answerClientError(
  err: Error & { code?: string; rawPacket?: Buffer; bytesParsed?: number },
  socket: Duplex,
  limits: RequestLimits,
): void {
  const s = socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null; [ANSWERED]?: true };
  // Node keeps feeding later records of the same head to the failed parser and reports the
  // error again: the socket is already answered and lingering; destroying it now would
  // reset the connection before the client reads the answer (measured with a 64 KiB head).
  if (s[ANSWERED]) return;
  const inFlight = s._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  const r = classifyClientError(err, limits);
  s[ANSWERED] = true;
  lingeringEnd(socket, rawErrorResponse(r.status, r.code, r.message));
}

/** How long a refused client may go on sending before the socket is destroyed (nginx: lingering_timeout 5 s). */
const LINGER_MS = 2_000;

/**
 * Writes the answer and half-closes, then reads and drops what the client is still sending
 * for a short while. Closing a socket with unread bytes makes the kernel send a reset, and a
 * client that is still uploading (a 64 KiB head, a body) then loses the answer before it
 * reads it: measured, the 431/414 never reached the client. nginx calls this lingering close.
 */
export function lingeringEnd(socket: Duplex, answer: string): void {
  socket.on('data', () => undefined);
  socket.resume();
  socket.end(answer);
  setTimeout(() => socket.destroy(), LINGER_MS).unref();
}

/**
 * Sets the parser limits of a node:http(s) server from the listener's (read at each new
 * connection) and answers parser errors and CONNECT. `limits` is called for every connection
 * and error, so a snapshot update applies to the next connection.
 */
export function wireNodeParser(server: EventEmitter, limits: () => RequestLimits): void {
  Object.defineProperty(server, 'maxHeaderSize', {
    configurable: true,
    get: () => limits().maxRequestLine + limits().maxHeaderBytes + SLACK,
  });
  Object.defineProperty(server, 'maxHeadersCount', {
    configurable: true,
    get: () => limits().maxHeaderCount + 1,
  });
  server.on('clientError', (err: Error & { code?: string }, socket: Duplex) => {
    answerClientError(err, socket, limits());
  });
  server.on('connect', (_req: unknown, socket: Duplex) => {
    socket.end(rawErrorResponse(400, 'TLSGATE_E_BAD_REQUEST', 'CONNECT is not supported'));
  });
}
