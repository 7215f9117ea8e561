// Precompiled SNI map: exact Map + wildcard-by-parent Map. Read on every handshake: O(1),
// no allocation beyond the lower-cased name. Built once from a full snapshot, then
// patched in place by deltas in O(changed names), with an undo for a delta that fails.
import type { SslSnapshot } from '../snapshot/types';
import { normalizeHost, wildcardParent } from './names';

export type SniMatch = 'exact' | 'wildcard' | 'default' | 'none';

export interface SniResult {
  ssl: SslSnapshot | undefined;
  match: SniMatch;
}

/** One SSL object of a delta: its new form and the SNI patterns it now holds (none when removed). */
export interface SniChange {
  id: string;
  ssl: SslSnapshot | undefined;
  /** Patterns it held before the change. */
  before: readonly string[];
  after: readonly string[];
}

export class SniMap {
  private readonly exact = new Map<string, SslSnapshot>();
  private readonly wildcard = new Map<string, SslSnapshot>();
  /** parent → exact names one label below it (`example.com` → [`a.example.com`]). */
  private readonly children = new Map<string, string[]>();
  private readonly ids = new Map<string, SslSnapshot>();

  constructor(ssls: Iterable<SslSnapshot>, table: Iterable<readonly [string, string]>) {
    for (const s of ssls) this.ids.set(s.id, s);
    for (const [pattern, id] of table) {
      const ssl = this.ids.get(id);
      if (ssl) this.setPattern(pattern, ssl);
    }
  }

  get byId(): ReadonlyMap<string, SslSnapshot> {
    return this.ids;
  }

  /**
   * Apply the changes of a delta; returns the undo. Old patterns of every changed object are
   * removed first (those still pointing at it), then the new ones set: a name moved between
   * two objects of one delta ends on its new owner whatever the order of the changes.
   */
  patch(changes: readonly SniChange[]): () => void {
    const patterns = new Map<string, SslSnapshot | undefined>();
    const ids = new Map<string, SslSnapshot | undefined>();
    const remember = (p: string): void => {
      if (!patterns.has(p)) patterns.set(p, this.getPattern(p));
    };
    for (const c of changes) {
      if (!ids.has(c.id)) ids.set(c.id, this.ids.get(c.id));
      for (const p of c.before) {
        if (this.getPattern(p)?.id !== c.id) continue;
        remember(p);
        this.setPattern(p, undefined);
      }
    }
    for (const c of changes) {
      if (c.ssl) this.ids.set(c.id, c.ssl);
      else this.ids.delete(c.id);
      if (!c.ssl) continue;
      for (const p of c.after) {
        remember(p);
        this.setPattern(p, c.ssl);
      }
    }
    return () => {
      for (const [p, ssl] of patterns) this.setPattern(p, ssl);
      for (const [id, ssl] of ids) {
        if (ssl) this.ids.set(id, ssl);
        else this.ids.delete(id);
      }
    };
  }

  private getPattern(p: string): SslSnapshot | undefined {
    return p.startsWith('*.') ? this.wildcard.get(p.slice(2)) : this.exact.get(p);
  }

  private setPattern(pattern: string, ssl: SslSnapshot | undefined): void {
    if (pattern.startsWith('*.')) {
      if (ssl) this.wildcard.set(pattern.slice(2), ssl);
      else this.wildcard.delete(pattern.slice(2));
      return;
    }
    const had = this.exact.has(pattern);
    if (ssl) this.exact.set(pattern, ssl);
    else this.exact.delete(pattern);
    if (had === (ssl !== undefined)) return;
    const parent = wildcardParent(pattern);
    if (parent === null) return;
    const list = this.children.get(parent);
    if (ssl) {
      if (list) list.push(pattern);
      else this.children.set(parent, [pattern]);
    } else if (list) {
      const i = list.indexOf(pattern);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.children.delete(parent);
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
    const d = defaultSsl === undefined ? undefined : this.ids.get(defaultSsl);
    return d ? { ssl: d, match: 'default' } : { ssl: undefined, match: 'none' };
  }
}
