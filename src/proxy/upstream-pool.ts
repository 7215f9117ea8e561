// One upstream as a worker sees it: its nodes, a keep-alive client per node, the
// WRR state and the passive health of each node. Immutable config, mutable state.
import type { CertKeyPair, SslSnapshot, UpstreamNodeSnapshot, UpstreamSnapshot } from '../snapshot/types';
import { nodeTarget } from './connector';
import { H1Pool } from './h1-client';
import { requestHeaderPlan, type RequestHeaderPlan } from './headers';
import { NodeHealth, type NodeHealthView } from './node-health';
import type { FilledProxyOptions } from './options';
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
  return n.health.available(this);
};

export class UpstreamPool {
  readonly id: string;
  readonly snapshot: UpstreamSnapshot;
  /** hash of the upstream + hash of its client SSL object: the pool is kept while equal. */
  readonly identity: string;
  readonly nodes: readonly UpstreamNode[];
  readonly headerPlan: RequestHeaderPlan;
  /** Number of nodes currently backing off; 0 lets `pick` skip the clock. */
  #down = 0;

  constructor(up: UpstreamSnapshot, clientSsl: SslSnapshot | undefined, o: FilledProxyOptions) {
    this.id = up.id;
    this.snapshot = up;
    this.identity = poolIdentity(up, clientSsl);
    const pair = clientSsl?.pairs[0];
    this.nodes = up.nodes.map((n) => new UpstreamNode(up, n, pair, o));
    this.headerPlan = requestHeaderPlan(up.host, up.clientIdentityHeaders);
  }

  pick(exclude?: UpstreamNode): UpstreamNode | undefined {
    if (this.nodes.length === 1 && exclude === undefined) return this.nodes[0]!.weight > 0 ? this.nodes[0] : undefined;
    if (this.#down === 0) return pickSmoothWrr(this.nodes, alwaysEligible, exclude);
    return pickSmoothWrr(this.nodes, isAvailable.bind(Date.now()), exclude);
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
      nodes: this.nodes.map((n) => ({
        host: n.host,
        port: n.port,
        weight: n.weight,
        healthy: n.health.available(now),
        failures: n.health.failures,
        retryAt: n.health.retryAt > now ? n.health.retryAt : null,
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
