// The exchange over node:http objects: one object per request, a thin layer over
// IncomingMessage/ServerResponse (rawHeaders and writeHead take flat arrays as they are,
// the body is the IncomingMessage itself), so the node engine pays next to nothing for it.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { ConnFacts, Exchange, ResponseWriter } from './exchange';

/**
 * Set on a socket whose response asked for close (a refused request: its framing cannot be
 * trusted). Node's parser has already emitted the requests pipelined behind it by then; the
 * engine serves none of them (they would reach an upstream before the socket closes).
 */
export const CLOSING = Symbol('tlsgate.closing');

export class NodeExchange implements Exchange, ResponseWriter {
  readonly req: IncomingMessage;
  readonly raw: ServerResponse;
  readonly conn: ConnFacts;
  readonly expectContinue: boolean;
  #gone: (() => void) | null = null;

  constructor(req: IncomingMessage, res: ServerResponse, conn: ConnFacts, expectContinue: boolean) {
    this.req = req;
    this.raw = res;
    this.conn = conn;
    this.expectContinue = expectContinue;
  }

  get method(): string {
    return this.req.method ?? 'GET';
  }
  get target(): string {
    return this.req.url ?? '/';
  }
  get httpVersion(): string {
    return this.req.httpVersion;
  }
  get rawHeaders(): string[] {
    return this.req.rawHeaders;
  }
  get bodyDone(): boolean {
    // In the 'request' handler even a request without a body is not `complete` yet.
    if (this.req.complete) return true;
    const h = this.req.headers;
    return h['transfer-encoding'] === undefined && (h['content-length'] === undefined || h['content-length'] === '0');
  }
  get res(): ResponseWriter {
    return this;
  }
  body(): Readable {
    return this.req;
  }

  // --- ResponseWriter ---------------------------------------------------------
  get headersSent(): boolean {
    return this.raw.headersSent;
  }
  get gone(): boolean {
    return this.raw.destroyed;
  }
  writeHead(status: number, reason: string | undefined, headers: string[]): void {
    this.raw.writeHead(status, reason, headers);
  }
  write(chunk: Buffer): boolean {
    return this.raw.write(chunk);
  }
  onDrain(cb: () => void): void {
    this.raw.once('drain', cb);
  }
  end(body?: Buffer | string, trailers?: string[]): void {
    if (trailers !== undefined && trailers.length > 0) {
      const t: Array<[string, string]> = [];
      for (let i = 0; i < trailers.length; i += 2) t.push([trailers[i]!, trailers[i + 1]!]);
      this.raw.addTrailers(t);
    }
    this.onGone(null);
    this.raw.end(body);
  }
  writeContinue(): void {
    this.raw.writeContinue();
  }
  destroy(): void {
    this.onGone(null);
    this.raw.destroy();
  }
  onGone(cb: (() => void) | null): void {
    // One listener per response, added once: once()/off() per request cost a wrapper each.
    if (cb !== null && !this.#listening) {
      this.#listening = true;
      this.raw.on('close', () => {
        const g = this.#gone;
        this.#gone = null;
        if (g !== null) g();
      });
    }
    this.#gone = cb;
  }
  #listening = false;
  closeAfter(): void {
    this.raw.shouldKeepAlive = false;
    (this.req.socket as { [CLOSING]?: boolean })[CLOSING] = true;
  }
}
