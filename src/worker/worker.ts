// A data-plane worker: decode a snapshot (full, or a delta from the version it serves),
// build or patch the SNI map, router, contexts and upstreams, ack the version.
import { decodeSnapshot } from '../snapshot/codec';
import { decodeDelta, type SnapshotDelta } from '../snapshot/delta';
import type { ListenerSnapshot } from '../snapshot/types';
import { SniMap, type SniChange } from '../routing/sni-map';
import { Router } from '../routing/router';
import { ContextCache } from '../engines/context-cache';
import type { DataPlaneState, Engine, StateChange } from '../engines/engine';
import type { UpstreamSet } from '../proxy';
import { createLogger, type Logger } from '../log';
import { TlsgateError } from '../errors';
import { isPrimaryMessage, type WorkerMessage } from './protocol';
import { SnapshotPipe } from './snapshot-pipe';
import { Model } from './model';
// prom-client's IPC responder, before 'ready': the primary's scrape waits for 'ready' from
// every forked worker (a standby included), never for one that cannot answer yet.
import '../metrics';

const CONTEXT_CACHE_MAX = 10_000; // ≈ 240 MB at 24 KB per context: the ceiling, not the norm

/**
 * The data-plane modules (node engine, request stage, upstream client): hundreds of ms to
 * load on this machine (300-700 ms measured while undici was among them). Loaded after
 * 'ready' is sent, so a respawned worker loads them while the primary encodes and sends its snapshot.
 */
function dataPlane(): { NodeEngine: typeof import('../engines/node').NodeEngine; UpstreamSet: typeof UpstreamSet } {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const { NodeEngine } = require('../engines/node') as typeof import('../engines/node');
  const proxy = require('../proxy') as typeof import('../proxy');
  /* eslint-enable @typescript-eslint/no-require-imports */
  return { NodeEngine, UpstreamSet: proxy.UpstreamSet };
}

/** The state engines read; a delta patches it in place (every field is set synchronously). */
interface LiveState {
  version: number;
  listeners: readonly ListenerSnapshot[];
  ssls: ReadonlyMap<string, import('../snapshot/types').SslSnapshot>;
  mtls: boolean;
  ticketKeys?: Uint8Array;
  sni: SniMap;
  router: Router;
  contexts: ContextCache;
  proxy: UpstreamSet;
}

export class Worker {
  private state: LiveState | undefined;
  private model: Model | undefined;
  private readonly engines = new Map<string, Engine>();
  private proxy: UpstreamSet | undefined;
  private queue: Promise<void> = Promise.resolve();
  private pipe: SnapshotPipe | undefined;
  private served = false;
  /** A standby holds the state but has no listener until promoted at this version (or later). */
  private promoteAt: number | undefined;
  /** performance.now() (ms since process start) when 'ready' was sent. */
  readyAt = 0;

  constructor(
    private readonly log: Logger,
    private readonly send: (m: WorkerMessage) => void,
    /** Warm standby: builds and patches the state like a worker, listens only once promoted. */
    private standby = false,
  ) {}

  onMessage(m: unknown): void {
    if (!isPrimaryMessage(m)) return;
    switch (m.type) {
      case 'snapshot':
        // Snapshots and deltas apply in order, one at a time.
        this.queue = this.queue.then(() => this.apply(m.bytes, m.version));
        return;
      case 'snapshot-pipe':
        // Read in the queue's turn: the pipe carries the snapshots in the order of their messages.
        this.queue = this.queue.then(async () => {
          const bytes = await this.readPipe(m.size);
          if (bytes) await this.apply(bytes, m.version);
        });
        return;
      case 'delta':
        this.queue = this.queue.then(() => this.applyDelta(m.bytes, m.base, m.version));
        return;
      case 'drain':
        void this.drain(m.timeoutMs);
        return;
      case 'node-health':
        // Behind the snapshots sent before it, so it applies to the upstreams they define.
        this.queue = this.queue.then(() => {
          try {
            this.proxy?.setActiveDown(m.upstream, m.down);
          } catch (err) {
            this.log.error({ err, upstream: m.upstream }, 'cannot apply active health');
          }
        });
        return;
      case 'promote':
        // After every snapshot and delta sent before it: the state it holds is that of the primary.
        this.queue = this.queue.then(() => {
          this.promoteAt = Math.max(this.promoteAt ?? 0, m.version);
          return this.promoteIfCurrent();
        });
        return;
      case 'stats?':
        this.send({ type: 'stats', id: m.id, stats: { upstreams: this.proxy?.health() ?? [] } });
        return;
    }
  }

