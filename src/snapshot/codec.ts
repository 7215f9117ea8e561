import { Packr } from 'msgpackr';
import type { Snapshot } from './types';

// Plain structures only: no records extension, so a worker of another build can
// still read the bytes of a primary of this one.
const packr = new Packr({ useRecords: false, moreTypes: false });

export function encodeSnapshot(s: Snapshot): Uint8Array {
  return packr.pack(s);
}

export function decodeSnapshot(bytes: Uint8Array): Snapshot {
  const s = packr.unpack(bytes) as Snapshot;
  if (typeof s !== 'object' || s === null || typeof s.version !== 'number') {
    throw new TypeError('snapshot bytes do not decode to a snapshot');
  }
  return s;
}
