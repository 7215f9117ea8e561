// Control-plane metrics (primary's own registry) + the workers' metrics, merged on scrape.
import { AggregatorRegistry, Gauge, Histogram, Counter, Registry } from 'prom-client';
import type { SslDetails } from '../snapshot/compile';
import { PROBE_RESULTS, type ActiveHealthMetrics } from '../proxy/active-health';

export class PrimaryMetrics {
  readonly registry = new Registry();
  private readonly aggregator = new AggregatorRegistry();
  readonly version = new Gauge({
    name: 'tlsgate_snapshot_version',
    help: 'Version of the snapshot the primary serves',
    registers: [this.registry],
  });
  readonly rotation = new Histogram({
    name: 'tlsgate_rotation_duration_seconds',
    help: 'From a detected config or secret change to every worker acking the new snapshot',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly reloads = new Counter({
    name: 'tlsgate_reloads_total',
    help: 'Reloads by result',
    labelNames: ['result'] as const,
    registers: [this.registry],
  });
  readonly notAfter = new Gauge({
    name: 'tlsgate_certificate_not_after_seconds',
    help: 'not-after of the earliest-expiring certificate of an SSL object (unix seconds)',
    labelNames: ['ssl'] as const,
    registers: [this.registry],
  });
  readonly daysLeft = new Gauge({
    name: 'tlsgate_certificate_days_left',
    help: 'Days until the earliest not-after of an SSL object',
    labelNames: ['ssl'] as const,
    registers: [this.registry],
  });

  readonly nodeHealthy = new Gauge({
    name: 'tlsgate_upstream_node_healthy',
    help: 'Active health checks: 1 when the node is healthy, 0 when every worker skips it (checked nodes only)',
    labelNames: ['upstream', 'node'] as const,
    registers: [this.registry],
  });
  readonly healthChecks = new Counter({
    name: 'tlsgate_upstream_health_checks_total',
    help: 'Active health probes by result (success, http_failure, tcp_failure, timeout, other)',
    labelNames: ['upstream', 'node', 'result'] as const,
    registers: [this.registry],
  });

  /** The sink of the primary's active health checks (proxy/active-health.ts). */
  readonly activeHealth: ActiveHealthMetrics = {
    probed: (upstream, node, result) => this.healthChecks.inc({ upstream, node, result }),
    state: (upstream, node, healthy) => this.nodeHealthy.set({ upstream, node }, healthy ? 1 : 0),
    forget: (upstream, node) => {
      this.nodeHealthy.remove({ upstream, node });
      for (const result of PROBE_RESULTS) this.healthChecks.remove({ upstream, node, result });
    },
  };

  setCertificates(details: SslDetails[], now = Date.now()): void {
    this.notAfter.reset();
    this.daysLeft.reset();
    for (const d of details) {
      if (!Number.isFinite(d.not_after)) continue;
      this.notAfter.set({ ssl: d.id }, Math.floor(d.not_after / 1000));
      this.daysLeft.set({ ssl: d.id }, Math.floor((d.not_after - now) / 86_400_000));
    }
  }

  /** Only what a change touched: set `changed`, drop `removed` (O(changed), not O(objects)). */
  patchCertificates(changed: SslDetails[], removed: string[], now = Date.now()): void {
    for (const id of removed) {
      this.notAfter.remove({ ssl: id });
      this.daysLeft.remove({ ssl: id });
    }
    for (const d of changed) {
      if (!Number.isFinite(d.not_after)) {
        this.notAfter.remove({ ssl: d.id });
        this.daysLeft.remove({ ssl: d.id });
        continue;
      }
      this.notAfter.set({ ssl: d.id }, Math.floor(d.not_after / 1000));
      this.daysLeft.set({ ssl: d.id }, Math.floor((d.not_after - now) / 86_400_000));
    }
  }

  async text(): Promise<string> {
    // clusterMetrics() asks every worker over IPC and sums counters/histograms.
    const workers = await this.aggregator.clusterMetrics().catch(() => '');
    return (await this.registry.metrics()) + '\n' + workers;
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