  /**
   * Build everything from a full snapshot, then switch. Any failure (decode, SNI map,
   * router, contexts, upstreams, a listener that cannot bind) leaves the previous state
   * serving and is reported to the primary, which then refuses that version.
   */
  private async apply(bytes: Uint8Array, version: number): Promise<void> {
    let stage = 'decoding the snapshot';
    try {
      const t0 = performance.now();
      const model = Model.fromSnapshot(decodeSnapshot(bytes));
      const t1 = performance.now();
      await this.rebuild(model, (s) => (stage = s));
      // The message, its decode and the previous state are garbage now, and an idle worker
      // would keep them in its RSS (no allocation, no GC): one full collection after a full
      // snapshot (start, resync; deltas do not), ≈ 20 ms at 10k objects.
      setImmediate(() => (globalThis as { gc?: () => void }).gc?.());
      if (this.standby) {
        await this.promoteIfCurrent();
      } else if (!this.served) {
        // Where a (re)started worker's time goes, from process start to serving.
        this.served = true;
        const ms = (x: number): number => Math.round(x);
        const timing = {
          ready_ms: ms(this.readyAt),
          snapshot_at_ms: ms(t0),
          decode_ms: ms(t1 - t0),
          build_ms: ms(performance.now() - t1),
          serving_ms: ms(performance.now()),
          snapshot_size: bytes.length,
          ...memory(),
        };
        this.log.info({ version, ...timing }, 'worker serving');
      }
    } catch (err) {
      this.refuse(err, stage, version);
    }
  }

  /**
   * `size` bytes of the snapshot pipe. A pipe that fails or ends mid-snapshot cannot be
   * resynchronised: the worker exits and the primary forks a new one.
   */
  private async readPipe(size: number): Promise<Uint8Array | undefined> {
    try {
      return await (this.pipe ??= new SnapshotPipe()).read(size);
    } catch (err) {
      this.log.error({ err }, 'cannot read the snapshot pipe; exiting');
      setImmediate(() => process.exit(1));
      return undefined;
    }
  }

  /**
   * A delta from the version this worker serves: patched in place, in O(changed), all or
   * nothing. A worker at another version (it failed or missed one) asks for a full snapshot.
   * A delta that changes listeners (rare) is applied to a copy and rebuilt like a snapshot.
   */
  private async applyDelta(bytes: Uint8Array, base: number, version: number): Promise<void> {
    const model = this.model;
    const state = this.state;
    if (!model || !state || model.version !== base) {
      this.send({ type: 'resync', version, have: model?.version ?? 0 });
      return;
    }
    let stage = 'decoding the delta';
    try {
      const d = decodeDelta(bytes);
      if (d.upsert.some((o) => o.collection === 'listeners') || d.remove.some((r) => r.collection === 'listeners')) {
        const next = model.clone();
        next.patch(d);
        await this.rebuild(next, (s) => (stage = s));
        return;
      }
      stage = 'patching the state';
      const t0 = performance.now();
      this.patch(model, state, d);
      this.send({ type: 'ack', version: d.version });
      const changes = { upsert: d.upsert.length, remove: d.remove.length };
      const what = this.standby ? 'standby: delta applied' : 'delta applied';
      this.log.debug({ version: d.version, ...changes, apply_ms: performance.now() - t0 }, what);
      if (this.standby) await this.promoteIfCurrent();
    } catch (err) {
      this.refuse(err, stage, version);
    }
  }

  /**
   * A promoted standby starts accepting only once it holds the version the primary
   * promoted it at (or a later one): a standby that missed a delta waits for the full
   * snapshot it asked for, so it never serves a stale version.
   */
  private async promoteIfCurrent(): Promise<void> {
    const state = this.state;
    if (!this.standby || this.promoteAt === undefined || !state || state.version < this.promoteAt) return;
    const t0 = performance.now();
    try {
      await this.syncListeners(state, undefined);
    } catch (err) {
      // It cannot serve: exits, and the primary forks a worker in its place (as for a respawn).
      this.log.error({ version: state.version, err }, 'standby cannot bind its listeners');
      setImmediate(() => process.exit(1));
      return;
    }
    this.standby = false;
    this.served = true;
    this.send({ type: 'promoted', version: state.version });
    const listen_ms = Math.round(performance.now() - t0);
    const uptime_ms = Math.round(performance.now());
    this.log.info({ version: state.version, listen_ms, uptime_ms, ...memory() }, 'standby promoted');
  }

