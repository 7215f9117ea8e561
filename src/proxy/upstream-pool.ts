// One upstream as a worker sees it: its nodes, a keep-alive client per node, the
// balancer state (balance.ts, wrr.ts) and the passive and active health of each node.
import type { CertKeyPair, SslSnapshot, UpstreamNodeSnapshot, UpstreamSnapshot } from '../snapshot/types';
import { nodeTarget } from './connector';
import { H1Pool } from './h1-client';
import { requestHeaderPlan, type RequestHeaderPlan } from './headers';
import { NodeHealth, type NodeHealthView } from './node-health';
import type { FilledProxyOptions } from './options';
import { hash32, HashRing, keyReader, pickLeastConn, type BalanceRequest, type KeyReader } from './balance';
import { pickSmoothWrr, type WrrItem } from './wrr';

export class UpstreamNode implements WrrItem {
  readonly host: string;
  readonly port: number;
  readonly weight: number;
  /** `host:port`, for logs and health carry-over. */
  readonly key: string;
  readonly origin: string;
  readonly client: H1Pool;
  readonly health = new NodeHealth();
  current = 0;

  constructor(
    up: UpstreamSnapshot,
    node: UpstreamNodeSnapshot,
    clientPair: CertKeyPair | undefined,
    o: FilledProxyOptions,
  ) {
    this.host = node.host;
    this.port = node.port;
    this.weight = node.weight;
    this.key = `${node.host}:${node.port}`;
    const t = nodeTarget(up, node, clientPair);
    this.origin = t.origin;
    this.client = new H1Pool({
      host: node.host,
      port: node.port,
      authority: t.authority,
      tls: t.tls,
      connectTimeoutMs: up.timeout.connectMs,
      // An idle timer, refreshed per chunk, stopped while the upstream is paused for a slow client.
      readTimeoutMs: up.timeout.readMs,
      sendTimeoutMs: up.timeout.sendMs ?? 0,
      idleTimeoutMs: up.keepalive?.idleMs ?? o.keepAliveTimeoutMs,
      maxIdle: up.keepalive?.size ?? Infinity,
      maxConnections: o.connectionsPerNode,
    });
  }
}

const isAvailable = function (this: number, n: UpstreamNode): boolean {
  return !n.health.activeDown && n.health.available(this);
};
const notActiveDown = (n: UpstreamNode): boolean => !n.health.activeDown;

/**
 * One request's place in a least_conn / chash pool: its key's hash (a retry walks on from
 * it) and the node its in-flight count is on. Moves with a retry, even to the successor
 * pool of an updated upstream; `release` ends it.
 */
export interface PickTicket {
  readonly hash: number;
  pool: UpstreamPool | null;
  index: number;
}

export class UpstreamPool {
  readonly id: string;
  readonly snapshot: UpstreamSnapshot;
  /** hash of the upstream + hash of its client SSL object: the pool is kept while equal. */
  readonly identity: string;
  readonly nodes: readonly UpstreamNode[];
  readonly headerPlan: RequestHeaderPlan;
  readonly type: 'roundrobin' | 'least_conn' | 'chash';
  /** Number of nodes currently backing off; 0 lets `pick` skip the clock. */
  #down = 0;
  /** Nodes marked unhealthy by active checks. */
  #activeDown = 0;
  /** In-flight requests per node (tickets), for least_conn and the admin view. */
  readonly #inflight: Int32Array;
  readonly #ring: HashRing | undefined;
  readonly #key: KeyReader | undefined;

  constructor(up: UpstreamSnapshot, clientSsl: SslSnapshot | undefined, o: FilledProxyOptions) {
    this.id = up.id;
    this.snapshot = up;
    this.identity = poolIdentity(up, clientSsl);
    const pair = clientSsl?.pairs[0];
    this.nodes = up.nodes.map((n) => new UpstreamNode(up, n, pair, o));
    this.headerPlan = requestHeaderPlan(up.host, up.clientIdentityHeaders);
    const b = up.balance ?? { type: 'roundrobin' };
    this.type = b.type;
    this.#inflight = new Int32Array(this.nodes.length);
    this.#ring = b.type === 'chash' ? new HashRing(this.nodes) : undefined;
    this.#key = b.type === 'chash' ? keyReader(b) : undefined;
  }

