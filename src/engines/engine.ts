// One small interface, two adapters (node:tls today, uWebSockets.js later).
import type { SniMap } from '../routing/sni-map';
import type { Router } from '../routing/router';
import type { ListenerSnapshot, Snapshot } from '../snapshot/types';
import type { ContextCache } from './context-cache';
import type { UpstreamSet } from '../proxy';

/** What a worker builds from one snapshot; swapped into engines by one assignment. */
export interface DataPlaneState {
  readonly version: number;
  readonly snapshot: Snapshot;
  readonly sni: SniMap;
  readonly router: Router;
  readonly contexts: ContextCache;
  readonly proxy: UpstreamSet;
}

export interface Engine {
  readonly listener: ListenerSnapshot;
  listen(): Promise<void>;
  /** Swap in a new state; existing connections keep the context they shook hands with. */
  update(state: DataPlaneState, listener: ListenerSnapshot): void;
  /** Stop accepting, let in-flight requests finish (at most timeoutMs), then destroy the rest. */
  close(timeoutMs: number): Promise<void>;
}

export interface EngineDeps {
  log: import('../log').Logger;
}
