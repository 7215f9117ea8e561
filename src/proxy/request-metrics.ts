// tlsgate_requests_total without prom-client work per request. Counter.inc({route, status})
// hashes and validates the label object on every call (measured: ~3% of a worker's busy
// time on the keep-alive bench, more than the route match). Requests are counted in a plain
// map here and added to the counter when it is read (prom-client calls `collect` before
// every scrape, including the primary's cluster aggregation), so a scrape sees every
// request answered before it.
import { dataPlane } from '../metrics';

/** route → status → requests not yet added to the counter. */
const pending = new Map<string, Map<number, number>>();

export function countRequest(route: string, status: number): void {
  let byStatus = pending.get(route);
  if (byStatus === undefined) pending.set(route, (byStatus = new Map()));
  byStatus.set(status, (byStatus.get(status) ?? 0) + 1);
}

function flush(): void {
  for (const [route, byStatus] of pending) {
    for (const [status, n] of byStatus) dataPlane.requests.inc({ route, status }, n);
  }
  // Cleared, not zeroed: a route that left the config leaves no entry behind.
  pending.clear();
}

// prom-client reads `collect` on each get() (its constructor option is only stored there).
(dataPlane.requests as unknown as { collect: () => void }).collect = flush;