  /** A standby loads now what its listeners will need, so a promotion only binds. */
  private preload(listeners: readonly ListenerSnapshot[]): void {
    dataPlane();
    if (!listeners.some((l) => l.engine === 'uws')) return;
    /* eslint-disable @typescript-eslint/no-require-imports */
    const { loadUws } = require('../engines/uws-load') as typeof import('../engines/uws-load');
    require('../engines/uws');
    /* eslint-enable @typescript-eslint/no-require-imports */
    for (const l of listeners) if (l.engine === 'uws') loadUws(l.name);
  }

  /** Synchronous, so no handshake or request ever sees half a delta. */
  private patch(model: Model, state: LiveState, d: SnapshotDelta): void {
    const undos: Array<() => void> = [];
    const before = { version: state.version, mtls: state.mtls, router: state.router };
    const sniBefore = new Map<string, readonly string[]>();
    const ids = new Set<string>();
    for (const o of d.upsert) if (o.collection === 'ssls') ids.add(o.value.id);
    for (const r of d.remove) if (r.collection === 'ssls') ids.add(r.id);
    for (const id of ids) sniBefore.set(id, model.sniOf.get(id) ?? []);
    const clientBefore = [...ids].some((id) => model.ssls.get(id)?.type === 'client');
    try {
      const { undo, released } = model.patch(d);
      undos.push(undo);
      const changes: SniChange[] = [...ids].map((id) => ({
        id,
        ssl: model.ssls.get(id),
        before: sniBefore.get(id)!,
        after: model.sniOf.get(id) ?? [],
      }));
      undos.push(state.sni.patch(changes));
      if (d.routeOrder) state.router = new Router(model.routes);
      const upstreamsChanged =
        clientBefore ||
        [...ids].some((id) => model.ssls.get(id)?.type === 'client') ||
        d.upsert.some((o) => o.collection === 'upstreams') ||
        d.remove.some((r) => r.collection === 'upstreams');
      if (upstreamsChanged) {
        // Restored after the model's undo (pushed first, so it runs last).
        undos.unshift(() => state.proxy.update([...model.upstreams.values()], model.ssls));
        state.proxy.update([...model.upstreams.values()], model.ssls);
      }
      state.version = model.version;
      state.mtls = model.mtlsCount > 0;
      const names = new Set<string>();
      for (const c of changes) for (const n of [...c.before, ...c.after]) names.add(n);
      const change: StateChange = { ids, names };
      const updated: Engine[] = [];
      try {
        for (const e of this.engines.values()) {
          updated.push(e);
          e.update(state, e.listener, change);
        }
      } catch (err) {
        this.restore(undos, state, before);
        for (const e of updated) {
          try {
            e.update(state, e.listener, change);
          } catch (again) {
            const listener = e.listener.name;
            this.log.error({ err: again, listener }, 'cannot restore the previous state of a listener');
          }
        }
        throw err;
      }
      // Served: contexts of material no object holds any more go (sockets keep their own).
      for (const h of released) state.contexts.dropHash(h);
    } catch (err) {
      this.restore(undos, state, before);
      throw err;
    }
  }

  private restore(
    undos: Array<() => void>,
    state: LiveState,
    before: { version: number; mtls: boolean; router: Router },
  ): void {
    for (const u of undos.splice(0).reverse()) {
      try {
        u();
      } catch (err) {
        this.log.error({ err }, 'cannot undo part of a delta');
      }
    }
    state.version = before.version;
    state.mtls = before.mtls;
    state.router = before.router;
  }

