// A keep-alive HTTP/1.1 client to one upstream node: what the proxy path needs and no more.
// One write of the request head, the body streamed with backpressure, the response parsed by
// Node's own llhttp binding (the parser node:http uses), the response body streamed with
// pause/resume toward the client. No pipelining: one request per connection at a time.
//
// Why not undici's Pool: measured in bench/proxy-cpu.ts (`mini` vs `dispatch`), its per-request
// bookkeeping (request objects, kQueue, timers, its wasm parser copying into JS) cost ~18 µs CPU
// per proxied request more than this shape on this machine.
//
// Strictness toward the upstream (it may be hostile or broken): the parser runs without any
// leniency (two Content-Length, Content-Length with Transfer-Encoding, bad chunk sizes are
// errors), a connection is reused only after a complete response to a completely written
// request, with keep-alive allowed by the upstream, and with no byte after that response.
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import type { Readable } from 'node:stream';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { HTTPParser } = require('_http_common') as { HTTPParser: ParserCtor };
interface Parser {
  initialize(type: number, resource: object, maxHeaderSize?: number, lenient?: number): void;
  execute(b: Buffer): number | Error;
  finish(): number | Error | undefined;
  [k: number]: unknown;
}
type ParserCtor = (new () => Parser) & {
  RESPONSE: number;
  kOnMessageBegin: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
};

/** Codes of the errors this client raises itself (socket and TLS errors keep theirs). */
export type H1Code =
  | 'H1_CONNECT_TIMEOUT'
  | 'H1_READ_TIMEOUT'
  | 'H1_SEND_TIMEOUT'
  | 'H1_CLOSED'
  | 'H1_TRUNCATED'
  | 'H1_DESTROYED'
  | 'H1_BAD_RESPONSE'
  | 'H1_REQ_INVALID'
  | 'H1_REQ_LENGTH';

export class H1Error extends Error {
  readonly code: H1Code;
  constructor(code: H1Code, message: string) {
    super(message);
    this.code = code;
  }
}

export interface H1Handler {
  /** The connection is ready and the request is about to be written; abort() ends it with onError. */
  onConnect(abort: (err: Error) => void): void;
  /** Final response head (1xx are consumed here). headers: flat [name, value, …] as received. */
  onHeaders(status: number, headers: string[], resume: () => void, statusText: string): boolean;
  /** false: stop reading until resume() (given in onHeaders) is called. */
  onData(chunk: Buffer): boolean;
  onComplete(trailers: string[] | null): void;
  onError(err: Error): void;
}

export interface H1Request {
  method: string;
  /** Request target (origin-form). */
  path: string;
  /** Flat [name, value, …]; no Transfer-Encoding (the client frames the body). */
  headers: string[];
  body: Readable | null;
}

export interface H1Options {
  host: string;
  port: number;
  /** `host:port` sent as Host when the request has none. */
  authority: string;
  /** TLS to the node (servername, ca, cert, key, rejectUnauthorized); null: plain TCP. */
  tls: ConnectionOptions | null;
  connectTimeoutMs: number;
  /** Idle time allowed while waiting for response bytes (not while paused for a slow client). */
  readTimeoutMs: number;
  /** Time the upstream may take to accept request body bytes; 0: no limit. */
  sendTimeoutMs: number;
  /** Idle keep-alive lifetime when the upstream gives no `Keep-Alive: timeout` hint. */
  idleTimeoutMs: number;
  /** Idle connections kept; more are closed as their responses end. */
  maxIdle: number;
  /** Open connections at most (requests wait in order); null: unlimited. */
  maxConnections: number | null;
}

const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// eslint-disable-next-line no-control-regex
const BAD_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const BAD_PATH = /[^\x21-\xff]/;
function noop(): void {}

/** Methods whose request without a body still says `content-length: 0` (RFC 9110 §8.6). */
const PAYLOAD_METHODS = new Set(['POST', 'PUT', 'PATCH']);
/** An upstream's `Keep-Alive: timeout=N` is trusted minus this margin (the close may cross our reuse). */
const HINT_MARGIN_MS = 1_000;

const enum St {
  Connecting,
  Busy,
  Idle,
  Closed,
}

