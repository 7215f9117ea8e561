// SecureContexts built on the first handshake for their SSL object (≈1 ms and ≈24 KB
// each, measured), cached by content hash and bounded, so 10k certificates do not
// cost 10 s and 240 MB per worker at start, and a rotation rebuilds one context.
import { createSecureContext, type SecureContext } from 'node:tls';
import type { SslSnapshot, TlsProtocol } from '../snapshot/types';

export class ContextCache {
  private readonly map = new Map<string, SecureContext>();

  constructor(private readonly max: number) {}

  get size(): number {
    return this.map.size;
  }

  get(ssl: SslSnapshot): SecureContext {
    let ctx = this.map.get(ssl.hash);
    if (ctx) {
      // LRU: re-insert at the end.
      this.map.delete(ssl.hash);
      this.map.set(ssl.hash, ctx);
      return ctx;
    }
    ctx = buildContext(ssl);
    this.map.set(ssl.hash, ctx);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
    return ctx;
  }

  /** Carry over the contexts a new snapshot still uses; open sockets keep their own reference. */
  carryOver(ssls: SslSnapshot[], max: number): ContextCache {
    const next = new ContextCache(max);
    for (const s of ssls) {
      const ctx = this.map.get(s.hash);
      if (ctx) next.map.set(s.hash, ctx);
    }
    return next;
  }
}

const ORDER: TlsProtocol[] = ['TLSv1.2', 'TLSv1.3'];

/** One session-id context for every object: a ticket resumes on any worker. */
export const SESSION_ID_CONTEXT = 'tlsgate';

export function versionRange(protocols: readonly TlsProtocol[]): { minVersion: TlsProtocol; maxVersion: TlsProtocol } {
  const sorted = ORDER.filter((p) => protocols.includes(p));
  return { minVersion: sorted[0] ?? 'TLSv1.2', maxVersion: sorted[sorted.length - 1] ?? 'TLSv1.3' };
}

export function buildContext(ssl: SslSnapshot, o: { secureOptions?: number; protocols?: readonly TlsProtocol[] } = {}): SecureContext {
  // Node's SNI switch copies only the context's last-loaded pair to the connection,
  // so the preferred pair (first in the snapshot) is loaded last.
  const pairs = [...ssl.pairs].reverse();
  return createSecureContext({
    cert: pairs.map((p) => p.cert),
    key: pairs.map((p) => p.key),
    ...(ssl.clientCa ? { ca: ssl.clientCa } : {}),
    ...versionRange(o.protocols ?? ssl.protocols),
    sessionIdContext: SESSION_ID_CONTEXT,
    secureOptions: o.secureOptions ?? 0,
  });
}
