import type { WorkerStats } from '../worker/protocol';

/** Per-worker counters; the primary sums them across workers. */
export class Counters {
  handshakes = 0;
  connections = 0;
  readonly handshakeFailures: Record<string, number> = {};
  readonly requests: Record<string, number> = {};

  fail(reason: string): void {
    this.handshakeFailures[reason] = (this.handshakeFailures[reason] ?? 0) + 1;
  }
  request(route: string, status: number): void {
    const k = `${route} ${status}`;
    this.requests[k] = (this.requests[k] ?? 0) + 1;
  }
  snapshot(): WorkerStats {
    return { handshakes: this.handshakes, handshakeFailures: { ...this.handshakeFailures }, requests: { ...this.requests }, connections: this.connections };
  }
}
