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
  /** parent → exact names one label below it (`example.com` → [`a.example.com`]). */
  private readonly children = new Map<string, string[]>();
  readonly byId: ReadonlyMap<string, SslSnapshot>;

  constructor(ssls: SslSnapshot[], table: Array<[string, string]>) {
    const byId = new Map(ssls.map((s) => [s.id, s]));
    this.byId = byId;
    for (const [pattern, id] of table) {
      const ssl = byId.get(id);
      if (!ssl) continue;
      if (pattern.startsWith('*.')) this.wildcard.set(pattern.slice(2), ssl);
      else {
        this.exact.set(pattern, ssl);
        const parent = wildcardParent(pattern);
        if (parent !== null) {
          const list = this.children.get(parent);
          if (list) list.push(pattern);
          else this.children.set(parent, [pattern]);
        }
      }
    }
  }

  /** The SSL object of `*.parent`, if any. */
  wildcardOf(parent: string): SslSnapshot | undefined {
    return this.wildcard.get(parent);
  }

  /** Exact names one label below `parent`: what a `*.parent` entry would shadow in a tree that matches wildcards itself (uWS). */
  exactUnder(parent: string): readonly string[] {
    return this.children.get(parent) ?? [];
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
