// A small raw HTTP/2 client over TLS for attack tests: it writes frames a well-behaved
// client (node:http2, curl) never sends — a RST_STREAM right after each HEADERS, endless
// CONTINUATION frames, connection-specific headers, an HPACK bomb — and records every
// frame the server sends back (type, flags, stream, RST/GOAWAY error code).
// HPACK: literal fields without Huffman only (RFC 7541 §6.2), enough to send any request.
import type { TLSSocket } from 'node:tls';
import { connectRaw, Wakeup, type RawTlsOptions } from './raw-tls';

export const FRAME = {
  DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9,
} as const;
export const FLAG = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const;
export const CODE = { NO_ERROR: 0, PROTOCOL_ERROR: 1, CANCEL: 8, ENHANCE_YOUR_CALM: 11 } as const;

export interface Frame {
  type: number;
  flags: number;
  stream: number;
  payload: Buffer;
  /** RST_STREAM / GOAWAY error code. */
  code?: number;
}

/** HPACK integer (RFC 7541 §5.1) with an n-bit prefix and the given high bits. */
function int(value: number, prefix: number, high: number): Buffer {
  const max = (1 << prefix) - 1;
  if (value < max) return Buffer.from([high | value]);
  const out = [high | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out.push(v);
  return Buffer.from(out);
}

function str(s: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return Buffer.concat([int(b.length, 7, 0), b]);
}

/** Literal field without indexing, new name (§6.2.2). */
export function literal(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x00]), str(name), str(value)]);
}
/** Literal field with incremental indexing, new name (§6.2.1): enters the dynamic table. */
export function indexedLiteral(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0x40]), str(name), str(value)]);
}
/** Indexed field (§6.1): index 62 is the newest dynamic table entry. */
export function indexed(index: number): Buffer {
  return int(index, 7, 0x80);
}
export function block(fields: Array<[string, string]>): Buffer {
  return Buffer.concat(fields.map(([n, v]) => literal(n, v)));
}

export function frame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type H2RawOptions = Omit<RawTlsOptions, 'ALPNProtocols'>;

export class H2Raw {
  readonly frames: Frame[] = [];
  closed = false;
  private buf: Buffer = Buffer.alloc(0);
  private readonly change = new Wakeup();

  private constructor(readonly socket: TLSSocket) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.change.wake();
    });
  }

  static connect(port: number, o: H2RawOptions = {}): Promise<H2Raw> {
    return new Promise((resolve, reject) => {
      const s = connectRaw(port, { ...o, ALPNProtocols: ['h2'] });
      s.once('error', reject);
      s.once('secureConnect', () => {
        s.off('error', reject);
        if (s.alpnProtocol !== 'h2') {
          s.destroy();
          reject(new Error(`ALPN chose ${String(s.alpnProtocol)}, not h2`));
          return;
        }
        const c = new H2Raw(s);
        s.write(Buffer.concat([PREFACE, frame(FRAME.SETTINGS, 0, 0)]));
        resolve(c);
      });
    });
  }

  send(...frames: Buffer[]): boolean {
    return this.socket.write(Buffer.concat(frames));
  }

  /** HEADERS with the whole block (END_HEADERS) for a GET on `stream`. */
  get(stream: number, authority: string, path = '/', extra: Array<[string, string]> = [], end = true): Buffer {
    const b = block([[':method', 'GET'], [':scheme', 'https'], [':authority', authority], [':path', path], ...extra]);
    return frame(FRAME.HEADERS, FLAG.END_HEADERS | (end ? FLAG.END_STREAM : 0), stream, b);
  }

  rst(stream: number, code: number = CODE.CANCEL): Buffer {
    const p = Buffer.alloc(4);
    p.writeUInt32BE(code);
    return frame(FRAME.RST_STREAM, 0, stream, p);
  }

  /** Resolves with the first frame (seen or to come) matching; rejects after timeoutMs. */
  async waitFrame(match: (f: Frame) => boolean, what: string, timeoutMs = 10_000): Promise<Frame> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const f = this.frames.find(match);
      if (f !== undefined) return f;
      if (this.closed) throw new Error(`connection closed before ${what}`);
      if (Date.now() >= end) throw new Error(`timed out waiting for ${what}`);
      await this.change.wait(end);
    }
  }

  /** Resolves once the server closed the connection. */
  async waitClosed(what: string, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!this.closed) {
      if (Date.now() >= end) throw new Error(`timed out waiting for ${what}`);
      await this.change.wait(end);
    }
  }

  goaway(): Frame | undefined {
    return this.frames.find((f) => f.type === FRAME.GOAWAY);
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    while (this.buf.length >= 9) {
      const len = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + len) break;
      const f: Frame = {
        type: this.buf[3]!,
        flags: this.buf[4]!,
        stream: this.buf.readUInt32BE(5) & 0x7fffffff,
        payload: this.buf.subarray(9, 9 + len),
      };
      this.buf = this.buf.subarray(9 + len);
      if (f.type === FRAME.RST_STREAM) f.code = f.payload.readUInt32BE(0);
      if (f.type === FRAME.GOAWAY) f.code = f.payload.readUInt32BE(4);
      if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0) this.send(frame(FRAME.SETTINGS, FLAG.ACK, 0));
      this.frames.push(f);
    }
    this.change.wake();
  }
}

/**
 * `:status` of a response header block as nghttp2 encodes it: a static-table index
 * (200, 204, 206, 304, 400, 404, 500) or a literal on name index 8 whose value is digits
 * (raw or Huffman: digits have 5- and 6-bit codes). undefined for anything else.
 */
export function statusOf(b: Buffer): number | undefined {
  const first = b[0]!;
  const STATIC: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 };
  if (first & 0x80) return STATIC[first & 0x7f];
  const nameIndex = first & 0x40 ? first & 0x3f : first & 0x0f;
  if (nameIndex !== 8) return undefined;
  const huff = (b[1]! & 0x80) !== 0;
  const len = b[1]! & 0x7f;
  const v = b.subarray(2, 2 + len);
  if (!huff) return Number(v.toString('latin1'));
  let bits = '';
  for (const x of v) bits += x.toString(2).padStart(8, '0');
  let out = '';
  let i = 0;
  while (out.length < 3 && i + 5 <= bits.length) {
    const five = parseInt(bits.slice(i, i + 5), 2);
    if (five <= 2) {
      out += String(five);
      i += 5;
    } else {
      out += String(parseInt(bits.slice(i, i + 6), 2) - 0b011001 + 3);
      i += 6;
    }
  }
  return Number(out);
}
