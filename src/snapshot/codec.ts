import { Packr, type Unpackr as UnpackrType } from 'msgpackr';
import type { Snapshot, SslSnapshot } from './types';

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

export function encodeSnapshot(s: Snapshot): Uint8Array {
  return packr.pack(s);
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
  if (Array.isArray(s.ssls)) internSsls(s.ssls);
  return s;
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
