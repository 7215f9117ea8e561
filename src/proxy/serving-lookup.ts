// Which SSL object serves a name: the one a handshake with that name as SNI would get,
// default_ssl included. Asked on every request (the stage's authority rule, and HTTP/2's
// coalescing check before it), so answered from a cache per worker state: the SNI map's
// lookup normalizes the name again on every call.
import type { SniMap } from '../routing/sni-map';
import type { SslSnapshot } from '../snapshot/types';

/** What the lookup reads from a worker's state (engines/engine.ts DataPlaneState has it). */
export interface ServingState {
  /** The snapshot version: a delta patches `sni` in place and bumps it. */
  readonly version: number;
  readonly sni: SniMap;
}

/** Hosts are client input: past this many names per default_ssl the cache starts over. */
const MAX_NAMES = 1024;

export class ServingLookup {
  private version: number;
  /** The listener's default_ssl ('' for none) → host → serving object (null: none). */
  private readonly byDefault = new Map<string, Map<string, SslSnapshot | null>>();

  constructor(private readonly state: ServingState) {
    this.version = state.version;
  }

  /** host: a normalized name (no port). */
  get(host: string, defaultSsl: string | undefined): SslSnapshot | null {
    // A delta changed the map under the same state object: every answer may be stale.
    if (this.version !== this.state.version) {
      this.byDefault.clear();
      this.version = this.state.version;
    }
    const key = defaultSsl ?? '';
    let names = this.byDefault.get(key);
    if (names === undefined) this.byDefault.set(key, (names = new Map()));
    let ssl = names.get(host);
    if (ssl === undefined) {
      if (names.size >= MAX_NAMES) names.clear();
      ssl = this.state.sni.lookup(host, defaultSsl).ssl ?? null;
      names.set(host, ssl);
    }
    return ssl;
  }
}

/** One per state object: a full snapshot brings a new state, and its lookup is dropped with the old one. */
const lookups = new WeakMap<ServingState, ServingLookup>();

export function servingLookup(state: ServingState): ServingLookup {
  let l = lookups.get(state);
  if (l === undefined) lookups.set(state, (l = new ServingLookup(state)));
  return l;
}
