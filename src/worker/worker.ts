// A data-plane worker: decode a snapshot, build the SNI map, router and contexts,
// swap them into the engines with one assignment each, ack the version.
import { decodeSnapshot } from '../snapshot/codec';
import type { ListenerSnapshot, Snapshot } from '../snapshot/types';
import { SniMap } from '../routing/sni-map';
import { Router } from '../routing/router';
import { ContextCache } from '../engines/context-cache';
import type { DataPlaneState, Engine } from '../engines/engine';
import { UpstreamSet } from '../proxy';
import { NodeEngine } from '../engines/node';
import { createLogger, type Logger } from '../log';
import { TlsgateError } from '../errors';
import { isPrimaryMessage, type WorkerMessage } from './protocol';

const CONTEXT_CACHE_MAX = 10_000; // ≈ 240 MB at 24 KB per context: the ceiling, not the norm

export class Worker {
  private state: DataPlaneState | undefined;
  private readonly engines = new Map<string, Engine>();
  private proxy: UpstreamSet | undefined;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly log: Logger,
    private readonly send: (m: WorkerMessage) => void,
  ) {}

  onMessage(m: unknown): void {
    if (!isPrimaryMessage(m)) return;
    switch (m.type) {
      case 'snapshot':
        // Snapshots apply in order, one at a time.
        this.queue = this.queue.then(() => this.apply(m.bytes, m.version));
        return;
      case 'drain':
        void this.drain(m.timeoutMs);
        return;
      case 'stats?':
        this.send({ type: 'stats', id: m.id, stats: { upstreams: this.proxy?.health() ?? [] } });
        return;
    }
  }

  /**
   * Build everything from the snapshot, then switch. Any failure (decode, SNI map,
   * router, contexts, upstreams, a listener that cannot bind) leaves the previous state
   * serving and is reported to the primary, which then refuses that version.
   */
  private async apply(bytes: Uint8Array, version: number): Promise<void> {
    const prev = this.state;
    let snapshot: Snapshot | undefined;
    let stage = 'decoding the snapshot';
    try {
      snapshot = decodeSnapshot(bytes);
      stage = 'building the SNI map';
      const sni = new SniMap(snapshot.ssls, snapshot.sni);
      stage = 'building the router';
      const router = new Router(snapshot.routes);
      const contexts = prev
        ? prev.contexts.carryOver(snapshot.ssls, CONTEXT_CACHE_MAX)
        : new ContextCache(CONTEXT_CACHE_MAX);
      stage = 'building the upstreams';
      const proxy = this.proxyStage(snapshot);
      const state: DataPlaneState = { version: snapshot.version, snapshot, sni, router, contexts, proxy };
      stage = 'binding and updating the listeners';
      try {
        await this.syncListeners(state, prev);
      } catch (err) {
        // Upstream pools back to the running snapshot's (UpstreamSet.update is all or nothing).
        if (prev) this.proxy?.update(prev.snapshot.upstreams, prev.snapshot.ssls);
        throw err;
      }
      this.state = state;
      this.send({ type: 'ack', version: snapshot.version });
    } catch (err) {
      const e = err as Partial<TlsgateError> & { code?: string };
      const ours = typeof e.code === 'string' && e.code.startsWith('TLSGATE_E_');
      const text = e.message ?? String(err);
      const message = ours ? text : `${stage}: ${text}${e.code ? ` (${e.code})` : ''}`;
      const v = snapshot?.version ?? version;
      this.log.error({ version: v, code: e.code, err }, 'cannot apply the snapshot; the previous one keeps serving');
      this.send({ type: 'snapshot-error', version: v, code: ours ? e.code! : 'TLSGATE_E_SNAPSHOT_APPLY', message });
      // Nothing to serve at all: exit, the primary respawns (with back-off) on its last good snapshot.
      if (!this.state) setImmediate(() => process.exit(1));
    }
  }

  /** One UpstreamSet per worker: pools whose upstream did not change are kept across snapshots. */
  private proxyStage(snapshot: Snapshot): UpstreamSet {
    if (this.proxy) this.proxy.update(snapshot.upstreams, snapshot.ssls);
    else this.proxy = new UpstreamSet(snapshot.upstreams, snapshot.ssls, { logger: this.log });
    return this.proxy;
  }

  /**
   * Listeners added, kept or removed by the snapshot; an engine is keyed by name + address
   * + engine. Bind first, then switch: new listeners listen before removed ones close, so
   * a listener moved to a port it cannot bind keeps serving on its old one. Exception: a
   * new listener on the address of a removed one (a rename, an engine swap) cannot bind
   * beside it, so that old one closes first.
   */
  private async syncListeners(state: DataPlaneState, prev: DataPlaneState | undefined): Promise<void> {
    const wanted = new Map(state.snapshot.listeners.map((l) => [key(l), l]));
    const removed = [...this.engines].filter(([k]) => !wanted.has(k));
    const created: Array<[string, Engine]> = [];
    const updated: Engine[] = [];
    try {
      for (const [k, l] of wanted) {
        if (this.engines.has(k)) continue;
        for (const [rk, old] of removed) {
          if (old.listener.host !== l.host || old.listener.port !== l.port || !this.engines.has(rk)) continue;
          this.engines.delete(rk);
          // close() stops accepting at once (its promise is the drain, up to 10 s: not awaited,
          // or the ack would wait for it).
          void old.close(10_000);
        }
        const engine = this.createEngine(l, state);
        created.push([k, engine]);
        await engine.listen();
      }
      for (const [k, l] of wanted) {
        const existing = this.engines.get(k);
        if (!existing) continue;
        // Listed first: an update that throws halfway is restored too.
        updated.push(existing);
        existing.update(state, l);
      }
    } catch (err) {
      for (const [, e] of created) void e.close(0).catch(() => undefined);
      for (const e of updated) {
        try {
          if (prev) e.update(prev, prev.snapshot.listeners.find((l) => key(l) === key(e.listener)) ?? e.listener);
        } catch (again) {
          this.log.error({ err: again, listener: e.listener.name }, 'cannot restore the previous state of a listener');
        }
      }
      throw err;
    }
    for (const [k, e] of created) this.engines.set(k, e);
    for (const [k, engine] of removed) {
      if (this.engines.get(k) !== engine) continue;
      this.engines.delete(k);
      void engine.close(10_000);
    }
  }

  private createEngine(l: ListenerSnapshot, state: DataPlaneState): Engine {
    if (l.engine === 'uws') {
      // Loaded only when a listener asks for it: a node-only gateway never touches the native binary.
      const { UwsEngine } = require('../engines/uws') as typeof import('../engines/uws');
      return new UwsEngine(l, state, { log: this.log });
    }
    if (l.engine !== 'node') {
      throw new TlsgateError(
        'TLSGATE_E_ENGINE_LOAD',
        `listener ${l.name}: engine ${String(l.engine)} is not available in this build`,
      );
    }
    return new NodeEngine(l, state, { log: this.log });
  }

  private async drain(timeoutMs: number): Promise<void> {
    await Promise.all([...this.engines.values()].map((e) => e.close(timeoutMs)));
    await this.proxy?.close();
    process.exit(0);
  }
}

function key(l: ListenerSnapshot): string {
  return `${l.name}|${l.host}|${l.port}|${l.engine}`;
}

export function runWorker(): void {
  // TLSGATE_LOG_FD: the primary's stdout, handed to the worker as an extra fd; the
  // worker's own fd 1 is the primary's stderr, so native prints (uWS domain() debug
  // lines) never mix into the JSON log stream.
  const fd = Number(process.env.TLSGATE_LOG_FD);
  const log = createLogger({
    level: process.env.TLSGATE_LOG_LEVEL ?? 'info',
    name: 'worker',
    ...(Number.isInteger(fd) && fd > 0 ? { fd } : {}),
  });
  // With a callback, a send to a primary that is gone fails quietly instead of an 'error' event.
  const send = (m: WorkerMessage): void => {
    if (process.connected) process.send!(m, undefined, undefined, () => undefined);
  };
  const worker = new Worker(log, send);
  process.on('message', (m) => worker.onMessage(m));
  // The primary owns the lifecycle: a worker ignores SIGINT/SIGTERM sent to the group.
  process.on('SIGTERM', () => {});
  process.on('SIGINT', () => {});
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready' });
}
