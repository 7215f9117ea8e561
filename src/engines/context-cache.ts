// TLS servers (one SecureContext each) built on the first handshake for their SSL object
// (≈1 ms and ≈24 KB each, measured), cached by content hash and bounded, so 10k
// certificates do not cost 10 s and 240 MB per worker at start, and a rotation rebuilds
// one context.
import { constants } from 'node:crypto';
import type { SecureContextOptions } from 'node:tls';
import type { SslSnapshot, TlsProtocol } from '../snapshot/types';

interface Entry<T> {
  hash: string;
  value: T;
}

export class ContextCache<T = unknown> {
  private readonly map = new Map<string, Entry<T>>();
  /** Content hash → cache keys built for it (one per engine and ticket mode): a delta drops them in O(1). */
  private readonly byHash = new Map<string, Set<string>>();

  constructor(private readonly max: number) {}

  get size(): number {
    return this.map.size;
  }

  /** The value under `key` (built by `build` when absent); `hash` is the SSL object's content hash. */
  get<V extends T>(key: string, hash: string, build: () => V): V {
    const hit = this.map.get(key);
    if (hit) {
      // LRU: re-insert at the end.
      this.map.delete(key);
      this.map.set(key, hit);
      return hit.value as V;
    }
    const value = build();
    this.put(key, { hash, value });
    if (this.map.size > this.max) this.delete(this.map.keys().next().value!);
    return value;
  }

  /**
   * Forget every entry of a content hash no live object has any more. Open sockets keep
   * their own reference to the context they shook hands with; the cache must not keep it
   * for them (it is what made memory grow with every rotation).
   */
  dropHash(hash: string): void {
    const keys = this.byHash.get(hash);
    if (!keys) return;
    for (const k of [...keys]) this.delete(k);
  }

  /** Carry over the entries a new snapshot still uses; open sockets keep their own reference. */
  carryOver(liveHashes: ReadonlySet<string> | ReadonlyMap<string, unknown>, max: number): ContextCache<T> {
    const next = new ContextCache<T>(max);
    for (const [k, e] of this.map) if (liveHashes.has(e.hash)) next.put(k, e);
    return next;
  }

  private put(key: string, e: Entry<T>): void {
    this.map.set(key, e);
    const set = this.byHash.get(e.hash);
    if (set) set.add(key);
    else this.byHash.set(e.hash, new Set([key]));
  }

  private delete(key: string): void {
    const e = this.map.get(key);
    if (!e) return;
    this.map.delete(key);
    const set = this.byHash.get(e.hash);
    set?.delete(key);
    if (set?.size === 0) this.byHash.delete(e.hash);
  }
}

const ORDER: TlsProtocol[] = ['TLSv1.2', 'TLSv1.3'];

export function versionRange(protocols: readonly TlsProtocol[]): { minVersion: TlsProtocol; maxVersion: TlsProtocol } {
  const sorted = ORDER.filter((p) => protocols.includes(p));
  return { minVersion: sorted[0] ?? 'TLSv1.2', maxVersion: sorted[sorted.length - 1] ?? 'TLSv1.3' };
}

/** TLS 1.3 suites offered when `ssl_ciphers` names none (OpenSSL's default three). */
export const TLS13_SUITES = 'TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256';

/**
 * The OpenSSL cipher string of an object: its TLS ≤ 1.2 list, plus the default TLS 1.3
 * suites unless the list names some (Node turns TLS 1.3 off for a list without any).
 */
export function cipherString(ciphers: string): string {
  return /(^|:)TLS_/.test(ciphers) ? ciphers : `${TLS13_SUITES}:${ciphers}`;
}

/** Each PEM CRL of a bundle: Node's `crl` option reads one CRL per array element. */
export function splitCrls(pem: string): string[] {
  return pem.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g) ?? [];
}

/**
 * createSecureContext options for one SSL object: every pair in one context (OpenSSL
 * picks the pair by the client's signature algorithms), its client CA and CRLs, its
 * versions and ciphers, server cipher preference, no renegotiation.
 */
export function contextOptions(
  ssl: SslSnapshot,
  o: { tickets: boolean; ticketKeys?: Uint8Array },
): SecureContextOptions & { ticketKeys?: Buffer } {
  return {
    cert: ssl.pairs.map((p) => p.cert),
    key: ssl.pairs.map((p) => p.key),
    ...(ssl.clientCa ? { ca: ssl.clientCa } : {}),
    ...(ssl.clientCrl ? { crl: splitCrls(ssl.clientCrl) } : {}),
    ...versionRange(ssl.protocols),
    ciphers: cipherString(ssl.ciphers),
    honorCipherOrder: true,
    // A session resumes only in the object that issued it (the id context is checked on
    // resumption), so a ticket of one object never skips another's client-certificate check.
    sessionIdContext: ssl.hash.slice(0, 32),
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION | (o.tickets ? 0 : constants.SSL_OP_NO_TICKET),
    ...(o.tickets && o.ticketKeys ? { ticketKeys: Buffer.from(o.ticketKeys) } : {}),
  };
}