  /** A full (re)build from a model: new state, listeners synced, then one switch. */
  private async rebuild(model: Model, at: (stage: string) => void): Promise<void> {
    const prev = this.state;
    const prevModel = this.model;
    at('building the SNI map');
    const sni = new SniMap(model.ssls.values(), model.sniTable());
    at('building the router');
    const router = new Router(model.routes);
    const contexts = prev
      ? prev.contexts.carryOver(model.hashRefs, CONTEXT_CACHE_MAX)
      : new ContextCache(CONTEXT_CACHE_MAX);
    at('building the upstreams');
    const proxy = this.proxyStage(model);
    const state: LiveState = {
      version: model.version,
      listeners: model.listeners,
      ssls: sni.byId,
      mtls: model.mtlsCount > 0,
      ...(model.ticketKeys ? { ticketKeys: model.ticketKeys } : {}),
      sni,
      router,
      contexts,
      proxy,
    };
    at('binding and updating the listeners');
    try {
      if (this.standby) this.preload(state.listeners);
      else await this.syncListeners(state, prev);
    } catch (err) {
      // Upstream pools back to the running snapshot's (UpstreamSet.update is all or nothing).
      if (prevModel) this.proxy?.update([...prevModel.upstreams.values()], prevModel.ssls);
      throw err;
    }
    this.state = state;
    this.model = model;
    this.send({ type: 'ack', version: model.version });
  }

  private refuse(err: unknown, stage: string, version: number): void {
    const e = err as Partial<TlsgateError> & { code?: string };
    const ours = typeof e.code === 'string' && e.code.startsWith('TLSGATE_E_');
    const text = e.message ?? String(err);
    const message = ours ? text : `${stage}: ${text}${e.code ? ` (${e.code})` : ''}`;
    this.log.error({ version, code: e.code, err }, 'cannot apply the snapshot; the previous one keeps serving');
    this.send({ type: 'snapshot-error', version, code: ours ? e.code! : 'TLSGATE_E_SNAPSHOT_APPLY', message });
    // Nothing to serve at all: exit, the primary respawns (with back-off) on its last good snapshot.
    if (!this.state) setImmediate(() => process.exit(1));
  }

  /** One UpstreamSet per worker: pools whose upstream did not change are kept across snapshots. */
  private proxyStage(model: Model): UpstreamSet {
    const ups = [...model.upstreams.values()];
    if (this.proxy) this.proxy.update(ups, model.ssls);
    else this.proxy = new (dataPlane().UpstreamSet)(ups, model.ssls, { logger: this.log });
    return this.proxy;
  }

  /**
   * Listeners added, kept or removed by the snapshot; an engine is keyed by name + address
   * + engine. Bind first, then switch: new listeners listen before removed ones close, so
   * a listener moved to a port it cannot bind keeps serving on its old one. Exception: a
   * new listener on the address of a removed one (a rename, an engine swap) cannot bind
   * beside it, so that old one closes first.
   */
  private async syncListeners(state: LiveState, prev: LiveState | undefined): Promise<void> {
    const wanted = new Map(state.listeners.map((l) => [key(l), l]));
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
          if (prev) e.update(prev, prev.listeners.find((l) => key(l) === key(e.listener)) ?? e.listener);
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
    return new (dataPlane().NodeEngine)(l, state, { log: this.log });
  }

  private async drain(timeoutMs: number): Promise<void> {
    await Promise.all([...this.engines.values()].map((e) => e.close(timeoutMs)));
    await this.proxy?.close();
    process.exit(0);
  }
}

/** MB, for the start-up log lines. */
function memory(): { rss_mb: number; heap_mb: number; external_mb: number } {
  const m = process.memoryUsage();
  const mb = (x: number): number => Math.round((x / 2 ** 20) * 10) / 10;
  return { rss_mb: mb(m.rss), heap_mb: mb(m.heapUsed), external_mb: mb(m.external) };
}

function key(l: ListenerSnapshot): string {
  return `${l.name}|${l.host}|${l.port}|${l.engine}`;
}

export function runWorker(standby = process.env.TLSGATE_STANDBY === '1'): void {
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
  const worker = new Worker(log, send, standby);
  process.on('message', (m) => worker.onMessage(m));
  // The primary owns the lifecycle: a worker ignores SIGINT/SIGTERM sent to the group.
  process.on('SIGTERM', () => {});
  process.on('SIGINT', () => {});
  process.on('disconnect', () => process.exit(0));
  worker.readyAt = performance.now();
  send({ type: 'ready' });
  setImmediate(dataPlane);
}
