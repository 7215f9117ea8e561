// Active health checks (`upstreams[].checks.active`, APISIX's shape). They run in the
// primary, off the request path (as Envoy's do): one probe per node per interval however
// many workers there are, and one verdict every worker applies. A node's state changes
// after N consecutive failures or M consecutive successes; each change is sent to the
// workers as the upstream's full list of unhealthy nodes (idempotent, order-safe).
import { request as httpRequest, type ClientRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, isIP, type Socket } from 'node:net';
import type { UpstreamConfig } from '../config/types';
import type { SslSnapshot, UpstreamNodeSnapshot, UpstreamSnapshot } from '../snapshot/types';
import type { ProxyLogger } from './options';
import { upstreamSni } from './connector';

export type ActiveCheck = NonNullable<NonNullable<UpstreamConfig['checks']>['active']>;

/** primary → worker: the nodes (`host:port`) of `upstream` that active checks hold unhealthy. */
export interface NodeHealthMessage {
  type: 'node-health';
  upstream: string;
  down: string[];
}

/** success / http_failure / tcp_failure / timeout count; other: a status in neither list (ignored). */
export type ProbeResult = 'success' | 'http_failure' | 'tcp_failure' | 'timeout' | 'other';
export const PROBE_RESULTS: readonly ProbeResult[] = ['success', 'http_failure', 'tcp_failure', 'timeout', 'other'];

export interface ProbeView {
  healthy: boolean;
  /** Consecutive counts since the last result of another kind (APISIX's counters). */
  successes: number;
  http_failures: number;
  tcp_failures: number;
  timeouts: number;
  probes: number;
  last: { result: ProbeResult; status: number | null; error: string | null; at: string; ms: number } | null;
}

/** Where results and states go (the primary's metrics registry). */
export interface ActiveHealthMetrics {
  probed(upstream: string, node: string, result: ProbeResult): void;
  state(upstream: string, node: string, healthy: boolean): void;
  forget(upstream: string, node: string): void;
}

export interface ActiveHealthOptions {
  log: ProxyLogger;
  /** To every worker (and nothing else): called on each change of an upstream's unhealthy set. */
  broadcast: (m: NodeHealthMessage) => void;
  metrics?: ActiveHealthMetrics;
}

interface ProbeTarget {
  type: 'http' | 'https' | 'tcp';
  host: string;
  port: number;
  path: string;
  hostHeader: string;
  tls?: { rejectUnauthorized: boolean; ca?: string; cert?: string; key?: string; servername?: string };
}

class NodeProber {
  readonly view: ProbeView = {
    healthy: true, successes: 0, http_failures: 0, tcp_failures: 0, timeouts: 0, probes: 0, last: null,
  };
  #timer: NodeJS.Timeout | undefined;
  #abort: (() => void) | undefined;
  #stopped = false;

  constructor(
    readonly key: string,
    private readonly target: ProbeTarget,
    private readonly check: ActiveCheck,
    private readonly onResult: (p: NodeProber, r: ProbeResult, changed: boolean) => void,
  ) {}

  /** First probe at a random point of the first interval: a reload does not fire every probe at once. */
  start(): void {
    this.#schedule(Math.floor(Math.random() * this.#interval()));
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#abort?.();
  }

  #interval(): number {
    return this.view.healthy ? this.check.healthy.interval : this.check.unhealthy.interval;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = setTimeout(() => this.#probe(), ms);
    this.#timer.unref();
  }

  #probe(): void {
    const t0 = performance.now();
    this.#abort = probe(this.target, this.check.timeout, (result, status, error) => {
      this.#abort = undefined;
      // A probe answering after stop() (upstream removed or changed) counts for nothing.
      if (this.#stopped) return;
      const ms = Math.round(performance.now() - t0);
      const v = this.view;
      v.probes++;
      v.last = { result, status, error, at: new Date().toISOString(), ms };
      const changed = this.#count(this.#classify(result, status));
      this.onResult(this, v.last.result, changed);
      this.#schedule(this.#interval());
    });
  }

  #classify(result: ProbeResult, status: number | null): ProbeResult {
    if (result !== 'success' || status === null) return result;
    if (this.check.healthy.http_statuses.includes(status)) return 'success';
    if (this.check.unhealthy.http_statuses.includes(status)) return 'http_failure';
    return 'other';
  }

  /** @returns true when the node changed state. */
  #count(r: ProbeResult): boolean {
    const v = this.view;
    if (v.last) v.last.result = r;
    if (r === 'other') return false;
    if (r === 'success') {
      v.successes++;
      v.http_failures = v.tcp_failures = v.timeouts = 0;
      if (!v.healthy && v.successes >= this.check.healthy.successes) return (v.healthy = true);
      return false;
    }
    v.successes = 0;
    const u = this.check.unhealthy;
    let over = false;
    if (r === 'http_failure') over = ++v.http_failures >= u.http_failures;
    else if (r === 'tcp_failure') over = ++v.tcp_failures >= u.tcp_failures;
    else over = ++v.timeouts >= u.timeouts;
    if (v.healthy && over) {
      v.healthy = false;
      return true;
    }
    return false;
  }
}