class Conn {
  readonly #pool: H1Pool;
  readonly socket: Socket;
  readonly #parser: Parser;
  #st = St.Connecting;
  #h: H1Handler | null = null;
  #req: H1Request | null = null;
  #head = false;
  #isHead = false;
  /** The current response is a 1xx: its message end is not the request's. */
  #interim = false;
  /** The final response was fully read. */
  #done = false;
  #bodySent = true;
  #reusable = true;
  #paused = false;
  #idleMs: number;
  #headers: string[] = [];
  #trailers: string[] | null = null;
  #sendTimer: NodeJS.Timeout | null = null;
  #bodyLen = -1;
  #bodyCount = 0;

  constructor(pool: H1Pool, o: H1Options, session: Buffer | undefined) {
    this.#pool = pool;
    this.#idleMs = o.idleTimeoutMs;
    if (o.tls !== null) {
      const s = tlsConnect({ ...o.tls, host: o.host, port: o.port, ...(session ? { session } : {}) });
      s.on('session', (sess: Buffer) => pool.saveSession(sess));
      s.once('secureConnect', this.#onConnected);
      this.socket = s;
    } else {
      this.socket = netConnect({ host: o.host, port: o.port });
      this.socket.once('connect', this.#onConnected);
    }
    this.socket.setNoDelay(true);
    this.socket.setTimeout(o.connectTimeoutMs);
    this.socket.on('timeout', this.#onTimeout);
    this.socket.on('data', this.#onData);
    this.socket.on('end', this.#onEnd);
    this.socket.on('error', this.#onError);
    this.socket.on('close', this.#onClose);
    const p = new HTTPParser();
    p.initialize(HTTPParser.RESPONSE, {});
    p[HTTPParser.kOnMessageBegin] = this.#onMessageBegin;
    p[HTTPParser.kOnHeaders] = this.#onHeaderChunk;
    p[HTTPParser.kOnHeadersComplete] = this.#onHeadersComplete;
    p[HTTPParser.kOnBody] = this.#onBody;
    p[HTTPParser.kOnMessageComplete] = this.#onMessageComplete;
    this.#parser = p;
  }

  /** While idle: when the pool must close it rather than reuse it (Date.now() ms). */
  idleUntil = 0;

  get idle(): boolean {
    return this.#st === St.Idle && !this.socket.destroyed && !this.socket.readableEnded;
  }

  get busy(): boolean {
    return this.#st === St.Busy || (this.#st === St.Connecting && this.#h !== null);
  }

  run(req: H1Request, h: H1Handler): void {
    this.#h = h;
    this.#req = req;
    this.#head = false;
    this.#done = false;
    this.#interim = false;
    this.#headers = [];
    this.#trailers = null;
    if (this.#st === St.Idle) this.#start();
  }

  readonly #onConnected = (): void => {
    if (this.#st !== St.Connecting) return;
    this.socket.setKeepAlive(true, 60_000);
    // Set once: each socket.setTimeout() call allocates a new timer (≈ 1-2 µs a request when it
    // was set per request and per idle period); the idle deadline is checked by the pool instead.
    this.socket.setTimeout(this.#pool.o.readTimeoutMs);
    if (this.#h === null) {
      this.#toIdle();
      this.#pool.released(this);
      return;
    }
    this.#start();
  };

  #start(): void {
    const req = this.#req!;
    const h = this.#h!;
    this.#st = St.Busy;
    let head: string;
    try {
      head = this.#writeHead(req);
    } catch (err) {
      // Refused before any byte left: the connection stays good.
      this.#h = null;
      this.#req = null;
      this.#toIdle();
      this.#pool.released(this);
      h.onError(err as Error);
      return;
    }
    h.onConnect(this.#abort);
    if (this.#h !== h) return; // aborted in onConnect
    this.#isHead = req.method === 'HEAD';
    if (req.body === null) {
      this.#bodySent = true;
      this.socket.write(head, 'latin1');
      return;
    }
    this.#bodySent = false;
    this.socket.write(head, 'latin1');
    this.#pump(req.body);
  }

  #writeHead(req: H1Request): string {
    if (!TOKEN.test(req.method)) throw new H1Error('H1_REQ_INVALID', 'invalid request method');
    if (BAD_PATH.test(req.path)) throw new H1Error('H1_REQ_INVALID', 'invalid request target');
    let head = `${req.method} ${req.path} HTTP/1.1\r\n`;
    let host = false;
    let len = -1;
    const hs = req.headers;
    for (let i = 0; i < hs.length; i += 2) {
      const name = hs[i]!;
      const value = hs[i + 1]!;
      if (!TOKEN.test(name)) throw new H1Error('H1_REQ_INVALID', 'invalid header name');
      if (BAD_VALUE.test(value)) throw new H1Error('H1_REQ_INVALID', `invalid value of header ${name}`);
      if (name.length === 4 && name.toLowerCase() === 'host') host = true;
      else if (name.length === 14 && name.toLowerCase() === 'content-length') {
        if (!/^\d{1,15}$/.test(value) || (len >= 0 && Number(value) !== len)) {
          throw new H1Error('H1_REQ_INVALID', 'invalid content-length');
        }
        len = Number(value);
      } else if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') {
        throw new H1Error('H1_REQ_INVALID', 'transfer-encoding is set by the client');
      }
      head += `${name}: ${value}\r\n`;
    }
    if (!host) head += `host: ${this.#pool.o.authority}\r\n`;
    this.#bodyLen = len;
    this.#bodyCount = 0;
    if (req.body !== null) {
      if (len < 0) head += 'transfer-encoding: chunked\r\n';
    } else if (len < 0 && PAYLOAD_METHODS.has(req.method)) {
      head += 'content-length: 0\r\n';
    }
    return head + '\r\n';
  }

  // --- request body -----------------------------------------------------------
  #body: Readable | null = null;

  #pump(body: Readable): void {
    this.#body = body;
    body.on('data', this.#onBodyData);
    body.on('end', this.#onBodyEnd);
    body.on('error', this.#onBodyError);
    body.on('close', this.#onBodyClose);
    if (body.destroyed) {
      this.#fail(new H1Error('H1_REQ_LENGTH', 'the request body ended early (client aborted)'));
      return;
    }
    if (body.isPaused()) body.resume();
  }

  #unpump(): void {
    const body = this.#body;
    if (body === null) return;
    this.#body = null;
    body.off('data', this.#onBodyData);
    body.off('end', this.#onBodyEnd);
    body.off('error', this.#onBodyError);
    body.off('close', this.#onBodyClose);
    this.socket.off('drain', this.#onSocketDrain);
    this.#clearSendTimer();
  }

  readonly #onBodyData = (chunk: Buffer | string): void => {
    if (typeof chunk === 'string') chunk = Buffer.from(chunk);
    if (chunk.length === 0) return;
    let ok: boolean;
    if (this.#bodyLen >= 0) {
      this.#bodyCount += chunk.length;
      if (this.#bodyCount > this.#bodyLen) {
        this.#fail(new H1Error('H1_REQ_LENGTH', 'the request body is longer than its content-length'));
        return;
      }
      ok = this.socket.write(chunk);
      // Every declared byte is written: an answer from now on is not an early one.
      if (this.#bodyCount === this.#bodyLen) this.#bodySent = true;
    } else {
      this.socket.cork();
      this.socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1');
      this.socket.write(chunk);
      ok = this.socket.write('\r\n', 'latin1');
      this.socket.uncork();
    }
    if (!ok && this.#body !== null) {
      this.#body.pause();
      this.socket.once('drain', this.#onSocketDrain);
      const ms = this.#pool.o.sendTimeoutMs;
      if (ms > 0) this.#sendTimer = setTimeout(this.#onSendTimeout, ms);
    }
  };

  readonly #onSocketDrain = (): void => {
    this.#clearSendTimer();
    if (this.#body !== null) this.#body.resume();
  };

  readonly #onSendTimeout = (): void => {
    this.#sendTimer = null;
    this.#fail(new H1Error('H1_SEND_TIMEOUT', 'the upstream did not accept the request body in time'));
  };

  #clearSendTimer(): void {
    if (this.#sendTimer !== null) {
      clearTimeout(this.#sendTimer);
      this.#sendTimer = null;
    }
  }

  readonly #onBodyEnd = (): void => {
    if (this.#bodyLen >= 0 && this.#bodyCount !== this.#bodyLen) {
      this.#fail(new H1Error('H1_REQ_LENGTH', 'the request body is shorter than its content-length'));
      return;
    }
    if (this.#bodyLen < 0) this.socket.write('0\r\n\r\n', 'latin1');
    this.#unpump();
    const was = this.#bodySent;
    this.#bodySent = true;
    if (this.#done && !was) this.#finish();
  };

  readonly #onBodyError = (err: Error): void => {
    this.#fail(err);
  };

  readonly #onBodyClose = (): void => {
    if (this.#body !== null && !this.#bodySent) {
      this.#fail(new H1Error('H1_REQ_LENGTH', 'the request body ended early (client aborted)'));
    }
  };

  // --- response ---------------------------------------------------------------
  readonly #onData = (d: Buffer): void => {
    const r = this.#parser.execute(d);
    if (typeof r !== 'number') {
      if (this.#st === St.Busy) this.#fail(r);
      else this.socket.destroy();
      return;
    }
    if (this.#done && this.#bodySent && this.#st === St.Busy) this.#finish();
  };

  readonly #onMessageBegin = (): number => {
    // Bytes after a complete response, or on an idle connection: never reuse it.
    if (this.#h === null || this.#done) {
      this.#reusable = false;
      if (this.#st !== St.Busy) this.socket.destroy();
    }
    return 0;
  };

  readonly #onHeaderChunk = (headers: string[]): void => {
    if (this.#head) (this.#trailers ??= []).push(...headers);
    else for (const x of headers) this.#headers.push(x);
  };

  readonly #onHeadersComplete = (
    _maj: number,
    min: number,
    headers: string[] | undefined,
    _method: unknown,
    _url: unknown,
    status: number,
    statusText: string,
    upgrade: boolean,
    keepAlive: boolean,
  ): number => {
    const h = this.#h;
    if (h === null || this.#done) {
      this.#reusable = false;
      return 0;
    }
    let hs = this.#headers;
    if (headers !== undefined) {
      if (hs.length === 0) hs = headers;
      else for (const x of headers) hs.push(x);
    }
    this.#headers = [];
    if (status === 101 || upgrade) {
      this.#fail(new H1Error('H1_BAD_RESPONSE', `unexpected ${status} response`));
      return 0;
    }
    if (status < 200) {
      this.#interim = true;
      return 0;
    }
    this.#head = true;
    if (!keepAlive || min === 0) this.#reusable = false;
    else this.#readHint(hs);
    // A resume of this response only: a late drain of an earlier client must not resume the next one.
    const gen = ++this.#gen;
    h.onHeaders(status, hs, () => gen === this.#gen && this.#resume(), statusText);
    return this.#isHead ? 1 : 0;
  };

  #readHint(hs: string[]): void {
    for (let i = 0; i < hs.length; i += 2) {
      const n = hs[i]!;
      if (n.length !== 10 || n.toLowerCase() !== 'keep-alive') continue;
      const m = /timeout\s*=\s*(\d+)/i.exec(hs[i + 1]!);
      if (m === null) continue;
      const ms = Number(m[1]) * 1000 - HINT_MARGIN_MS;
      if (ms <= 0) this.#reusable = false;
      else this.#idleMs = Math.min(this.#pool.o.idleTimeoutMs, ms);
    }
  }

  readonly #onBody = (b: Buffer): void => {
    const h = this.#h;
    if (h === null || this.#interim) return;
    // The parser's Buffer is a copy (node_http_parser on_body): it may be kept.
    if (!h.onData(b) && !this.#paused) {
      this.#paused = true;
      this.socket.pause();
      this.socket.setTimeout(0);
    }
  };

  #gen = 0;

  #resume(): void {
    if (!this.#paused || this.#st !== St.Busy) return;
    this.#paused = false;
    this.socket.setTimeout(this.#pool.o.readTimeoutMs);
    this.socket.resume();
  }

  readonly #onMessageComplete = (): void => {
    if (this.#interim) {
      this.#interim = false;
      return;
    }
    if (this.#h === null || this.#done) return;
    this.#done = true;
    if (!this.#bodySent) {
      // Answered before the request body was written: the rest of the body could be read as
      // a request by the upstream. Stop sending it; the connection is closed after this response.
      this.#reusable = false;
      this.#unpump();
      const body = this.#req?.body;
      this.#bodySent = true;
      if (body) body.resume(); // drained and dropped, so the client's connection can go on
    }
    const h = this.#h;
    const t = this.#trailers;
    h.onComplete(t);
  };

  /** After a complete response to a completely written request. */
  #finish(): void {
    this.#unpump();
    this.#h = null;
    this.#req = null;
    if (this.#reusable && this.#pool.keep(this)) {
      this.#toIdle();
      this.#pool.released(this);
    } else {
      this.#st = St.Closed;
      this.socket.destroy();
      this.#pool.released(null);
    }
  }

  #toIdle(): void {
    this.#st = St.Idle;
    this.#done = false;
    this.#head = false;
    this.#gen++;
    if (this.#paused) {
      // Paused on the response's last chunk: read again (an idle close or stray byte must be seen).
      this.#paused = false;
      this.socket.setTimeout(this.#pool.o.readTimeoutMs);
      this.socket.resume();
    }
    this.idleUntil = Date.now() + this.#idleMs;
    this.#idleMs = this.#pool.o.idleTimeoutMs;
  }

  readonly #abort = (err: Error): void => {
    this.#fail(err);
  };

  #fail(err: Error): void {
    this.#unpump();
    const h = this.#h;
    this.#h = null;
    this.#req = null;
    this.#reusable = false;
    const was = this.#st;
    this.#st = St.Closed;
    this.socket.destroy();
    if (was !== St.Closed && was !== St.Idle) this.#pool.released(null);
    if (h !== null) h.onError(err);
  }

  readonly #onTimeout = (): void => {
    switch (this.#st) {
      case St.Connecting:
        if (this.#h === null) this.socket.destroy();
        else this.#fail(new H1Error('H1_CONNECT_TIMEOUT', 'connect timeout'));
        return;
      case St.Busy:
        // Still writing a body the client sends slowly: the upstream is not late yet.
        if (!this.#bodySent && this.#sendTimer === null) {
          this.socket.setTimeout(this.#pool.o.readTimeoutMs);
          return;
        }
        this.#fail(new H1Error('H1_READ_TIMEOUT', 'read timeout'));
        return;
      case St.Idle:
        // timeout.read shorter than the idle time: keep the connection to its idle deadline.
        if (this.idleUntil > Date.now()) this.socket.setTimeout(this.#pool.o.readTimeoutMs);
        else this.socket.destroy();
        return;
      default:
        this.socket.destroy();
    }
  };

  readonly #onEnd = (): void => {
    if (this.#st !== St.Busy) {
      this.socket.destroy();
      return;
    }
    // A response delimited by the close ends here; anything else is cut short.
    const r = this.#parser.finish();
    if (r instanceof Error) {
      this.#fail(new H1Error('H1_TRUNCATED', 'the upstream closed the connection in the middle of a response'));
      return;
    }
    if (this.#done) {
      this.#reusable = false;
      if (this.#bodySent) this.#finish();
      else this.#fail(new H1Error('H1_CLOSED', 'the upstream closed before reading the request body'));
      return;
    }
    if (this.#head) this.#fail(new H1Error('H1_TRUNCATED', 'the upstream closed the connection mid-response'));
    else this.#fail(new H1Error('H1_CLOSED', 'the upstream closed the connection before answering'));
  };

  readonly #onError = (err: Error): void => {
    if (this.#h !== null) this.#fail(err);
  };

  readonly #onClose = (): void => {
    const was = this.#st;
    this.#st = St.Closed;
    this.#pool.gone(this, was);
    if (this.#h !== null) {
      const h = this.#h;
      this.#h = null;
      this.#unpump();
      h.onError(new H1Error(this.#pool.destroyed ? 'H1_DESTROYED' : 'H1_CLOSED', 'upstream connection closed'));
    }
  };

  destroy(): void {
    this.socket.destroy();
  }
}

/** The connections to one upstream node. */
export class H1Pool {
  readonly o: H1Options;
  readonly #idle: Conn[] = [];
  readonly #queue: Array<[H1Request, H1Handler]> = [];
  readonly #all = new Set<Conn>();
  #session: Buffer | undefined;
  #closing = false;
  destroyed = false;
  #onEmpty: (() => void) | null = null;

  constructor(o: H1Options) {
    this.o = o;
  }

  /** Open connections (busy, idle or connecting). */
  get size(): number {
    return this.#all.size;
  }

  dispatch(req: H1Request, h: H1Handler): void {
    // From now until the end of the body's life: a body that fails while we connect, or after we
    // stopped reading it (the client went away), must not be an unhandled 'error' ending the worker.
    if (req.body !== null && req.body.listenerCount('error') === 0) req.body.on('error', noop);
    if (this.#closing) {
      queueMicrotask(() => h.onError(new H1Error('H1_DESTROYED', 'the upstream pool is closed')));
      return;
    }
    if (this.#idle.length > 0) {
      const now = Date.now();
      for (;;) {
        const c = this.#idle.pop();
        if (c === undefined) break;
        if (c.idle && c.idleUntil > now) {
          c.run(req, h);
          return;
        }
        c.destroy();
      }
    }
    const max = this.o.maxConnections;
    if (max !== null && this.#all.size >= max) {
      this.#queue.push([req, h]);
      return;
    }
    const c = new Conn(this, this.o, this.#session);
    this.#all.add(c);
    c.run(req, h);
  }

  saveSession(s: Buffer): void {
    this.#session = s;
  }

  /** A connection finished a response cleanly: may it stay open? */
  keep(_c: Conn): boolean {
    return !this.#closing && (this.#queue.length > 0 || this.#idle.length < this.o.maxIdle);
  }

  /** c: a connection ready for the next request; null: a slot freed by a closed one. */
  released(c: Conn | null): void {
    const next = this.#queue.shift();
    if (c !== null) {
      if (next !== undefined) c.run(next[0], next[1]);
      else {
        this.#idle.push(c);
        this.#sweepLater();
      }
    } else if (next !== undefined) {
      // The closed connection still counts until its 'close': open the next one then.
      this.#queue.unshift(next);
    }
    this.#checkEmpty();
  }

  #sweeper: NodeJS.Timeout | null = null;

  /** Closes idle connections past their deadline, while there are idle connections. */
  #sweepLater(): void {
    if (this.#sweeper !== null) return;
    const every = Math.max(50, Math.min(1_000, this.o.idleTimeoutMs / 2));
    this.#sweeper = setInterval(this.#sweep, every);
    this.#sweeper.unref();
  }

  readonly #sweep = (): void => {
    const now = Date.now();
    for (const c of this.#idle) if (c.idleUntil <= now || !c.idle) c.destroy();
    if (this.#idle.length === 0 && this.#sweeper !== null) {
      clearInterval(this.#sweeper);
      this.#sweeper = null;
    }
  };

  gone(c: Conn, _was: number): void {
    this.#all.delete(c);
    const i = this.#idle.indexOf(c);
    if (i >= 0) this.#idle.splice(i, 1);
    const next = this.#queue.shift();
    if (next !== undefined && !this.destroyed) this.dispatch(next[0], next[1]);
    this.#checkEmpty();
  }

  #checkEmpty(): void {
    if (!this.#closing) return;
    for (const c of this.#idle.splice(0)) c.destroy();
    if (this.#onEmpty !== null && this.#queue.length === 0 && ![...this.#all].some((c) => c.busy)) {
      const cb = this.#onEmpty;
      this.#onEmpty = null;
      for (const c of this.#all) c.destroy();
      cb();
    }
  }

  /** Graceful: queued and in-flight requests finish, idle connections close now. */
  close(): Promise<void> {
    this.#closing = true;
    return new Promise<void>((resolve) => {
      this.#onEmpty = resolve;
      this.#checkEmpty();
    });
  }

  destroy(): Promise<void> {
    this.#closing = true;
    this.destroyed = true;
    if (this.#sweeper !== null) clearInterval(this.#sweeper);
    this.#sweeper = null;
    const q = this.#queue.splice(0);
    for (const c of this.#all) c.destroy();
    for (const [, h] of q) h.onError(new H1Error('H1_DESTROYED', 'the upstream pool was destroyed'));
    const cb = this.#onEmpty;
    this.#onEmpty = null;
    if (cb !== null) cb();
    return Promise.resolve();
  }
}
