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
        this.queue = this.queue.then(() => this.apply(m.bytes));
        return;
      case 'drain':
        void this.drain(m.timeoutMs);
        return;
      case 'stats?':
        this.send({ type: 'stats', id: m.id, stats: { upstreams: this.proxy?.health() ?? [] } });
        return;
    }
  }

  private async apply(bytes: Uint8Array): Promise<void> {
    let snapshot: Snapshot;
    try {
      snapshot = decodeSnapshot(bytes);
    } catch (err) {
      this.send({ type: 'snapshot-error', version: -1, code: 'TLSGATE_E_CONFIG_INVALID', message: (err as Error).message });
      return;
    }
    const prev = this.state;
    const state: DataPlaneState = {
      version: snapshot.version,
      snapshot,
      sni: new SniMap(snapshot.ssls, snapshot.sni),
      router: new Router(snapshot.routes),
      contexts: prev ? prev.contexts.carryOver(snapshot.ssls, CONTEXT_CACHE_MAX) : new ContextCache(CONTEXT_CACHE_MAX),
      proxy: this.proxyStage(snapshot),
    };
    try {
      await this.syncListeners(state);
    } catch (err) {
      const e = err as TlsgateError;
      this.send({ type: 'listen-error', code: e.code ?? 'TLSGATE_E_LISTEN', message: e.message });
      return;
    }
    this.state = state;
    this.send({ type: 'ack', version: snapshot.version });
  }

  /** One UpstreamSet per worker: pools whose upstream did not change are kept across snapshots. */
  private proxyStage(snapshot: Snapshot): UpstreamSet {
    if (this.proxy) this.proxy.update(snapshot.upstreams, snapshot.ssls);
    else this.proxy = new UpstreamSet(snapshot.upstreams, snapshot.ssls, { logger: this.log });
    return this.proxy;
  }

  /** Listeners added, kept or removed by the snapshot; an engine is keyed by name + address + engine. */
  private async syncListeners(state: DataPlaneState): Promise<void> {
    const wanted = new Map(state.snapshot.listeners.map((l) => [key(l), l]));
    for (const [k, engine] of this.engines) {
      if (!wanted.has(k)) {
        this.engines.delete(k);
        void engine.close(10_000);
      }
    }
    for (const [k, l] of wanted) {
      const existing = this.engines.get(k);
      if (existing) {
        existing.update(state, l);
        continue;
      }
      const engine = this.createEngine(l, state);
      await engine.listen();
      this.engines.set(k, engine);
    }
  }

  private createEngine(l: ListenerSnapshot, state: DataPlaneState): Engine {
    if (l.engine === 'uws') {
      // Loaded only when a listener asks for it: a node-only gateway never touches the native binary.
      const { UwsEngine } = require('../engines/uws') as typeof import('../engines/uws');
      return new UwsEngine(l, state, { log: this.log });
    }
    if (l.engine !== 'node') {
      throw new TlsgateError('TLSGATE_E_ENGINE_LOAD', `listener ${l.name}: engine ${String(l.engine)} is not available in this build`);
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
  const log = createLogger({ level: process.env.TLSGATE_LOG_LEVEL ?? 'info', name: 'worker', ...(Number.isInteger(fd) && fd > 0 ? { fd } : {}) });
  const send = (m: WorkerMessage): void => {
    if (process.connected) process.send!(m);
  };
  const worker = new Worker(log, send);
  process.on('message', (m) => worker.onMessage(m));
  // The primary owns the lifecycle: a worker ignores SIGINT/SIGTERM sent to the group.
  process.on('SIGTERM', () => {});
  process.on('SIGINT', () => {});
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready' });
}
