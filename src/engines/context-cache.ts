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
    this.map.set(key, { hash, value });
    if (this.map.size > this.max) this.map.delete(this.map.keys().next().value!);
    return value;
  }

  /** Carry over the entries a new snapshot still uses; open sockets keep their own reference. */
  carryOver(ssls: SslSnapshot[], max: number): ContextCache<T> {
    const next = new ContextCache<T>(max);
    const live = new Set(ssls.map((s) => s.hash));
    for (const [k, e] of this.map) if (live.has(e.hash)) next.map.set(k, e);
    return next;
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