  /**
   * A ticket for a request to a least_conn or chash pool (undefined for roundrobin, which
   * needs none): pass it to every `pick` of that request and `release` it when it ends.
   */
  ticket(r: BalanceRequest): PickTicket | undefined {
    if (this.type === 'roundrobin') return undefined;
    return { hash: this.#key === undefined ? 0 : hash32(this.#key(r)), pool: null, index: -1 };
  }

  /**
   * The node for a request (`exclude`: the node a retry leaves). Skips nodes backing off or
   * marked down by active checks, unless every node is; undefined when no node has weight.
   */
  pick(exclude?: UpstreamNode, t?: PickTicket): UpstreamNode | undefined {
    if (this.type === 'roundrobin' || t === undefined) {
      const only = this.nodes.length === 1 && exclude === undefined ? this.nodes[0]! : undefined;
      if (only !== undefined) return only.weight > 0 ? only : undefined;
      return pickSmoothWrr(this.nodes, this.#eligible(), exclude);
    }
    const eligible = this.#eligible();
    let i: number;
    if (this.#ring !== undefined) {
      const nodes = this.nodes;
      i = this.#ring.pick(t.hash, (k) => nodes[k] !== exclude && eligible(nodes[k]!));
      if (i < 0) i = this.#ring.pick(t.hash, (k) => nodes[k] !== exclude);
    } else {
      i = pickLeastConn(this.nodes, this.#inflight, eligible, exclude);
    }
    if (i < 0) return undefined;
    this.release(t);
    t.pool = this;
    t.index = i;
    this.#inflight[i]!++;
    return this.nodes[i];
  }

  /** The request of `t` ended: its node has one request less in flight. Idempotent. */
  release(t: PickTicket): void {
    const p = t.pool;
    if (p === null) return;
    p.#inflight[t.index]!--;
    t.pool = null;
  }

  #eligible(): (n: UpstreamNode) => boolean {
    if (this.#down === 0) return this.#activeDown === 0 ? alwaysEligible : notActiveDown;
    return isAvailable.bind(Date.now());
  }

  /** The primary's active checks: exactly the nodes in `down` (by `host:port`) are unhealthy. */
  setActiveDown(down: ReadonlySet<string> | undefined): void {
    let n = 0;
    for (const node of this.nodes) {
      node.health.activeDown = down !== undefined && down.has(node.key);
      if (node.health.activeDown) n++;
    }
    this.#activeDown = n;
  }

  /** @returns true when the node just went from healthy to down. */
  markFailed(n: UpstreamNode, o: FilledProxyOptions): boolean {
    const wentDown = n.health.fail(Date.now(), o.backoffBaseMs, o.backoffMaxMs);
    if (wentDown) this.#down++;
    return wentDown;
  }

  /** @returns true when the node was down and is now healthy. */
  markOk(n: UpstreamNode): boolean {
    if (n.health.failures === 0) return false;
    n.health.succeed();
    this.#down--;
    return true;
  }

  /** Keep passive health for nodes that survive an update (same host:port). */
  inheritHealth(prev: UpstreamPool): void {
    for (const n of this.nodes) {
      const old = prev.nodes.find((p) => p.key === n.key);
      if (old && old.health.failures > 0) {
        n.health.copyFrom(old.health);
        this.#down++;
      }
    }
  }

  health(now: number): { id: string; nodes: NodeHealthView[] } {
    return {
      id: this.id,
      nodes: this.nodes.map((n, i) => ({
        host: n.host,
        port: n.port,
        weight: n.weight,
        healthy: n.health.available(now),
        failures: n.health.failures,
        retryAt: n.health.retryAt > now ? n.health.retryAt : null,
        activeDown: n.health.activeDown,
        inflight: this.#inflight[i]!,
      })),
    };
  }

  /** Graceful: queued and in-flight requests finish first, idle connections close now. */
  close(): Promise<void> {
    return Promise.all(this.nodes.map((n) => n.client.close())).then(noop);
  }

  destroy(): Promise<void> {
    return Promise.all(this.nodes.map((n) => n.client.destroy())).then(noop, noop);
  }
}

function alwaysEligible(): boolean {
  return true;
}
function noop(): void {}

export function poolIdentity(up: UpstreamSnapshot, clientSsl: SslSnapshot | undefined): string {
  return clientSsl ? `${up.hash}/${clientSsl.hash}` : up.hash;
}
