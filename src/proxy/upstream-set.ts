// All upstreams of one worker: built from a snapshot, swapped by `update()`,
// entry point `handle()` for the engine's request handler.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { TlsgateError } from '../errors';
import type { SslSnapshot, UpstreamSnapshot } from '../snapshot/types';
import { sendError } from './error-response';
import { errorCodeOf } from './failure';
import { Forward, limitBody, type ForwardHost } from './forward';
import type { ConnFacts, Exchange } from './exchange';
import { NodeExchange } from './node-exchange';
import { countRequest } from './request-metrics';
import { forwardRequestHeaders } from './headers';
import type { NodeHealthView } from './node-health';
import {
  fillProxyOptions,
  type FilledProxyOptions,
  type ProxyContext,
  type ProxyOptions,
  type SslLookup,
} from './options';
import { ReleasingExchange } from './released-exchange';
import { poolIdentity, UpstreamPool, type UpstreamNode } from './upstream-pool';

export interface UpstreamHealthView {
  id: string;
  nodes: NodeHealthView[];
}

export class UpstreamSet implements ForwardHost {
  readonly #o: FilledProxyOptions;
  #pools = new Map<string, UpstreamPool>();
  /** Active-check state from the primary, by upstream id: node `host:port` marked unhealthy. */
  readonly #activeDown = new Map<string, ReadonlySet<string>>();
  /** Replaced pools still serving in-flight requests. */
  readonly #retiring = new Map<UpstreamPool, Promise<void>>();
  #closing: Promise<void> | null = null;

  constructor(upstreams: readonly UpstreamSnapshot[], ssls: SslLookup, options: ProxyOptions) {
    this.#o = fillProxyOptions(options);
    this.#pools = this.#build(upstreams, ssls, new Map());
  }

  /**
   * Swap in the upstreams of a new snapshot. Pools whose upstream hash and client
   * SSL hash are unchanged are kept (with their connections and WRR state); the
   * others get new pools for new requests while the old ones finish what they
   * carry and close. Throws a TlsgateError (nothing swapped) on an inconsistent
   * snapshot.
   */
  update(upstreams: readonly UpstreamSnapshot[], ssls: SslLookup): void {
    if (this.#closing !== null) throw new TlsgateError('TLSGATE_E_CONFIG_INVALID', 'upstream set is closed');
    const prev = this.#pools;
    const next = this.#build(upstreams, ssls, prev);
    this.#pools = next;
    for (const [id, pool] of prev) {
      if (next.get(id) !== pool) this.#retire(pool);
    }
  }

  /**
   * Proxy one request to upstream `upstreamId`. Never throws; every failure becomes a response.
   * target: what the upstream gets as request target (checkRequest's normalized one).
   * bodyLimit: bytes a body of unknown length may reach before the request is stopped (413).
   */
  forward(
    ex: Exchange,
    upstreamId: string,
    route: string,
    target: string,
    ctx: ProxyContext,
    bodyLimit: number | null = null,
  ): void {
    const up = this.#pools.get(upstreamId);
    if (up === undefined || this.#closing !== null) {
      const code = up === undefined ? 'TLSGATE_E_UPSTREAM_UNKNOWN' : 'TLSGATE_E_UPSTREAM_CONNECT';
      this.#o.logger.error({ upstream: upstreamId, code }, 'no such upstream in this worker');
      countRequest(route, 502);
      sendError(ex, 502, code, `upstream ${upstreamId}: not available`);
      return;
    }
    const { remoteAddress, authority } = ctx;
    const t = up.ticket({ rawHeaders: ex.rawHeaders, target, remoteAddress, authority });
    const node = up.pick(undefined, t);
    // Wrapped at once: whatever ends the request from here on releases its in-flight count.
    if (t !== undefined && node !== undefined) ex = new ReleasingExchange(ex, () => up.release(t));
    if (node === undefined) {
      this.#o.logger.error(
        { upstream: upstreamId, code: 'TLSGATE_E_UPSTREAM_CONNECT' },
        'upstream has no node with weight > 0',
      );
      countRequest(route, 502);
      sendError(ex, 502, 'TLSGATE_E_UPSTREAM_CONNECT', `upstream ${upstreamId}: no node`);
      return;
    }
    const h = forwardRequestHeaders(ex.rawHeaders, up.headerPlan, ctx);
    let body = h.hasBody ? ex.body() : null;
    if (body !== null && bodyLimit !== null) body = limitBody(body, bodyLimit);
    const sendContinue = h.expectContinue && ex.expectContinue;
    new Forward(this, up, node, ex, { target, headers: h.headers, body, sendContinue, route, ticket: t }).start();
  }

  /** node:http objects straight to an upstream (no request stage): for tests of the proxy alone. */
  handle(req: IncomingMessage, res: ServerResponse, upstreamId: string, ctx: ProxyContext): void {
    const conn: ConnFacts = {
      ssl: undefined,
      authorized: false,
      remoteAddress: ctx.remoteAddress,
      clientIdentity: () => ctx.clientCert,
    };
    const ex = new NodeExchange(req, res, conn, ctx.expectContinue === true);
    this.forward(ex, upstreamId, '-', req.url ?? '/', ctx);
  }