class UpstreamChecker {
  readonly nodes: NodeProber[] = [];
  /** The unhealthy set last sent to the workers (sorted, joined). */
  sent = '';

  constructor(
    readonly id: string,
    /** Restart when it changes: the upstream's hash (nodes, tls, client SSL) and the check's settings. */
    readonly signature: string,
  ) {}

  down(): string[] {
    return this.nodes.filter((n) => !n.view.healthy).map((n) => n.key).sort();
  }
}

export class ActiveHealth {
  readonly #o: ActiveHealthOptions;
  readonly #checkers = new Map<string, UpstreamChecker>();
  #closed = false;

  constructor(o: ActiveHealthOptions) {
    this.#o = o;
  }

  /**
   * Probes for the upstreams of a served snapshot: unchanged upstreams keep their probes;
   * changed ones restart (nodes that stay keep their state); removed ones, or ones whose
   * checks were removed, stop, and the workers are told their nodes are healthy again.
   */
  sync(
    upstreams: readonly UpstreamSnapshot[],
    checks: ReadonlyMap<string, ActiveCheck>,
    ssls: readonly SslSnapshot[],
  ): void {
    if (this.#closed) return;
    const wanted = new Set<string>();
    let sslById: Map<string, SslSnapshot> | undefined;
    for (const up of upstreams) {
      const check = checks.get(up.id);
      if (check === undefined) continue;
      wanted.add(up.id);
      const signature = `${up.hash}|${JSON.stringify(check)}`;
      const old = this.#checkers.get(up.id);
      if (old?.signature === signature) continue;
      sslById ??= new Map(ssls.map((s) => [s.id, s]));
      const pair = up.tls?.clientSsl === undefined ? undefined : sslById.get(up.tls.clientSsl)?.pairs[0];
      const c = new UpstreamChecker(up.id, signature);
      const before = new Map(old?.nodes.map((n) => [n.key, n.view]));
      if (old !== undefined) this.#stop(old, false);
      const seen = new Set<string>();
      for (const node of up.nodes) {
        const key = `${node.host}:${node.port}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const p = new NodeProber(key, probeTarget(up, node, check, pair), check, (n, r, changed) =>
          this.#onResult(c, n, r, changed),
        );
        const prev = before.get(key);
        // A node that stays keeps its state (not its counters: the thresholds may have changed).
        if (prev !== undefined) p.view.healthy = prev.healthy;
        c.nodes.push(p);
      }
      c.sent = old?.sent ?? '';
      this.#checkers.set(up.id, c);
      for (const p of c.nodes) {
        this.#o.metrics?.state(c.id, p.key, p.view.healthy);
        p.start();
      }
      if (old !== undefined) for (const k of before.keys()) if (!seen.has(k)) this.#o.metrics?.forget(c.id, k);
      this.#send(c);
    }
    for (const [id, c] of this.#checkers) if (!wanted.has(id)) this.#stop(c, true);
  }

  /** Every upstream's unhealthy set, for a worker that just started. */
  replay(send: (m: NodeHealthMessage) => void): void {
    for (const c of this.#checkers.values()) {
      const down = c.down();
      if (down.length > 0) send({ type: 'node-health', upstream: c.id, down });
    }
  }

  /** Per node (`host:port`) of `upstreamId`: its probe state; undefined without active checks. */
  view(upstreamId: string): ReadonlyMap<string, ProbeView> | undefined {
    const c = this.#checkers.get(upstreamId);
    return c && new Map(c.nodes.map((n) => [n.key, n.view]));
  }

  /** Number of upstreams being probed (tests, status). */
  get size(): number {
    return this.#checkers.size;
  }

  close(): void {
    this.#closed = true;
    for (const c of this.#checkers.values()) this.#stop(c, false);
  }

  #stop(c: UpstreamChecker, removed: boolean): void {
    for (const n of c.nodes) n.stop();
    if (this.#checkers.get(c.id) === c) this.#checkers.delete(c.id);
    if (!removed) return;
    for (const n of c.nodes) this.#o.metrics?.forget(c.id, n.key);
    // Removed upstream or checks removed: no node of it stays marked in a worker.
    if (c.sent !== '') this.#o.broadcast({ type: 'node-health', upstream: c.id, down: [] });
  }

  #onResult(c: UpstreamChecker, n: NodeProber, r: ProbeResult, changed: boolean): void {
    this.#o.metrics?.probed(c.id, n.key, r);
    if (!changed) return;
    this.#o.metrics?.state(c.id, n.key, n.view.healthy);
    const last = n.view.last;
    const fields = { upstream: c.id, node: n.key, result: r, status: last?.status, error: last?.error };
    if (n.view.healthy) this.#o.log.info(fields, 'upstream node healthy again (active checks)');
    else this.#o.log.warn(fields, 'upstream node unhealthy (active checks): skipped by every worker');
    this.#send(c);
  }

  #send(c: UpstreamChecker): void {
    const down = c.down();
    const s = down.join(',');
    if (s === c.sent) return;
    c.sent = s;
    this.#o.broadcast({ type: 'node-health', upstream: c.id, down });
  }
}

function probeTarget(
  up: UpstreamSnapshot,
  node: UpstreamNodeSnapshot,
  check: ActiveCheck,
  pair: { cert: string; key: string } | undefined,
): ProbeTarget {
  const type = check.type ?? up.scheme;
  const port = check.port ?? node.port;
  const bare = isIP(node.host) === 6 ? `[${node.host}]` : node.host;
  const t: ProbeTarget = {
    type, host: node.host, port, path: check.http_path, hostHeader: check.host ?? up.host ?? `${bare}:${port}`,
  };
  if (type === 'https') {
    // The SNI the proxy sends (connector.ts, which no longer loads undici).
    const sni = upstreamSni(up, node);
    // The upstream's own TLS settings: a probe verifies the node as a request would.
    t.tls = {
      rejectUnauthorized: up.tls?.verify !== false,
      ...(up.tls?.ca ? { ca: up.tls.ca } : {}),
      ...(pair ? { cert: pair.cert, key: pair.key } : {}),
      ...(sni ? { servername: sni } : {}),
    };
  }
  return t;
}

/** One probe; `done` is called exactly once (not after the returned abort). */
function probe(
  t: ProbeTarget,
  timeoutMs: number,
  done: (result: ProbeResult, status: number | null, error: string | null) => void,
): () => void {
  let finished = false;
  let sock: Socket | undefined;
  let req: ClientRequest | undefined;
  const finish = (result: ProbeResult, status: number | null, error: string | null): void => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    req?.destroy();
    sock?.destroy();
    done(result, status, error);
  };
  const timer = setTimeout(() => finish('timeout', null, `no answer within ${timeoutMs} ms`), timeoutMs);
  timer.unref();
  const failed = (err: Error): void => finish('tcp_failure', null, (err as NodeJS.ErrnoException).code ?? err.message);
  if (t.type === 'tcp') {
    sock = connect({ host: t.host, port: t.port }, () => finish('success', null, null));
    sock.on('error', failed);
  } else {
    const opts = {
      host: t.host,
      port: t.port,
      path: t.path,
      method: 'GET',
      agent: false as const,
      headers: { host: t.hostHeader, 'user-agent': 'tlsgate-health-check', connection: 'close' },
      ...(t.tls ?? {}),
    };
    // The status line decides: the body is not read (the connection is closed at once).
    const send = t.type === 'https' ? httpsRequest : httpRequest;
    req = send(opts, (res) => finish('success', res.statusCode ?? 0, null));
    req.on('error', failed);
    req.end();
  }
  return () => {
    finished = true;
    clearTimeout(timer);
    req?.destroy();
    sock?.destroy();
  };
}
