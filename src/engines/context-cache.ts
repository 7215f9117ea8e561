// SecureContexts built on the first handshake for their SSL object (≈1 ms and ≈24 KB
// each, measured), cached by content hash and bounded, so 10k certificates do not
// cost 10 s and 240 MB per worker at start, and a rotation rebuilds one context.
import { createSecureContext, type SecureContext } from 'node:tls';
import type { SslSnapshot, TlsProtocol } from '../snapshot/types';

export class ContextCache {
  private readonly map = new Map<string, SecureContext>();

  constructor(
    private readonly max: number,
    private readonly ticketKeys: Buffer | undefined,
  ) {}

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
    ctx = buildContext(ssl, this.ticketKeys);
    this.map.set(ssl.hash, ctx);
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
    return ctx;
  }

  /** Carry over the contexts a new snapshot still uses; open sockets keep their own reference. */
  carryOver(ssls: SslSnapshot[], max: number, ticketKeys: Buffer | undefined): ContextCache {
    const next = new ContextCache(max, ticketKeys);
    if (ticketKeys && this.ticketKeys && !ticketKeys.equals(this.ticketKeys)) return next;
    for (const s of ssls) {
      const ctx = this.map.get(s.hash);
      if (ctx) next.map.set(s.hash, ctx);
    }
    return next;
  }
}

const ORDER: TlsProtocol[] = ['TLSv1.2', 'TLSv1.3'];

export function buildContext(ssl: SslSnapshot, ticketKeys: Buffer | undefined): SecureContext {
  const sorted = ORDER.filter((p) => ssl.protocols.includes(p));
  // Node's SNI switch copies only the context's last-loaded pair to the connection,
  // so the preferred pair (first in the snapshot) is loaded last.
  const pairs = [...ssl.pairs].reverse();
  const ctx = createSecureContext({
    cert: pairs.map((p) => p.cert),
    key: pairs.map((p) => p.key),
    ...(ssl.clientCa ? { ca: ssl.clientCa } : {}),
    minVersion: sorted[0] ?? 'TLSv1.2',
    maxVersion: sorted[sorted.length - 1] ?? 'TLSv1.3',
    // Same id on every context: session resumption survives the SNI context switch.
    sessionIdContext: 'tlsgate',
  });
  if (ticketKeys) ctx.context.setTicketKeys(ticketKeys);
  return ctx;
}