  /**
   * The primary's active health checks for one upstream: the `host:port` of its nodes that
   * are unhealthy (empty: all healthy, or checks removed). Kept for pools built later.
   */
  setActiveDown(upstreamId: string, down: readonly string[]): void {
    const set = new Set(down);
    if (set.size === 0) this.#activeDown.delete(upstreamId);
    else this.#activeDown.set(upstreamId, set);
    this.#pools.get(upstreamId)?.setActiveDown(set);
  }

  /** Per upstream, per node: passive health as the admin API shows it. */
  health(): UpstreamHealthView[] {
    const now = Date.now();
    return [...this.#pools.values()].map((p) => p.health(now));
  }

  /** Graceful and idempotent: in-flight requests finish, capped by `closeTimeoutMs`, then destroy. */
  close(): Promise<void> {
    if (this.#closing !== null) return this.#closing;
    const pools = [...this.#pools.values()];
    const retiring = [...this.#retiring.keys()];
    const graceful = Promise.all([...pools.map((p) => p.close()), ...this.#retiring.values()]).then(
      () => true,
      () => false,
    );
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => {
      timer = setTimeout(resolve, this.#o.closeTimeoutMs, false);
      timer.unref();
    });
    this.#closing = Promise.race([graceful, timeout]).then(async (clean) => {
      clearTimeout(timer);
      if (!clean)
        this.#o.logger.warn({ timeoutMs: this.#o.closeTimeoutMs }, 'upstream pools did not drain in time: destroying');
      await Promise.all([...pools, ...retiring].map((p) => p.destroy()));
    });
    return this.#closing;
  }

  // --- ForwardHost ------------------------------------------------------------
  current(id: string): UpstreamPool | undefined {
    return this.#closing === null ? this.#pools.get(id) : undefined;
  }

  nodeFailed(up: UpstreamPool, node: UpstreamNode, err: unknown): void {
    if (up.markFailed(node, this.#o)) {
      this.#o.logger.warn(
        {
          upstream: up.id,
          node: node.key,
          reason: errorCodeOf(err) || (err as Error).message,
          retryAt: node.health.retryAt,
        },
        'upstream node down: skipped until retryAt',
      );
    }
  }

  nodeOk(up: UpstreamPool, node: UpstreamNode): void {
    if (up.markOk(node)) this.#o.logger.info({ upstream: up.id, node: node.key }, 'upstream node answered again');
  }

  logFailure(fields: Record<string, unknown>): void {
    this.#o.logger.warn(fields, 'upstream request failed');
  }

  // --- internals --------------------------------------------------------------
  #build(
    upstreams: readonly UpstreamSnapshot[],
    ssls: SslLookup,
    prev: ReadonlyMap<string, UpstreamPool>,
  ): Map<string, UpstreamPool> {
    const byId = sslMap(ssls);
    const problems: string[] = [];
    for (const up of upstreams) {
      const ref = up.tls?.clientSsl;
      if (ref === undefined) continue;
      const ssl = byId.get(ref);
      if (ssl === undefined) problems.push(`upstreams.${up.id}.tls.client_ssl: no SSL object "${ref}"`);
      else if (ssl.type !== 'client')
        problems.push(`upstreams.${up.id}.tls.client_ssl: SSL object "${ref}" is of type ${ssl.type}, not client`);
      else if (ssl.pairs.length === 0)
        problems.push(`upstreams.${up.id}.tls.client_ssl: SSL object "${ref}" has no certificate`);
    }
    if (problems.length > 0) throw new TlsgateError('TLSGATE_E_REF_UNKNOWN', problems.join('; '));

    const out = new Map<string, UpstreamPool>();
    for (const up of upstreams) {
      const ssl = up.tls?.clientSsl !== undefined ? byId.get(up.tls.clientSsl) : undefined;
      const old = prev.get(up.id);
      if (old !== undefined && old.identity === poolIdentity(up, ssl)) {
        out.set(up.id, old);
        continue;
      }
      const pool = new UpstreamPool(up, ssl, this.#o);
      if (old !== undefined) pool.inheritHealth(old);
      pool.setActiveDown(this.#activeDown.get(up.id));
      if (up.scheme === 'https' && up.tls?.verify === false) {
        this.#o.logger.warn({ upstream: up.id }, 'upstream TLS certificate is NOT verified (tls.verify: false)');
      }
      out.set(up.id, pool);
    }
    return out;
  }

  #retire(pool: UpstreamPool): void {
    let timer: NodeJS.Timeout | undefined;
    const done = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        this.#o.logger.warn(
          { upstream: pool.id, timeoutMs: this.#o.retireTimeoutMs },
          'replaced upstream pool still busy: destroying',
        );
        void pool.destroy().then(resolve);
      }, this.#o.retireTimeoutMs);
      timer.unref();
      pool.close().then(resolve, () => void pool.destroy().then(resolve));
    }).then(() => {
      clearTimeout(timer);
      this.#retiring.delete(pool);
    });
    this.#retiring.set(pool, done);
  }
}

function sslMap(ssls: SslLookup): ReadonlyMap<string, SslSnapshot> {
  if (!Array.isArray(ssls)) return ssls as ReadonlyMap<string, SslSnapshot>;
  const m = new Map<string, SslSnapshot>();
  for (const s of ssls as readonly SslSnapshot[]) m.set(s.id, s);
  return m;
}
