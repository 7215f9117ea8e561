// Precompiled SNI map: exact Map + wildcard-by-parent Map. Built once per snapshot,
// read on every handshake: O(1), no allocation beyond the lower-cased name.
import type { SslSnapshot } from '../snapshot/types';
import { normalizeHost, wildcardParent } from './names';

export type SniMatch = 'exact' | 'wildcard' | 'default' | 'none';

export interface SniResult {
  ssl: SslSnapshot | undefined;
  match: SniMatch;
}

export class SniMap {
  private readonly exact = new Map<string, SslSnapshot>();
  private readonly wildcard = new Map<string, SslSnapshot>();
  readonly byId: ReadonlyMap<string, SslSnapshot>;

  constructor(ssls: SslSnapshot[], table: Array<[string, string]>) {
    const byId = new Map(ssls.map((s) => [s.id, s]));
    this.byId = byId;
    for (const [pattern, id] of table) {
      const ssl = byId.get(id);
      if (!ssl) continue;
      if (pattern.startsWith('*.')) this.wildcard.set(pattern.slice(2), ssl);
      else this.exact.set(pattern, ssl);
    }
  }

  get size(): number {
    return this.exact.size + this.wildcard.size;
  }

  /** servername as sent by the client (may be undefined: no SNI). */
  lookup(servername: string | undefined | false, defaultSsl: string | undefined): SniResult {
    if (servername) {
      const name = normalizeHost(servername);
      if (name !== null) {
        const e = this.exact.get(name);
        if (e) return { ssl: e, match: 'exact' };
        const parent = wildcardParent(name);
        const w = parent === null ? undefined : this.wildcard.get(parent);
        if (w) return { ssl: w, match: 'wildcard' };
      }
    }
    const d = defaultSsl === undefined ? undefined : this.byId.get(defaultSsl);
    return d ? { ssl: d, match: 'default' } : { ssl: undefined, match: 'none' };
  }
}
