// The request stage's exchange over a uWS HttpRequest/HttpResponse. The rules of
// uWS 20.30 that shape it (measured):
// - HttpRequest is valid only inside the handler: method, target and headers are copied
//   in the constructor, which the handler calls synchronously.
// - onAborted is set before any async work, and after an abort or a completed end() the
//   response must never be touched again ("uWS.HttpResponse must not be accessed after
//   uWS.HttpResponse.onAborted", which ends the process): every access checks `#over`,
//   the request body's pause/resume included.
// - onData is registered in the handler too, so a body that arrives early (with the
//   headers) or late is buffered in a Readable with backpressure (res.pause while the
//   upstream takes no more, res.resume when it reads again).
// - Every write outside the handler is corked, in slices that fit the 16 KB cork buffer
//   (see write()).
// - uWS frames the body itself: write() means chunked, end(body) means Content-Length. A
//   sized upstream body up to SMALL_BODY is collected and sent with the head in one write.
// - uWS answers `Expect: 100-continue` itself, before the handler runs: writeContinue is a no-op.
// - Header names arrive lower-cased (uWS's parser folds them in place); order and
//   duplicates are kept (no Cookie merging).
import { STATUS_CODES } from 'node:http';
import { Readable } from 'node:stream';
import type { ClientIdentity, ConnFacts, Exchange, ResponseWriter } from '../proxy';
import type { SslSnapshot } from '../snapshot/types';
import type { HttpRequest, HttpResponse } from './uws-load';

/** Sized upstream bodies up to this are sent with the headers in one write (16 KB: one TLS record). */
const SMALL_BODY = 16_000;
/** Fits uWS's cork buffer (16 KB) with the chunk-size line around it. */
const CORK_SLICE = 16_000;
/** Set by uWS itself, or by us from the framing mode. */
const ENGINE_FRAMED = new Set(['content-length', 'transfer-encoding', 'date', 'connection', 'keep-alive']);

const ENGINE_FRAMED_LENGTHS = new Set([...ENGINE_FRAMED].map((n) => n.length));

const statusLines = new Map<number, string>();
function statusLine(status: number): string {
  let l = statusLines.get(status);
  if (l === undefined) statusLines.set(status, (l = `${status} ${STATUS_CODES[status] ?? 'Unknown'}`));
  return l;
}

/** State of the header scan in the constructor (one at a time: the handler is synchronous). */
const NO_HEADERS: string[] = [];
const scan = { headers: NO_HEADERS, hasBody: false, close: false };
function scanHeader(k: string, v: string): void {
  scan.headers.push(k, v);
  if (k === 'content-length') scan.hasBody ||= v !== '0';
  else if (k === 'transfer-encoding') scan.hasBody = true;
  else if (k === 'connection') scan.close ||= /(?:^|,)\s*close\s*(?:,|$)/i.test(v);
}

/** How the response body leaves: none (HEAD/204/304), small (collected, one write) or streamed (chunked). */
type Mode = 'none' | 'small' | 'stream';

export class UwsExchange implements Exchange, ResponseWriter, ConnFacts {
  readonly method: string;
  readonly target: string;
  readonly rawHeaders: string[] = [];
  readonly expectContinue = false;
  // uWS cannot verify client certificates per SNI: a uws listener refuses mTLS objects.
  readonly ssl: SslSnapshot | undefined = undefined;
  readonly authorized = false;

  readonly #res: HttpResponse;
  readonly #done: (status: number) => void;
  #body: Readable | null = null;
  #bodyDone = true;
  #paused = false;
  /** Aborted by the client, or ended: the response must not be touched any more. */
  #over = false;
  #aborted = false;
  #gone: (() => void) | null = null;
  #drain: (() => void) | null = null;
  #writableSet = false;
  #inHandler = true;
  /** The client said Connection: close, or the stage asked for it. */
  #close: boolean;
  // The head, written with the first body bytes (one corked write).
  #status = 0;
  #headers: string[] | null = null;
  #headSent = false;
  #mode: Mode = 'stream';
  #length = '';
  #parts: Buffer[] | null = null;

