// Passive health: a node that fails to connect is skipped until `retryAt`.
// The back-off doubles per consecutive failure (2 s, 4 s, … capped at 30 s by
// default); the first request after `retryAt` is the probe. A response resets it.
// Active health (`activeDown`) comes from the primary's probes (active-health.ts).

export interface NodeHealthView {
  host: string;
  port: number;
  weight: number;
  healthy: boolean;
  /** Consecutive connect failures. */
  failures: number;
  /** Epoch ms until which the node is skipped; null when healthy. */
  retryAt: number | null;
  /** Marked unhealthy by the primary's active checks: skipped until marked healthy. */
  activeDown: boolean;
  /** Requests in flight from this worker (counted for least_conn and chash upstreams). */
  inflight: number;
}

export class NodeHealth {
  failures = 0;
  retryAt = 0;
  /** Set from the primary's active checks (UpstreamPool.setActiveDown), never by requests. */
  activeDown = false;

  available(now: number): boolean {
    return this.retryAt <= now;
  }

  /** @returns true when this failure took the node from healthy to down. */
  fail(now: number, baseMs: number, maxMs: number): boolean {
    const wasHealthy = this.failures === 0;
    this.failures++;
    const backoff = Math.min(maxMs, baseMs * 2 ** Math.min(this.failures - 1, 20));
    this.retryAt = now + backoff;
    return wasHealthy;
  }

  /** @returns true when the node was down before this success. */
  succeed(): boolean {
    if (this.failures === 0) return false;
    this.failures = 0;
    this.retryAt = 0;
    return true;
  }

  /** Carry state over to the node's successor after an `update()`. */
  copyFrom(o: NodeHealth): void {
    this.failures = o.failures;
    this.retryAt = o.retryAt;
  }
}
