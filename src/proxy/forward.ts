// One proxied request: an undici dispatch handler that streams the upstream
// response into the exchange's writer with backpressure, and the request body to
// the upstream.
//
// Why the raw (legacy) handler methods — onConnect/onHeaders/onData/onComplete/
// onError — and not `request()`/`stream()` or the newer onResponse* API: measured
// in bench/proxy-cpu.ts, `request()` builds a Readable, an abort signal and a
// parsed header object per request; the onResponse* API makes undici parse the
// raw headers into an object we would flatten again. This path copies the raw
// header buffers once into the flat array `writeHead` takes.
import { Transform, type Readable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { forwardResponseHeaders } from './headers';
import { errorCodeOf, isRequestError, RESETS, toUpstreamError, type FailurePhase } from './failure';
import { sendError } from './error-response';
import type { Exchange } from './exchange';
import { dataPlane } from '../metrics';
import { countRequest } from './request-metrics';
import type { PickTicket, UpstreamNode, UpstreamPool } from './upstream-pool';

/** What a Forward needs from the set that started it. */
export interface ForwardHost {
  /** The current pool of the upstream (after an update, the new one): used for the retry. */
  current(id: string): UpstreamPool | undefined;
  nodeFailed(up: UpstreamPool, node: UpstreamNode, err: unknown): void;
  nodeOk(up: UpstreamPool, node: UpstreamNode): void;
  logFailure(fields: Record<string, unknown>): void;
}

/** undici reads `servername` from dispatch options (core/request.js); its types omit it. */
type DispatchOpts = Dispatcher.DispatchOptions & { servername?: string };

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

class ClientGoneError extends Error {
  readonly code = 'TLSGATE_CLIENT_GONE';
}

/** A chunked request body grew past max_body_size (raised by the stage's counter). */
export class BodyTooLargeError extends Error {
  readonly code = 'TLSGATE_E_BODY_TOO_LARGE';
}

export interface ForwardRequest {
  /** Request target for the upstream (normalized path + query). */
  target: string;
  headers: string[];
  body: Readable | null;
  sendContinue: boolean;
  /** Route id, for tlsgate_requests_total. */
  route: string;
  /** least_conn / chash: the request's place in the pool, handed to the retry's pick. */
  ticket?: PickTicket | undefined;
}

export class Forward implements Dispatcher.DispatchHandler {
  readonly #host: ForwardHost;
  readonly #ex: Exchange;
  readonly #opts: DispatchOpts;
  readonly #route: string;
  readonly #ticket: PickTicket | undefined;
  #up: UpstreamPool;
  #node: UpstreamNode;
  #abort: ((err?: Error) => void) | null = null;
  #resume: (() => void) | null = null;
  #connected = false;
  #responded = false;
  #done = false;
  #retries = 0;
  #retriedFrom: string | null = null;
  #sendContinue: boolean;
  #t0 = 0;
  #status = 0;

  constructor(host: ForwardHost, up: UpstreamPool, node: UpstreamNode, ex: Exchange, r: ForwardRequest) {
    this.#host = host;
    this.#up = up;
    this.#node = node;
    this.#ex = ex;
    this.#route = r.route;
    this.#ticket = r.ticket;
    this.#sendContinue = r.sendContinue;
    this.#opts = {
      path: r.target,
      method: ex.method as Dispatcher.HttpMethod,
      headers: r.headers,
      body: r.body,
      servername: node.servername,
      // Never pipeline behind another request: a proxied request may stream for minutes.
      blocking: true,
    };
    ex.res.onGone(this.#onClientGone);
  }

  start(): void {
    this.#t0 = performance.now();
    this.#opts.servername = this.#node.servername;
    this.#node.pool.dispatch(this.#opts, this);
  }

  readonly #onClientGone = (): void => {
    if (this.#done) return;
    this.#done = true;
    if (!this.#responded) countRequest(this.#route, 499);
    if (this.#abort !== null) this.#abort(new ClientGoneError('client closed the connection'));
  };

  /** Made on the first backpressure only: most responses never need it. */
  #onDrain: (() => void) | null = null;

  onConnect(abort: (err?: Error) => void): void {
    this.#connected = true;
    if (this.#done) {
      abort(new ClientGoneError('client closed the connection'));
      return;
    }
    this.#abort = abort;
    if (this.#sendContinue) {
      this.#sendContinue = false;
      this.#ex.res.writeContinue();
    }
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true; // 1xx are not relayed (undici does not surface 100/103 bodies)
    this.#host.nodeOk(this.#up, this.#node);
    dataPlane.upstreamLatency.observe({ upstream: this.#up.id }, (performance.now() - this.#t0) / 1000);
    if (this.#done) return false;
    let headers = forwardResponseHeaders(rawHeaders);
    // RFC 9110 §8.6: no Content-Length in a 204 (a 304 keeps it: the representation's length).
    if (statusCode === 204) headers = withoutFraming(headers);
    // writeHead throws on a header Node refuses: undici turns that into onError (502).
    this.#ex.res.writeHead(statusCode, statusText || undefined, headers);
    this.#status = statusCode;
    this.#responded = true;
    this.#resumeFn = resume;
    countRequest(this.#route, statusCode);
    return true;
  }

  #resumeFn: (() => void) | null = null;

  onData(chunk: Buffer): boolean {
    if (this.#done) return false;
    if (this.#ex.res.write(chunk)) return true;
    if (this.#resume === null) {
      this.#resume = this.#resumeFn;
      this.#onDrain ??= () => {
        const r = this.#resume;
        this.#resume = null;
        if (r !== null) r();
      };
      this.#ex.res.onDrain(this.#onDrain);
    }
    return false;
  }

  onComplete(trailers: Array<string | Buffer> | null): void {
    if (this.#done) return;
    this.#done = true;
    let t: string[] | undefined;
    if (trailers !== null && trailers.length > 0) t = trailers.map(latin1);
    this.#ex.res.end(undefined, t);
  }

  onError(err: Error): void {
    if (this.#done) return;
    const ex = this.#ex;
    if (err instanceof ClientGoneError || ex.res.gone) {
      // The client went away; nothing to answer, and nothing the upstream did wrong.
      this.#done = true;
      return;
    }
    const noBody = this.#status === 204 || this.#status === 304;
    if (this.#responded && noBody && errorCodeOf(err) === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH') {
      // undici 7 holds a 204/304 with a Content-Length to that many body bytes; the response
      // has none by definition and is complete (undici drops the upstream connection).
      this.#done = true;
      ex.res.end();
      return;
    }
    if (err instanceof BodyTooLargeError) {
      this.#done = true;
      if (this.#responded) ex.res.destroy();
      else this.#answer(413, 'TLSGATE_E_BODY_TOO_LARGE', err.message, true);
      return;
    }
    const phase: FailurePhase = this.#connected ? 'request' : 'connect';
    const requestError = isRequestError(err);
    if (phase === 'connect' && !requestError) this.#host.nodeFailed(this.#up, this.#node, err);
    if (!this.#responded && !requestError && this.#canRetry(phase, err)) {
      const next = this.#retryTarget(phase);
      if (next !== undefined) {
        this.#retriedFrom ??= this.#node.key;
        this.#retries++;
        this.#up = next[0];
        this.#node = next[1];
        this.#connected = false;
        this.#abort = null;
        this.start();
        return;
      }
    }
    this.#done = true;
    const e = toUpstreamError(err, phase, this.#up.id);
    this.#host.logFailure({
      upstream: this.#up.id,
      node: this.#node.key,
      ...(this.#retriedFrom !== null ? { retriedFrom: this.#retriedFrom, retries: this.#retries } : {}),
      code: e.code,
      status: this.#responded ? undefined : e.status,
      reason: e.reason,
      method: ex.method,
      phase: this.#responded ? 'response-body' : phase,
    });
    if (this.#responded) {
      // Headers are gone: the only honest signal left is a truncated response.
      ex.res.destroy();
      return;
    }
    this.#answer(e.status, e.code, e.message, false);
  }

  #answer(status: number, code: Parameters<typeof sendError>[2], message: string, close: boolean): void {
    this.#ex.res.onGone(null);
    countRequest(this.#route, status);
    sendError(this.#ex, status, code, message, close);
  }

  /** Another node when there is one; the same node for a stale keep-alive connection. */
  #retryTarget(phase: FailurePhase): [UpstreamPool, UpstreamNode] | undefined {
    const up = this.#host.current(this.#up.id);
    if (up === undefined) return undefined;
    // Each node is tried at most once (plus one replay on a stale connection).
    if (this.#retries >= Math.max(1, up.nodes.length - 1)) return undefined;
    const failed = up.nodes.find((n) => n.key === this.#node.key);
    const next = up.pick(failed, this.#ticket);
    if (next !== undefined) return [up, next];
    return phase === 'request' && failed !== undefined ? [up, failed] : undefined;
  }

  #canRetry(phase: FailurePhase, err: unknown): boolean {
    if (!IDEMPOTENT.has(this.#ex.method)) return false;
    // The upstream answered, with something undici cannot take (e.g. an interim 100 Continue:
    // undici 7 destroys the socket on it). The request reached it: never send it again.
    if (isBadResponse(err)) return false;
    if (phase === 'connect') return true; // no byte of the request left this process
    // The upstream connection was reset before any response byte (a node going down, or
    // a keep-alive connection it closed as we reused it): safe to replay on another node
    // when there is no body to replay. nginx does the same (proxy_next_upstream error).
    return this.#opts.body === null && RESETS.has(errorCodeOf(err));
  }
}

/** undici's SocketError for response bytes it refuses (a 100 Continue, data with no request). */
function isBadResponse(err: unknown): boolean {
  return errorCodeOf(err) === 'UND_ERR_SOCKET' && (err as Error).message === 'bad response';
}

function withoutFraming(headers: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const k = headers[i]!.toLowerCase();
    if (k !== 'content-length' && k !== 'transfer-encoding') out.push(headers[i]!, headers[i + 1]!);
  }
  return out;
}

function latin1(v: string | Buffer): string {
  return typeof v === 'string' ? v : v.toString('latin1');
}

/**
 * A body of unknown length (chunked) counted on its way upstream: past `limit` bytes the
 * stream fails with BodyTooLargeError, undici aborts the request, and the client gets 413
 * (or a reset when the response has started). Only such bodies pay for the extra stream.
 */
export function limitBody(body: Readable, limit: number): Readable {
  let n = 0;
  const out = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      if (n > limit) cb(new BodyTooLargeError(`the request body is larger than ${limit} bytes`));
      else cb(null, chunk);
    },
  });
  body.on('error', (err) => out.destroy(err));
  return body.pipe(out);
}