  /** Call synchronously inside the uWS handler. done(status) runs once, when the exchange is over. */
  constructor(res: HttpResponse, req: HttpRequest, close: boolean, done: (status: number) => void) {
    this.#res = res;
    this.#done = done;
    this.method = req.getCaseSensitiveMethod().toUpperCase();
    const q = req.getQuery();
    this.target = q ? `${req.getUrl()}?${q}` : req.getUrl();
    // One module-level callback instead of a closure per request (forEach calls it per header).
    scan.headers = this.rawHeaders;
    scan.hasBody = false;
    scan.close = close;
    req.forEach(scanHeader);
    scan.headers = NO_HEADERS;
    this.#close = scan.close;
    res.onAborted(this.#onAborted);
    if (scan.hasBody) {
      this.#bodyDone = false;
      // Closures made only for a request with a body (most have none).
      this.#body = new Readable({ read: () => this.#resumeClient() });
      res.onData((chunk, isLast) => this.#onData(chunk, isLast));
    }
  }

  #remote: string | null = null;
  /** Read on demand (only a proxied request needs it), never after the response is over. */
  get remoteAddress(): string {
    if (this.#remote === null) {
      if (this.#over) return '';
      this.#remote = Buffer.from(this.#res.getRemoteAddressAsText()).toString('latin1');
    }
    return this.#remote;
  }

  get conn(): ConnFacts {
    return this;
  }
  get res(): ResponseWriter {
    return this;
  }
  get bodyDone(): boolean {
    return this.#bodyDone;
  }
  body(): Readable | null {
    return this.#body;
  }
  clientIdentity(): ClientIdentity | undefined {
    return undefined;
  }

  readonly #onAborted = (): void => {
    this.#aborted = true;
    this.#finish(499);
    const b = this.#body;
    if (b !== null && !this.#bodyDone) b.destroy(new Error('client closed the connection'));
    const g = this.#gone;
    this.#gone = null;
    if (g !== null) g();
  };

  #onData(chunk: ArrayBuffer, isLast: boolean): void {
    const b = this.#body!;
    // uWS neuters the ArrayBuffer when the callback returns: copy it.
    if (chunk.byteLength > 0 && !b.push(Buffer.from(new Uint8Array(chunk)))) {
      if (!this.#over && !this.#paused) {
        this.#paused = true;
        this.#res.pause();
      }
    }
    if (isLast) {
      this.#bodyDone = true;
      b.push(null);
      // The Readable never asks for more once it has ended: a socket left paused here
      // would never read the next request on this connection (measured: the keep-alive
      // connection stalled, then reset).
      this.#resumeClient();
    }
  }

  #resumeClient(): void {
    if (this.#paused && !this.#over) {
      this.#paused = false;
      this.#res.resume();
    }
  }

  #finish(status: number): void {
    if (this.#over) return;
    this.#over = true;
    this.#done(status);
  }

  // --- ResponseWriter ---------------------------------------------------------
  get headersSent(): boolean {
    return this.#headers !== null;
  }
  get gone(): boolean {
    return this.#aborted;
  }

  writeHead(status: number, _reason: string | undefined, headers: string[]): void {
    if (this.#over || this.#headers !== null) return;
    this.#status = status;
    this.#headers = headers;
    let length = '';
    for (let i = 0; i < headers.length; i += 2) {
      const k = headers[i]!;
      // 'content-length' is 14 characters: most names are skipped without lower-casing them.
      if (k.length === 14 && k.toLowerCase() === 'content-length') length = headers[i + 1]!;
    }
    this.#length = length;
    if (this.method === 'HEAD' || status === 204 || status === 304) this.#mode = 'none';
    else if (length !== '' && Number(length) <= SMALL_BODY) {
      this.#mode = 'small';
      this.#parts = [];
    } else this.#mode = 'stream';
  }

  /** Status line and headers into the cork buffer; call inside res.cork. */
  #writeHead(): void {
    this.#headSent = true;
    const res = this.#res;
    res.writeStatus(statusLine(this.#status));
    const h = this.#headers!;
    for (let i = 0; i < h.length; i += 2) {
      const k = h[i]!;
      if (!ENGINE_FRAMED_LENGTHS.has(k.length) || !ENGINE_FRAMED.has(k.toLowerCase())) res.writeHeader(k, h[i + 1]!);
    }
    if (this.#close) res.writeHeader('connection', 'close');
  }

  write(chunk: Buffer): boolean {
    if (this.#over || this.#headers === null) return true;
    if (this.#mode === 'none') return true;
    if (this.#mode === 'small') {
      this.#parts!.push(chunk);
      return true;
    }
    let ok = true;
    const res = this.#res;
    // In uWS 20.30 a corked write larger than what is left of the cork buffer, on a socket
    // with backpressure, loses the data after its chunk-size line (AsyncSocket::uncork
    // returns before writing it; clients failed with "Expected LF after chunk data"). A
    // slice that fits is copied into the cork buffer and flushed in order.
    for (let i = 0; i < chunk.length; i += CORK_SLICE) {
      const slice = chunk.subarray(i, i + CORK_SLICE);
      res.cork(() => {
        if (!this.#headSent) this.#writeHead();
        ok = res.write(slice) && ok;
      });
    }
    return ok;
  }

  onDrain(cb: () => void): void {
    if (this.#over) return;
    this.#drain = cb;
    if (this.#writableSet) return;
    this.#writableSet = true;
    this.#res.onWritable(() => {
      const d = this.#drain;
      this.#drain = null;
      if (d !== null) d();
      return true;
    });
  }

  end(body?: Buffer | string): void {
    if (this.#over) return;
    this.#gone = null;
    // Inside the handler uWS has corked the socket already: no closure, no second cork.
    if (this.#inHandler) this.#end(body);
    else this.#res.cork(() => this.#end(body));
    this.#finish(this.#status);
  }

  /** The uWS handler that made this exchange has returned: writes from now on must cork. */
  leftHandler(): void {
    this.#inHandler = false;
  }

  #end(body: Buffer | string | undefined): void {
    const res = this.#res;
    if (this.#mode === 'none') {
      this.#writeHead();
      // In 20.30 endWithoutBody(n) writes `Content-Length: n` and then waits for n body
      // bytes: the response never completes and the next request on the connection is
      // dropped (measured; uWS fixed it in 2025). endWithoutBody(undefined, …) writes
      // `Content-Length: 9223372036854775808`. So: the length as our own header (none for
      // a 204, RFC 9110 §8.6), and endWithoutBody() without arguments, complete at once
      // (Connection: close is then the client's cue; uWS keeps the socket).
      const n = Number(this.#length);
      const sized = this.#length !== '' && Number.isSafeInteger(n) && n >= 0;
      if (this.#status !== 204 && sized) res.writeHeader('content-length', this.#length);
      res.endWithoutBody();
      return;
    }
    if (this.#mode === 'small') {
      const parts = this.#parts!;
      this.#writeHead();
      if (parts.length === 0) {
        // A direct answer: the body as given (uWS takes a string), nothing collected.
        res.end(body ?? '', this.#close);
        return;
      }
      if (body !== undefined) parts.push(typeof body === 'string' ? Buffer.from(body) : body);
      res.end(parts.length === 1 ? parts[0]! : Buffer.concat(parts), this.#close);
      return;
    }
    if (!this.#headSent) this.#writeHead();
    res.end(body, this.#close);
  }

  writeContinue(): void {}

  destroy(): void {
    if (this.#over) return;
    this.#gone = null;
    this.#finish(this.#status || 502);
    this.#res.close();
  }

  onGone(cb: (() => void) | null): void {
    this.#gone = cb;
  }

  closeAfter(): void {
    this.#close = true;
  }
}
