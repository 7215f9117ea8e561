// SSL objects of a full snapshot decoded on first use (a handshake for one of their names, an
// upstream that presents one). A worker keeps the snapshot's SSL section as one buffer (PEMs
// repeated across objects once, in a string table) and one small object per SSL object: its id,
// type, content hash and where its bytes are. At 100k objects the eager decode held 146 MB of
// JS heap (PEM strings 66 MB, object shapes and arrays the rest).
import type { CertKeyPair, SslSnapshot, TlsProtocol } from './types';

/** Bits of an object in the index. */
export const SSL_CLIENT = 1;
export const SSL_CLIENT_CA = 2;

/** Objects kept decoded per snapshot; beyond it the oldest decode is dropped and made again on its next use. */
const DECODED_MAX = 4096;

/** What an object's bytes hold: the fields not in the index, strings of the table by their number. */
export interface WireSsl {
  snis: string[];
  pairs: Array<{ cert: string | number; key: string | number }>;
  clientCa?: string | number;
  clientCrl?: string | number;
  clientDepth: number;
  skipMtls?: string[];
  protocols: TlsProtocol[];
  ciphers: string | number;
}

/** The SSL section of one full snapshot, shared by its LazySsl objects. */
export class SslSource {
  private readonly ring: Array<LazySsl | undefined> = [];
  private next = 0;
  private readonly lists = new Map<string, TlsProtocol[]>();

  constructor(
    private readonly blob: Uint8Array,
    /** n + 1 little-endian uint32 offsets into `blob`. */
    private readonly offsets: Uint8Array,
    private readonly strs: readonly string[],
    private readonly unpack: (b: Uint8Array) => unknown,
  ) {}

  decode(o: LazySsl, i: number): SslSnapshot {
    const view = new DataView(this.offsets.buffer, this.offsets.byteOffset, this.offsets.byteLength);
    const from = view.getUint32(i * 4, true);
    const to = view.getUint32(i * 4 + 4, true);
    const w = this.unpack(this.blob.subarray(from, to)) as WireSsl;
    const str = (v: string | number): string => (typeof v === 'number' ? this.strs[v]! : v);
    const key = w.protocols.join(',');
    let protocols = this.lists.get(key);
    if (!protocols) this.lists.set(key, (protocols = w.protocols));
    const pairs: CertKeyPair[] = w.pairs.map((p) => ({ cert: str(p.cert), key: str(p.key) }));
    const full: SslSnapshot = {
      id: o.id,
      type: o.type,
      snis: w.snis,
      pairs,
      ...(w.clientCa !== undefined ? { clientCa: str(w.clientCa) } : {}),
      ...(w.clientCrl !== undefined ? { clientCrl: str(w.clientCrl) } : {}),
      clientDepth: w.clientDepth,
      ...(w.skipMtls !== undefined ? { skipMtls: w.skipMtls } : {}),
      protocols,
      ciphers: str(w.ciphers),
      hash: o.hash,
    };
    // FIFO, not LRU: O(1) per decode; a hot object dropped is decoded again (microseconds).
    this.ring[this.next]?.forget();
    this.ring[this.next] = o;
    this.next = (this.next + 1) % DECODED_MAX;
    return full;
  }
}

/**
 * An SSL object of a full snapshot: id, type, hash and whether it has a client CA without a
 * decode; any other field decodes it (cached, up to DECODED_MAX per snapshot). A delta's
 * objects are plain SslSnapshots that replace these in the worker's maps.
 */
export class LazySsl implements SslSnapshot {
  private full: SslSnapshot | undefined;

  constructor(
    readonly id: string,
    readonly hash: string,
    private readonly bits: number,
    private readonly i: number,
    private readonly src: SslSource,
  ) {}

  get type(): 'server' | 'client' {
    return this.bits & SSL_CLIENT ? 'client' : 'server';
  }
  /** clientCa !== undefined, without a decode. */
  get hasClientCa(): boolean {
    return (this.bits & SSL_CLIENT_CA) !== 0;
  }
  get snis(): string[] {
    return this.get().snis;
  }
  get pairs(): CertKeyPair[] {
    return this.get().pairs;
  }
  get clientCa(): string | undefined {
    return this.hasClientCa ? this.get().clientCa : undefined;
  }
  get clientCrl(): string | undefined {
    return this.get().clientCrl;
  }
  get clientDepth(): number {
    return this.get().clientDepth;
  }
  get skipMtls(): string[] | undefined {
    return this.get().skipMtls;
  }
  get protocols(): TlsProtocol[] {
    return this.get().protocols;
  }
  get ciphers(): string {
    return this.get().ciphers;
  }

  /** The plain object (what an eager decode gives). */
  materialize(): SslSnapshot {
    return this.get();
  }

  forget(): void {
    this.full = undefined;
  }

  private get(): SslSnapshot {
    return (this.full ??= this.src.decode(this, this.i));
  }
}

/** clientCa !== undefined, without decoding a LazySsl. */
export function hasClientCa(ssl: SslSnapshot): boolean {
  return ssl instanceof LazySsl ? ssl.hasClientCa : ssl.clientCa !== undefined;
}
