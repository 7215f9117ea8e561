// A worker's copy of the config objects, by collection and id: built from a full snapshot,
// patched by deltas. It holds each object once (the SNI map, the upstream set and the
// context cache point at the same SslSnapshot), and counts content hashes so a context
// is dropped when the last object using it goes.
import type { SnapshotDelta } from '../snapshot/delta';
import { hasClientCa } from '../snapshot/lazy-ssl';
import type { ListenerSnapshot, RouteSnapshot, Snapshot, SslSnapshot, UpstreamSnapshot } from '../snapshot/types';

export class Model {
  version = 0;
  readonly ssls = new Map<string, SslSnapshot>();
  /** SNI patterns each enabled server object holds. */
  readonly sniOf = new Map<string, readonly string[]>();
  readonly upstreams = new Map<string, UpstreamSnapshot>();
  routes: RouteSnapshot[] = [];
  listeners: ListenerSnapshot[] = [];
  ticketKeys: Uint8Array | undefined;
  /** Content hash → objects holding it. */
  readonly hashRefs = new Map<string, number>();
  /** Server objects with a client CA. */
  mtlsCount = 0;

  static fromSnapshot(s: Snapshot): Model {
    const m = new Model();
    m.version = s.version;
    for (const ssl of s.ssls) m.putSsl(ssl);
    for (const [pattern, id] of s.sni) {
      const list = m.sniOf.get(id);
      if (list) (list as string[]).push(pattern);
      else m.sniOf.set(id, [pattern]);
    }
    for (const u of s.upstreams) m.upstreams.set(u.id, u);
    m.routes = s.routes;
    m.listeners = s.listeners;
    m.ticketKeys = s.ticketKeys;
    return m;
  }

  /** SNI table entries, for building a SniMap. */
  *sniTable(): Iterable<[string, string]> {
    for (const [id, patterns] of this.sniOf) for (const p of patterns) yield [p, id];
  }

  clone(): Model {
    const m = new Model();
    m.version = this.version;
    for (const [k, v] of this.ssls) m.ssls.set(k, v);
    for (const [k, v] of this.sniOf) m.sniOf.set(k, v);
    for (const [k, v] of this.upstreams) m.upstreams.set(k, v);
    for (const [k, v] of this.hashRefs) m.hashRefs.set(k, v);
    m.routes = this.routes;
    m.listeners = this.listeners;
    m.ticketKeys = this.ticketKeys;
    m.mtlsCount = this.mtlsCount;
    return m;
  }

  /**
   * Apply a delta; returns the undo and the content hashes no object holds any more (the
   * caller drops their contexts once the whole delta is served).
   */
  patch(d: SnapshotDelta): { undo: () => void; released: string[] } {
    const ssls = new Map<string, SslSnapshot | undefined>();
    const snis = new Map<string, readonly string[] | undefined>();
    const ups = new Map<string, UpstreamSnapshot | undefined>();
    const before = { routes: this.routes, listeners: this.listeners, version: this.version, mtls: this.mtlsCount };
    const touched = new Set<string>();
    const rememberSsl = (id: string): void => {
      if (ssls.has(id)) return;
      ssls.set(id, this.ssls.get(id));
      snis.set(id, this.sniOf.get(id));
    };
    const rememberUp = (id: string): void => {
      if (!ups.has(id)) ups.set(id, this.upstreams.get(id));
    };
    let routes: Map<string, RouteSnapshot> | undefined;
    let listeners: Map<string, ListenerSnapshot> | undefined;
    const routeMap = (): Map<string, RouteSnapshot> => (routes ??= new Map(this.routes.map((r) => [r.id, r])));
    const listenerMap = (): Map<string, ListenerSnapshot> =>
      (listeners ??= new Map(this.listeners.map((l) => [l.name, l])));
    for (const r of d.remove) {
      if (r.collection === 'ssls') {
        rememberSsl(r.id);
        const old = this.ssls.get(r.id);
        if (old) touched.add(old.hash);
        this.dropSsl(r.id);
      } else if (r.collection === 'upstreams') {
        rememberUp(r.id);
        this.upstreams.delete(r.id);
      } else if (r.collection === 'routes') routeMap().delete(r.id);
      else listenerMap().delete(r.id);
    }
    for (const o of d.upsert) {
      switch (o.collection) {
        case 'ssls': {
          rememberSsl(o.value.id);
          const old = this.ssls.get(o.value.id);
          if (old) touched.add(old.hash);
          this.dropSsl(o.value.id);
          this.putSsl(o.value);
          if (o.sni.length) this.sniOf.set(o.value.id, o.sni);
          break;
        }
        case 'upstreams':
          rememberUp(o.value.id);
          this.upstreams.set(o.value.id, o.value);
          break;
        case 'routes':
          routeMap().set(o.value.id, o.value);
          break;
        case 'listeners':
          listenerMap().set(o.value.name, o.value);
          break;
      }
    }
    if (d.routeOrder) {
      const m = routeMap();
      this.routes = d.routeOrder.map((id) => {
        const r = m.get(id);
        if (!r) throw new TypeError(`delta ${d.version}: route order names unknown route "${id}"`);
        return r;
      });
    }
    if (listeners) this.listeners = [...listeners.values()];
    this.version = d.version;
    const released = [...touched].filter((h) => !this.hashRefs.has(h));
    const undo = (): void => {
      for (const [id, old] of ssls) {
        this.dropSsl(id);
        if (old) this.putSsl(old);
        const s = snis.get(id);
        if (s) this.sniOf.set(id, s);
      }
      for (const [id, old] of ups) {
        if (old) this.upstreams.set(id, old);
        else this.upstreams.delete(id);
      }
      this.routes = before.routes;
      this.listeners = before.listeners;
      this.version = before.version;
      this.mtlsCount = before.mtls;
    };
    return { undo, released };
  }

  private putSsl(ssl: SslSnapshot): void {
    this.ssls.set(ssl.id, ssl);
    this.hashRefs.set(ssl.hash, (this.hashRefs.get(ssl.hash) ?? 0) + 1);
    if (ssl.type === 'server' && hasClientCa(ssl)) this.mtlsCount++;
  }

  private dropSsl(id: string): void {
    const ssl = this.ssls.get(id);
    this.sniOf.delete(id);
    if (!ssl) return;
    this.ssls.delete(id);
    const n = (this.hashRefs.get(ssl.hash) ?? 1) - 1;
    if (n > 0) this.hashRefs.set(ssl.hash, n);
    else this.hashRefs.delete(ssl.hash);
    if (ssl.type === 'server' && hasClientCa(ssl)) this.mtlsCount--;
  }
}
