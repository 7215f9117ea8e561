// One proxied request: an undici dispatch handler that streams the upstream
// response into the ServerResponse with backpressure, and the request body (the
// IncomingMessage itself) to the upstream.
//
// Why the raw (legacy) handler methods — onConnect/onHeaders/onData/onComplete/
// onError — and not `request()`/`stream()` or the newer onResponse* API: measured
// in bench/proxy-cpu.ts, `request()` builds a Readable, an abort signal and a
// parsed header object per request; the onResponse* API makes undici parse the
// raw headers into an object we would flatten again. This path copies the raw
// header buffers once into the flat array `writeHead` takes.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import { forwardResponseHeaders } from './headers';
import { errorCodeOf, isRequestError, toUpstreamError, type FailurePhase } from './failure';
import { sendError } from './error-response';
import { dataPlane } from '../metrics';
import type { UpstreamNode, UpstreamPool } from './upstream-pool';

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

export class Forward implements Dispatcher.DispatchHandler {
  readonly #host: ForwardHost;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #opts: DispatchOpts;
  #up: UpstreamPool;
  #node: UpstreamNode;
  #abort: ((err?: Error) => void) | null = null;
  #resume: (() => void) | null = null;
  #connected = false;
  #responded = false;
  #done = false;
  #retried: string | null = null;
  #sendContinue: boolean;

  constructor(
    host: ForwardHost,
    up: UpstreamPool,
    node: UpstreamNode,
    req: IncomingMessage,
    res: ServerResponse,
    headers: string[],
    hasBody: boolean,
    sendContinue: boolean,
  ) {
    this.#host = host;
    this.#up = up;
    this.#node = node;
    this.#req = req;
    this.#res = res;
    this.#sendContinue = sendContinue;
    this.#opts = {
      path: req.url ?? '/',
      method: req.method as Dispatcher.HttpMethod,
      headers,
      body: hasBody ? req : null,
      servername: node.servername,
      // Never pipeline behind another request: a proxied request may stream for minutes.
      blocking: true,
    };
    res.on('close', this.#onClientClose);
  }

  #t0 = 0;

  start(): void {
    this.#t0 = performance.now();
    this.#opts.servername = this.#node.servername;
    this.#node.pool.dispatch(this.#opts, this);
  }

  readonly #onClientClose = (): void => {
    if (this.#done) return;
    this.#done = true;
    if (this.#abort !== null) this.#abort(new ClientGoneError('client closed the connection'));
  };

  readonly #onDrain = (): void => {
    const r = this.#resume;
    this.#resume = null;
    if (r !== null) r();
  };

  onConnect(abort: (err?: Error) => void): void {
    this.#connected = true;
    if (this.#done) {
      abort(new ClientGoneError('client closed the connection'));
      return;
    }
    this.#abort = abort;
    if (this.#sendContinue) {
      this.#sendContinue = false;
      this.#res.writeContinue();
    }
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void, statusText: string): boolean {
    if (statusCode < 200) return true; // 1xx are not relayed (undici does not surface 100/103 bodies)
    this.#host.nodeOk(this.#up, this.#node);
    dataPlane.upstreamLatency.observe({ upstream: this.#up.id }, (performance.now() - this.#t0) / 1000);
    if (this.#done) return false;
    // writeHead throws on a header Node refuses: undici turns that into onError (502).
    this.#res.writeHead(statusCode, statusText || undefined, forwardResponseHeaders(rawHeaders));
    this.#responded = true;
    this.#resume = null;
    this.#resumeFn = resume;
    return true;
  }

  #resumeFn: (() => void) | null = null;

  onData(chunk: Buffer): boolean {
    if (this.#res.write(chunk)) return true;
    if (this.#resume === null) {
      this.#resume = this.#resumeFn;
      this.#res.once('drain', this.#onDrain);
    }
    return false;
  }

  onComplete(trailers: Array<string | Buffer> | null): void {
    if (this.#done) return;
    this.#done = true;
    this.#res.off('close', this.#onClientClose);
    if (trailers !== null && trailers.length > 0) {
      const t: Array<[string, string]> = [];
      for (let i = 0; i < trailers.length; i += 2) t.push([latin1(trailers[i]!), latin1(trailers[i + 1]!)]);
      this.#res.addTrailers(t);
    }
    this.#res.end();
  }

  onError(err: Error): void {
    if (this.#done) return;
    if (err instanceof ClientGoneError || this.#res.destroyed || (this.#req.destroyed && !this.#req.complete)) {
      // The client went away; nothing to answer, and nothing the upstream did wrong.
      this.#done = true;
      return;
    }
    const phase: FailurePhase = this.#connected ? 'request' : 'connect';
    const requestError = isRequestError(err);
    if (phase === 'connect' && !requestError) this.#host.nodeFailed(this.#up, this.#node, err);
    if (!this.#responded && this.#retried === null && !requestError && this.#canRetry(phase, err)) {
      const next = this.#retryTarget(phase);
      if (next !== undefined) {
        this.#retried = this.#node.key;
        this.#up = next[0];
        this.#node = next[1];
        this.#connected = false;
        this.#abort = null;
        this.start();
        return;
      }
    }
    this.#done = true;
    this.#res.off('close', this.#onClientClose);
    const e = toUpstreamError(err, phase, this.#up.id);
    this.#host.logFailure({
      upstream: this.#up.id,
      node: this.#node.key,
      ...(this.#retried !== null ? { retriedFrom: this.#retried } : {}),
      code: e.code,
      status: this.#responded ? undefined : e.status,
      reason: e.reason,
      method: this.#req.method,
      phase: this.#responded ? 'response-body' : phase,
    });
    if (this.#responded) {
      // Headers are gone: the only honest signal left is a truncated response.
      this.#res.destroy(e);
      return;
    }
    sendError(this.#req, this.#res, e.status, e.code, e.message);
  }

  /** Another node for a connect failure; any node (the same one included) for a stale keep-alive. */
  #retryTarget(phase: FailurePhase): [UpstreamPool, UpstreamNode] | undefined {
    const up = this.#host.current(this.#up.id);
    if (up === undefined) return undefined;
    const failed = up.nodes.find((n) => n.key === this.#node.key);
    const next = up.pick(failed);
    if (next !== undefined) return [up, next];
    return phase === 'request' && failed !== undefined ? [up, failed] : undefined;
  }

  #canRetry(phase: FailurePhase, err: unknown): boolean {
    if (!IDEMPOTENT.has(this.#req.method ?? '')) return false;
    if (phase === 'connect') return true; // no byte of the request left this process
    // A keep-alive connection the upstream closed as we reused it: safe to replay
    // only when there is no body to replay.
    return this.#opts.body === null && errorCodeOf(err) === 'UND_ERR_SOCKET';
  }
}

function latin1(v: string | Buffer): string {
  return typeof v === 'string' ? v : v.toString('latin1');
}
