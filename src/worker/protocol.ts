// Every message between the primary and a worker. IPC uses the 'advanced'
// serialization, so Uint8Array crosses as bytes.
import type { UpstreamHealthView } from '../proxy';
import type { NodeHealthMessage } from '../proxy/active-health';

/**
 * The worker's fd of its snapshot pipe (cluster stdio index; 4 is the log fd). A full snapshot
 * goes there, not over IPC: IPC reads a message in 64 KB chunks that stay in the C heap, fragmented
 * and never returned, after the message is freed (100k objects, 131 MB: 129 MB of [heap] RSS per
 * worker); the pipe's chunks are copied as they arrive into one buffer (worker/snapshot-pipe.ts), which
 * is returned to the system when freed.
 */
export const WORKER_SNAPSHOT_FD = 5;

/** primary → worker */
export type PrimaryMessage =
  | { type: 'snapshot'; version: number; bytes: Uint8Array }
  /** The same snapshot, its `size` bytes written on the worker's snapshot pipe (WORKER_SNAPSHOT_FD). */
  | { type: 'snapshot-pipe'; version: number; size: number }
  /** msgpack SnapshotDelta (snapshot/delta.ts): applies only on a worker serving `base`. */
  | { type: 'delta'; base: number; version: number; bytes: Uint8Array }
  | { type: 'drain'; timeoutMs: number }
  /** Active health checks (proxy/active-health.ts): the nodes of `upstream` to skip, as `host:port`. */
  | NodeHealthMessage
  /**
   * To the standby worker: serve. It starts accepting once it holds `version` (or a later
   * one) and answers 'promoted'; a standby behind it waits for the snapshot it asked for.
   */
  | { type: 'promote'; version: number }
  | { type: 'stats?'; id: number };

/** Passive health of one upstream as one worker sees it (the proxy's own view, sent as is). */
export type UpstreamHealth = UpstreamHealthView;

export interface WorkerStats {
  upstreams: UpstreamHealth[];
}

/** worker → primary */
export type WorkerMessage =
  | { type: 'ready' }
  /** The worker serves `version` (every listener bound, every state built). */
  | { type: 'ack'; version: number }
  /** `version` could not be applied; the worker keeps serving its previous one (if any). */
  | { type: 'snapshot-error'; version: number; code: string; message: string }
  | { type: 'stats'; id: number; stats: WorkerStats }
  /** A delta to `version` arrived while this worker serves `have`, not its base: send a full snapshot. */
  | { type: 'resync'; version: number; have: number }
  /** A standby now accepts on every listener, serving `version`. */
  | { type: 'promoted'; version: number };

export function isWorkerMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}
export function isPrimaryMessage(m: unknown): m is PrimaryMessage {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}
