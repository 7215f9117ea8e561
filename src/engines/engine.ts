// One small interface, two adapters (node:tls and uWebSockets.js).
import type { SniMap } from '../routing/sni-map';
import type { Router } from '../routing/router';
import type { ListenerSnapshot, SslSnapshot } from '../snapshot/types';
import type { ContextCache } from './context-cache';
import type { UpstreamSet } from '../proxy';

/**
 * What a worker serves. Built from a full snapshot, then patched in place by deltas
 * (worker/worker.ts): an engine reads it at each use and never keeps a part of it.
 */
export interface DataPlaneState {
  readonly version: number;
  readonly listeners: readonly ListenerSnapshot[];
  /** SSL objects by id (the SNI map's). */
  readonly ssls: ReadonlyMap<string, SslSnapshot>;
  /** Some server SSL object asks for a client certificate: the node engine then issues no session tickets. */
  readonly mtls: boolean;
  /** 48 bytes shared by every worker so a session ticket resumes on any of them. */
  readonly ticketKeys?: Uint8Array;
  readonly sni: SniMap;
  readonly router: Router;
  readonly contexts: ContextCache;
  readonly proxy: UpstreamSet;
}

/** What a delta changed, for an engine that can patch itself instead of rescanning everything. */
export interface StateChange {
  /** SSL objects upserted or removed. */
  readonly ids: ReadonlySet<string>;
  /** SNI patterns those objects held before or hold now. */
  readonly names: ReadonlySet<string>;
}

export interface Engine {
  readonly listener: ListenerSnapshot;
  listen(): Promise<void>;
  /**
   * Serve a new or patched state; existing connections keep the context they shook hands
   * with. `change`: what a delta changed (absent: anything may have changed). Throws when
   * the listener cannot serve it (the worker then restores the previous state).
   */
  update(state: DataPlaneState, listener: ListenerSnapshot, change?: StateChange): void;
  /** Stop accepting, let in-flight requests finish (at most timeoutMs), then destroy the rest. */
  close(timeoutMs: number): Promise<void>;
}

export interface EngineDeps {
  log: import('../log').Logger;
}
