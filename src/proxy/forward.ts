// One proxied request: an h1-client handler that streams the upstream response into the
// exchange's writer with backpressure (the request body goes to the upstream the same way),
// with the retry and passive-health decisions.
import { Transform, type Readable } from 'node:stream';
import { forwardResponseHeaders } from './headers';
import { errorCodeOf, isRequestError, RESETS, toUpstreamError, type FailurePhase } from './failure';
import { sendError } from './error-response';
import type { Exchange } from './exchange';
import type { H1Handler, H1Request } from './h1-client';
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

export class Forward implements H1Handler {
  readonly #host: ForwardHost;
  readonly #ex: Exchange;
  readonly #req: H1Request;
  readonly #route: string;
  readonly #ticket: PickTicket | undefined;
  #up: UpstreamPool;
  #node: UpstreamNode;
  #abort: ((err: Error) => void) | null = null;
  #resume: (() => void) | null = null;
  #connected = false;
  #responded = false;
  #done = false;
  #retries = 0;
  #retriedFrom: string | null = null;
  #sendContinue: boolean;
  #t0 = 0;
  /** When the first try started: `retry_timeout` counts from here. */
  #first = 0;

  constructor(host: ForwardHost, up: UpstreamPool, node: UpstreamNode, ex: Exchange, r: ForwardRequest) {
    this.#host = host;
    this.#up = up;
    this.#node = node;
    this.#ex = ex;
    this.#route = r.route;
    this.#ticket = r.ticket;
    this.#sendContinue = r.sendContinue;
    this.#req = { method: ex.method, path: r.target, headers: r.headers, body: r.body };
    ex.res.onGone(this.#onClientGone);
  }

  start(): void {
    this.#t0 = performance.now();
    if (this.#retries === 0) this.#first = this.#t0;
    this.#node.client.dispatch(this.#req, this);
  }

  readonly #onClientGone = (): void => {
    if (this.#done) return;
    this.#done = true;
    if (!this.#responded) countRequest(this.#route, 499);
    if (this.#abort !== null) this.#abort(new ClientGoneError('client closed the connection'));
  };

  /** Made on the first backpressure only: most responses never need it. */
  #onDrain: (() => void) | null = null;

  onConnect(abort: (err: Error) => void): void {
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

  onHeaders(statusCode: number, rawHeaders: string[], resume: () => void, statusText: string): boolean {
    this.#host.nodeOk(this.#up, this.#node);
    dataPlane.upstreamLatency.observe({ upstream: this.#up.id }, (performance.now() - this.#t0) / 1000);
    if (this.#done) return false;
    let headers = forwardResponseHeaders(rawHeaders);
    // RFC 9110 §8.6: no Content-Length in a 204 (a 304 keeps it: the representation's length).
    if (statusCode === 204) headers = withoutFraming(headers);
    try {
      this.#ex.res.writeHead(statusCode, statusText || undefined, headers);
    } catch (err) {
      // A header Node refuses to send (ERR_INVALID_CHAR…): 502, the upstream's fault.
      this.#abort?.(err as Error);
      return false;
    }
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

  onComplete(trailers: string[] | null): void {
    if (this.#done) return;
    this.#done = true;
    this.#ex.res.end(undefined, trailers !== null && trailers.length > 0 ? trailers : undefined);
  }

  onError(err: Error): void {
    if (this.#done) return;
    const ex = this.#ex;
    if (err instanceof ClientGoneError || ex.res.gone) {
      // The client went away; nothing to answer, and nothing the upstream did wrong.
      this.#done = true;
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
    // Default: each node is tried at most once (plus one replay on a stale connection).
    if (this.#retries >= (up.snapshot.retries ?? Math.max(1, up.nodes.length - 1))) return undefined;
    const budget = up.snapshot.retryTimeoutMs;
    if (budget !== undefined && performance.now() - this.#first >= budget) return undefined;
    const failed = up.nodes.find((n) => n.key === this.#node.key);
    const next = up.pick(failed, this.#ticket);
    if (next !== undefined) return [up, next];
    return phase === 'request' && failed !== undefined ? [up, failed] : undefined;
  }

  #canRetry(phase: FailurePhase, err: unknown): boolean {
    if (!IDEMPOTENT.has(this.#ex.method)) return false;
    if (phase === 'connect') return true; // no byte of the request left this process
    // The upstream connection was reset before any response byte (a node going down, or
    // a keep-alive connection it closed as we reused it): safe to replay on another node
    // when there is no body to replay. nginx does the same (proxy_next_upstream error).
    return this.#req.body === null && RESETS.has(errorCodeOf(err));
  }
}

function withoutFraming(headers: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < headers.length; i += 2) {
    const k = headers[i]!.toLowerCase();
    if (k !== 'content-length' && k !== 'transfer-encoding') out.push(headers[i]!, headers[i + 1]!);
  }
  return out;
}

/**
 * A body of unknown length (chunked) counted on its way upstream: past `limit` bytes the
 * stream fails with BodyTooLargeError, the client aborts the request, and the client gets 413
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
