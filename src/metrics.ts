// Data-plane metrics, one registry per worker (prom-client's global one); the
// primary aggregates them across workers on scrape (AggregatorRegistry).
import { AggregatorRegistry, Counter, Gauge, Histogram } from 'prom-client';

// Constructing one installs prom-client's IPC responder in a cluster worker, so the
// primary's clusterMetrics() gets this worker's registry.
new AggregatorRegistry();

export const dataPlane = {
  handshakes: new Counter({
    name: 'tlsgate_handshakes_total',
    help: 'TLS handshakes completed',
    labelNames: ['listener'] as const,
  }),
  handshakeFailures: new Counter({
    name: 'tlsgate_handshake_failures_total',
    help:
      'TLS handshakes refused, by reason (no_sni_match, mtls_missing, mtls_invalid, mtls_depth, protocol, timeout, ' +
      'malformed, max_connections, context, other)',
    labelNames: ['listener', 'reason'] as const,
  }),
  refused: new Counter({
    name: 'tlsgate_requests_refused_total',
    help:
      'Requests refused before routing, by reason (misdirected_mtls, misdirected_host, misdirected_cert, ' +
      'mtls_required)',
    labelNames: ['listener', 'reason'] as const,
  }),
  requests: new Counter({
    name: 'tlsgate_requests_total',
    help: 'HTTP requests answered, by route and status',
    labelNames: ['route', 'status'] as const,
  }),
  protocolRequests: new Counter({
    name: 'tlsgate_protocol_requests_total',
    help: 'HTTP requests received, by listener and protocol (h2, http/1.1)',
    labelNames: ['listener', 'protocol'] as const,
  }),
  h2Closed: new Counter({
    name: 'tlsgate_h2_sessions_closed_total',
    help: 'HTTP/2 connections the gateway closed, by reason (rapid_reset, idle, protocol_error, drain)',
    labelNames: ['listener', 'reason'] as const,
  }),
  connections: new Gauge({
    name: 'tlsgate_open_connections',
    help: 'TLS connections open',
    labelNames: ['listener'] as const,
  }),
  upstreamLatency: new Histogram({
    name: 'tlsgate_upstream_duration_seconds',
    help: 'Time from sending a request upstream to its response headers',
    labelNames: ['upstream'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  }),
};
