// The exchange over one HTTP/2 stream (node:http2, core API: no compat
// Http2ServerRequest/Response objects per request). The request stage sees the same
// exchange as for HTTP/1.1: `:method`, `:path`, the regular headers with `:authority`
// as Host; the response side maps writeHead/write/end onto HEADERS and DATA frames.
import { constants, type OutgoingHttpHeaders, type ServerHttp2Stream } from 'node:http2';
import { Readable } from 'node:stream';
import type { ConnFacts, Exchange, ResponseWriter } from '../proxy';

const { NGHTTP2_NO_ERROR, NGHTTP2_INTERNAL_ERROR } = constants;

/**
 * Connection-specific fields (RFC 9113 §8.2.2) never sent in an h2 response: the stage and
 * upstreams speak HTTP/1.1 and may set them; Node would throw on most of them.
 */
export const H2_CONNECTION_HEADERS = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'http2-settings',
]);

export class H2Exchange implements Exchange, ResponseWriter {
  readonly method: string;
  readonly target: string;
  readonly httpVersion = '2.0';
  readonly rawHeaders: string[];
  readonly conn: ConnFacts;
  readonly expectContinue: boolean;
  readonly stream: ServerHttp2Stream;
  /** The client sent END_STREAM with its HEADERS: there is no body. */
  readonly #noBody: boolean;
  /** The gateway ended, reset or closed the stream: a close is then not the client's reset. */
  settled = false;
  #gone: (() => void) | null = null;
  #closeAfter = false;
  #trailers = false;

  constructor(
    stream: ServerHttp2Stream,
    method: string,
    target: string,
    rawHeaders: string[],
    conn: ConnFacts,
    expectContinue: boolean,
  ) {
    this.stream = stream;
    this.method = method;
    this.target = target;
    this.rawHeaders = rawHeaders;
    this.conn = conn;
    this.expectContinue = expectContinue;
    this.#noBody = stream.endAfterHeaders;
  }

  get bodyDone(): boolean {
    return this.#noBody || this.stream.readableEnded;
  }
  get res(): ResponseWriter {
    return this;
  }
  body(): Readable | null {
    return this.#noBody ? null : new H2Body(this.stream);
  }

  // --- ResponseWriter ---------------------------------------------------------
  get headersSent(): boolean {
    return this.stream.headersSent;
  }
  get gone(): boolean {
    return this.stream.destroyed;
  }
  writeHead(status: number, _reason: string | undefined, headers: string[]): void {
    const out: OutgoingHttpHeaders = { ':status': status };
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!.toLowerCase();
      if (H2_CONNECTION_HEADERS.has(name)) continue;
      const value = headers[i + 1]!;
      const had = out[name];
      if (had === undefined) out[name] = value;
      // Repeated fields: set-cookie stays a list of fields (cookies cannot be joined);
      // others are combined as RFC 9110 §5.3 allows (Node refuses a list for single-value ones).
      else if (name === 'set-cookie') out[name] = Array.isArray(had) ? [...had, value] : [String(had), value];
      else out[name] = `${String(had)}, ${value}`;
    }
    // An upstream announcing trailers gets them relayed: the stream then waits for them.
    this.#trailers = out['trailer'] !== undefined;
    this.stream.respond(out, this.#trailers ? { waitForTrailers: true } : undefined);
  }
  write(chunk: Buffer): boolean {
    return this.stream.write(chunk);
  }
  onDrain(cb: () => void): void {
    this.stream.once('drain', cb);
  }
  end(body?: Buffer | string, trailers?: string[]): void {
    this.onGone(null);
    this.settled = true;
    const s = this.stream;
    if (s.destroyed) return;
    if (this.#trailers) {
      s.once('wantTrailers', () => {
        const t: OutgoingHttpHeaders = {};
        for (let i = 0; i < (trailers?.length ?? 0); i += 2) {
          const name = trailers![i]!.toLowerCase();
          if (!H2_CONNECTION_HEADERS.has(name)) t[name] = trailers![i + 1]!;
        }
        s.sendTrailers(t);
      });
    }
    if (body === undefined) s.end();
    else s.end(body);
    // The request body was not read: RST_STREAM NO_ERROR once the response is out asks the
    // client to stop sending it (RFC 9113 §8.1); Node flushes the response before the reset.
    if (this.#closeAfter && !this.bodyDone) s.close(NGHTTP2_NO_ERROR);
  }
  writeContinue(): void {
    if (!this.stream.destroyed && !this.stream.headersSent) this.stream.additionalHeaders({ ':status': 100 });
  }
  destroy(): void {
    this.onGone(null);
    this.settled = true;
    if (!this.stream.destroyed) this.stream.close(NGHTTP2_INTERNAL_ERROR);
  }
  onGone(cb: (() => void) | null): void {
    if (this.#gone !== null) this.stream.off('close', this.#gone);
    this.#gone = cb;
    if (cb !== null) this.stream.once('close', cb);
  }
  /** Per stream in h2: other streams of the connection are framed apart and keep going. */
  closeAfter(): void {
    this.#closeAfter = true;
  }
}

/**
 * The request body as its own Readable: the upstream client may destroy a body stream
 * once it has ended (undici did, the h1 client on an early answer), and destroying the
 * Http2Stream itself would reset the stream before the response is sent. Backpressure: the
 * stream is paused while this one is full.
 */
class H2Body extends Readable {
  readonly #s: ServerHttp2Stream;
  constructor(s: ServerHttp2Stream) {
    super();
    this.#s = s;
    s.on('data', (d: Buffer) => {
      if (!this.push(d)) s.pause();
    });
    s.once('end', () => this.push(null));
    // Reset by the client mid-body: the upstream request must fail, not look complete.
    s.once('close', () => {
      if (!s.readableEnded) this.destroy(new Error('the client reset the HTTP/2 stream'));
    });
  }
  override _read(): void {
    this.#s.resume();
  }
}
