// A change between two snapshots, by collection and id: what a worker at `base` needs to
// serve `version`. The primary computes it from two snapshots that share every object
// that did not change (compile.ts returns the same SslSnapshot object for an object whose
// inputs did not change), so the diff costs one identity test per object, and the bytes
// sent are those of the changed objects only.
import { Packr } from 'msgpackr';
import type { ListenerSnapshot, RouteSnapshot, Snapshot, SslSnapshot, UpstreamSnapshot } from './types';

export type Collection = 'ssls' | 'upstreams' | 'routes' | 'listeners';

export type DeltaObject =
  /** sni: the patterns this object holds in the SNI table ([] when disabled or of type client). */
  | { collection: 'ssls'; value: SslSnapshot; sni: string[] }
  | { collection: 'upstreams'; value: UpstreamSnapshot }
  | { collection: 'routes'; value: RouteSnapshot }
  | { collection: 'listeners'; value: ListenerSnapshot };

export interface SnapshotDelta {
  /** The version a worker must serve to apply this delta; any other gets a full snapshot. */
  base: number;
  version: number;
  createdAt: number;
  upsert: DeltaObject[];
  remove: Array<{ collection: Collection; id: string }>;
  /** Route ids in order (match order breaks ties by it): present when a route changed. */
  routeOrder?: string[];
}

const packr = new Packr({ useRecords: false, moreTypes: false });

/**
 * `bytes` (from msgpackr) as a buffer of its own, and msgpackr's output buffer let go.
 * msgpackr packs into one module-wide buffer (shared by every Packr), returns a view of
 * it and keeps it for the next pack: after the full snapshot (13 MB at 10k objects) that
 * buffer was 40 MB, retained for the process's life (heap snapshot of the primary, 10k
 * objects), and each later delta was a view into it too.
 */
export function ownBytes(bytes: Uint8Array): Uint8Array {
  const own = Buffer.from(bytes);
  packr.useBuffer(Buffer.allocUnsafeSlow(8192));
  return own;
}

export function encodeDelta(d: SnapshotDelta): Uint8Array {
  return packr.pack(d);
}

export function decodeDelta(bytes: Uint8Array): SnapshotDelta {
  const d = packr.unpack(bytes) as SnapshotDelta;
  if (typeof d !== 'object' || d === null || typeof d.base !== 'number' || !Array.isArray(d.upsert)) {
    throw new TypeError('delta bytes do not decode to a delta');
  }
  return d;
}

/** The SNI patterns of each enabled server object, by id. */
export function sniById(s: Snapshot): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const [pattern, id] of s.sni) {
    const list = out.get(id);
    if (list) list.push(pattern);
    else out.set(id, [pattern]);
  }
  return out;
}

const NONE: string[] = [];

function sameList(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function json(v: unknown): string {
  return JSON.stringify(v);
}

/**
 * What changed from `a` to `b`. Objects are compared by identity first, then by content
 * hash (SSL objects, upstreams) or JSON (routes, listeners: few and small). `sniA`/`sniB`:
 * sniById() of each side, passed in so a caller that keeps them does not rebuild them.
 */
export function diffSnapshots(
  a: Snapshot,
  b: Snapshot,
  sniA: ReadonlyMap<string, string[]> = sniById(a),
  sniB: ReadonlyMap<string, string[]> = sniById(b),
  /** `b.ssls` is `patch.from` with only `patch.indices` replaced (compile.ts's rotation path). */
  patch?: { from: readonly SslSnapshot[]; indices: readonly number[] },
): SnapshotDelta {
  const upsert: DeltaObject[] = [];
  const remove: SnapshotDelta['remove'] = [];
  const changedSsl = (o: SslSnapshot | undefined, s: SslSnapshot): DeltaObject | undefined => {
    const sni = sniB.get(s.id) ?? NONE;
    const same = o !== undefined && (o === s || (o.hash === s.hash && o.type === s.type && sameList(o.snis, s.snis)));
    return same && sameList(sniA.get(s.id) ?? NONE, sni) ? undefined : { collection: 'ssls', value: s, sni };
  };
  // The same SNI table and the same ids in the same order (a rotation): one identity test
  // per index, no map of 10k ids (a third of the diff's cost, profiled).
  // `b` patches `a` itself: only the patched indices can differ (O(change): the identity
  // pass below was 3-90 ms of each rotation at 100k objects, profiled).
  let patched = patch !== undefined && patch.from === a.ssls && a.sni === b.sni && a.ssls.length === b.ssls.length;
  for (const i of patched ? patch!.indices : []) {
    const o = a.ssls[i];
    const s = b.ssls[i];
    if (o === s) continue;
    if (!o || !s || o.id !== s.id) {
      patched = false; // not a patch after all: the passes below
      upsert.length = 0;
      break;
    }
    const d = changedSsl(o, s);
    if (d) upsert.push(d);
  }
  let byIndex = !patched && a.sni === b.sni && a.ssls.length === b.ssls.length;
  for (let i = 0; byIndex && i < b.ssls.length; i++) {
    const o = a.ssls[i]!;
    const s = b.ssls[i]!;
    if (o === s) continue;
    if (o.id !== s.id) byIndex = false;
    else {
      const d = changedSsl(o, s);
      if (d) upsert.push(d);
    }
  }
  if (!byIndex && !patched) {
    upsert.length = 0;
    const oldSsl = new Map(a.ssls.map((s) => [s.id, s]));
    for (const s of b.ssls) {
      const o = oldSsl.get(s.id);
      oldSsl.delete(s.id);
      const d = changedSsl(o, s);
      if (d) upsert.push(d);
    }
    for (const id of oldSsl.keys()) remove.push({ collection: 'ssls', id });
  }

  const oldUp = new Map(a.upstreams.map((u) => [u.id, u]));
  for (const u of b.upstreams) {
    const o = oldUp.get(u.id);
    oldUp.delete(u.id);
    if (o === u || (o && o.hash === u.hash)) continue;
    upsert.push({ collection: 'upstreams', value: u });
  }
  for (const id of oldUp.keys()) remove.push({ collection: 'upstreams', id });

  const oldRoute = new Map(a.routes.map((r) => [r.id, json(r)]));
  let routesChanged = a.routes.length !== b.routes.length;
  b.routes.forEach((r, i) => {
    const o = oldRoute.get(r.id);
    oldRoute.delete(r.id);
    if (a.routes[i]?.id !== r.id) routesChanged = true;
    if (o === json(r)) return;
    routesChanged = true;
    upsert.push({ collection: 'routes', value: r });
  });
  for (const id of oldRoute.keys()) remove.push({ collection: 'routes', id });

  const oldListener = new Map(a.listeners.map((l) => [l.name, json(l)]));
  for (const l of b.listeners) {
    const o = oldListener.get(l.name);
    oldListener.delete(l.name);
    if (o !== json(l)) upsert.push({ collection: 'listeners', value: l });
  }
  for (const id of oldListener.keys()) remove.push({ collection: 'listeners', id });

  return {
    base: a.version,
    version: b.version,
    createdAt: b.createdAt,
    upsert,
    remove,
    ...(routesChanged ? { routeOrder: b.routes.map((r) => r.id) } : {}),
  };
}

export function isEmptyDelta(d: SnapshotDelta): boolean {
  return d.upsert.length === 0 && d.remove.length === 0 && d.routeOrder === undefined;
}
