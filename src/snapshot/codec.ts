import { Packr, type Unpackr as UnpackrType } from 'msgpackr';
import type { Snapshot, SslSnapshot } from './types';
import { LazySsl, SSL_CLIENT, SSL_CLIENT_CA, SslSource, type WireSsl } from './lazy-ssl';

// Plain structures only: no records extension, so a worker of another build can
// still read the bytes of a primary of this one.
const packr = new Packr({ useRecords: false, moreTypes: false });
/**
 * Decoding, measured at 10k objects (13 MB): copyBuffers, or the 48 bytes of `ticketKeys`
 * are a view that keeps the whole message alive (−12 MB RSS per worker); msgpackr's
 * JS-only build, whose native string extractor returns slices of one long string, so
 * every PEM, id and hash kept that string alive (heap 22.6 → 20.1 MB, decode no slower).
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { Unpackr } = require('msgpackr/unpack-no-eval') as { Unpackr: typeof UnpackrType };
const unpackr = new Unpackr({ useRecords: false, moreTypes: false, copyBuffers: true });
/** Decoded after a snapshot: msgpackr keeps a DataView of the last source until the next. */
const TINY = packr.pack(0);

/** The SSL objects as a worker keeps them (lazy-ssl.ts): an index, one buffer of objects, a string table. */
interface WireSsls {
  ids: string[];
  hashes: string[];
  /** One byte per object: SSL_CLIENT, SSL_CLIENT_CA. */
  bits: Uint8Array;
  /** n + 1 little-endian uint32: object i is blob[offsets[i], offsets[i + 1]). */
  offsets: Uint8Array;
  blob: Uint8Array;
  /** Strings that occur in more than one object (a shared key, a client CA, a cipher list), by number. */
  strs: string[];
}

type WireSnapshot = Snapshot & { lazySsls?: WireSsls };

export function encodeSnapshot(s: Snapshot): Uint8Array {
  if (!Array.isArray(s.ssls)) return packr.pack(s);
  return packr.pack({ ...s, ssls: [], lazySsls: wireSsls(s.ssls) } satisfies WireSnapshot);
}

function wireSsls(ssls: readonly SslSnapshot[]): WireSsls {
  const seen = new Map<string, number>();
  const count = (v: string | undefined): void => {
    if (v !== undefined) seen.set(v, (seen.get(v) ?? 0) + 1);
  };
  for (const o of ssls) {
    for (const p of o.pairs) {
      count(p.cert);
      count(p.key);
    }
    count(o.clientCa);
    count(o.clientCrl);
    count(o.ciphers);
  }
  const strs: string[] = [];
  const index = new Map<string, number>();
  for (const [v, n] of seen) {
    if (n < 2) continue;
    index.set(v, strs.length);
    strs.push(v);
  }
  const ref = (v: string): string | number => index.get(v) ?? v;
  const parts: Buffer[] = [];
  const offsets = Buffer.alloc((ssls.length + 1) * 4);
  const bits = new Uint8Array(ssls.length);
  let at = 0;
  ssls.forEach((o, i) => {
    const w: WireSsl = {
      snis: o.snis,
      pairs: o.pairs.map((p) => ({ cert: ref(p.cert), key: ref(p.key) })),
      ...(o.clientCa !== undefined ? { clientCa: ref(o.clientCa) } : {}),
      ...(o.clientCrl !== undefined ? { clientCrl: ref(o.clientCrl) } : {}),
      clientDepth: o.clientDepth,
      ...(o.skipMtls !== undefined ? { skipMtls: o.skipMtls } : {}),
      protocols: o.protocols,
      ciphers: ref(o.ciphers),
    };
    // pack() returns a view of the packer's own buffer, reused by the next call: copied.
    const b = Buffer.from(packr.pack(w));
    parts.push(b);
    offsets.writeUInt32LE(at, i * 4);
    at += b.length;
    bits[i] = (o.type === 'client' ? SSL_CLIENT : 0) | (o.clientCa !== undefined ? SSL_CLIENT_CA : 0);
  });
  offsets.writeUInt32LE(at, ssls.length * 4);
  return {
    ids: ssls.map((o) => o.id),
    hashes: ssls.map((o) => o.hash),
    bits,
    offsets,
    blob: Buffer.concat(parts, at),
    strs,
  };
}

export function decodeSnapshot(bytes: Uint8Array): Snapshot {
  let s: Snapshot;
  try {
    s = unpackr.unpack(bytes) as Snapshot;
  } finally {
    unpackr.unpack(TINY);
  }
  if (typeof s !== 'object' || s === null || typeof s.version !== 'number') {
    throw new TypeError('snapshot bytes do not decode to a snapshot');
  }
  const lazy = (s as WireSnapshot).lazySsls;
  if (lazy !== undefined) {
    delete (s as WireSnapshot).lazySsls;
    s.ssls = lazySsls(lazy);
  } else if (Array.isArray(s.ssls)) internSsls(s.ssls);
  return s;
}

function lazySsls(w: WireSsls): SslSnapshot[] {
  const n = w.ids.length;
  if (w.hashes.length !== n || w.bits.length !== n || w.offsets.length !== (n + 1) * 4) {
    throw new TypeError('snapshot bytes: the SSL index does not match its objects');
  }
  // One decoder per snapshot, so a decode never disturbs the state of the shared one mid-message.
  const own = new Unpackr({ useRecords: false, moreTypes: false, copyBuffers: true });
  const src = new SslSource(w.blob, w.offsets, w.strs, (b) => own.unpack(b));
  const out: SslSnapshot[] = new Array(n);
  for (let i = 0; i < n; i++) out[i] = new LazySsl(w.ids[i]!, w.hashes[i]!, w.bits[i]!, i, src);
  return out;
}

/**
 * One copy of each identical PEM, cipher list and protocol list across objects: msgpack
 * decodes every occurrence as its own string (10k objects sharing one key held it 10k
 * times). Measured at 10k objects, one shared ECDSA key: heap 20.2 → 16.2 MB.
 */
export function internSsls(ssls: SslSnapshot[]): void {
  const strings = new Map<string, string>();
  const lists = new Map<string, SslSnapshot['protocols']>();
  const one = (v: string): string => {
    const hit = strings.get(v);
    if (hit !== undefined) return hit;
    strings.set(v, v);
    return v;
  };
  for (const ssl of ssls) {
    if (typeof ssl !== 'object' || ssl === null) continue;
    if (Array.isArray(ssl.pairs)) {
      for (const p of ssl.pairs) {
        if (typeof p.key === 'string') p.key = one(p.key);
        if (typeof p.cert === 'string') p.cert = one(p.cert);
      }
    }
    if (typeof ssl.ciphers === 'string') ssl.ciphers = one(ssl.ciphers);
    if (typeof ssl.clientCa === 'string') ssl.clientCa = one(ssl.clientCa);
    if (typeof ssl.clientCrl === 'string') ssl.clientCrl = one(ssl.clientCrl);
    if (Array.isArray(ssl.protocols)) {
      const k = ssl.protocols.join(',');
      const hit = lists.get(k);
      if (hit) ssl.protocols = hit;
      else lists.set(k, ssl.protocols);
    }
  }
}
