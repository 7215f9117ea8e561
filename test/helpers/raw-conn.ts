// A raw HTTP/1.1 client over TLS for malformed and exact-byte requests: writes the bytes
// as given, reads responses off the socket with a minimal parser, keeps the connection.
// (Loaded by `node --test` as a file without tests: it has no side effects.)
import type { TLSSocket } from 'node:tls';
import { chunkedBody, connectRaw, headerRecord, Wakeup } from './raw-tls';

export interface RawResponse {
  /** 0 when the connection closed (or the deadline passed) before a status line. */
  status: number;
  statusLine: string;
  /** Lower-cased names; repeated names joined with ', '. */
  headers: Record<string, string>;
  /** Raw header lines, in order. */
  headerLines: string[];
  body: Buffer;
  /** Trailer lines of a chunked body. */
  trailers: string[];
  /** The server closed the connection (before or right after the response). */
  closed: boolean;
  /** Nothing came and the connection stayed open until the deadline. */
  hung: boolean;
  ms: number;
}

export interface RawOptions {
  servername?: string;
  /** Bound for one response; a server that neither answers nor closes by then "hung". */
  deadlineMs?: number;
}

/** One TLS connection; `send` writes bytes and resolves with the next full response. */
export class RawConnection {
  readonly socket: TLSSocket;
  private buf = Buffer.alloc(0);
  private closed = false;
  private readonly change = new Wakeup();
  private readonly ready: Promise<void>;

  constructor(port: number, private readonly o: RawOptions = {}) {
    this.socket = connectRaw(port, { servername: o.servername ?? 'a.test' });
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('secureConnect', () => resolve());
      this.socket.once('error', reject);
    });
    this.socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.change.wake();
    });
    this.socket.on('error', () => undefined);
    this.socket.on('close', () => {
      this.closed = true;
      this.change.wake();
    });
  }

  /** headResponse: the request was HEAD (a response without body whatever its headers say). */
  async send(bytes: string | Buffer, headResponse = false): Promise<RawResponse> {
    await this.ready;
    const t0 = Date.now();
    if (bytes.length > 0) this.socket.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes);
    return this.read(t0, headResponse);
  }

  /** The next response already on its way (e.g. the second of two pipelined requests). */
  next(headResponse = false): Promise<RawResponse> {
    return this.read(Date.now(), headResponse);
  }

  close(): void {
    this.socket.destroy();
  }

  private async read(t0: number, headResponse: boolean): Promise<RawResponse> {
    const deadline = t0 + (this.o.deadlineMs ?? 5_000);
    for (;;) {
      const r = this.parse(headResponse);
      if (r !== null) {
        // A close that follows the response at once is part of it ("connection: close").
        if (!this.closed && /close/i.test(r.headers['connection'] ?? '')) {
          await this.change.wait(Math.min(deadline, Date.now() + 1_000));
        }
        return { ...r, closed: this.closed, hung: false, ms: Date.now() - t0 };
      }
      if (this.closed || Date.now() >= deadline) {
        const line = this.buf.toString('latin1').split('\r\n')[0] ?? '';
        return {
          status: 0,
          statusLine: line,
          headers: {},
          headerLines: [],
          body: this.buf,
          trailers: [],
          closed: this.closed,
          hung: !this.closed,
          ms: Date.now() - t0,
        };
      }
      await this.change.wait(deadline);
    }
  }

  /** A complete response at the head of the buffer (consumed), or null if more bytes are needed. */
  private parse(headResponse: boolean): Omit<RawResponse, 'closed' | 'hung' | 'ms'> | null {
    const end = this.buf.indexOf('\r\n\r\n');
    if (end < 0) return null;
    const lines = this.buf.subarray(0, end).toString('latin1').split('\r\n');
    const statusLine = lines[0]!;
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
    const headerLines = lines.slice(1);
    const headers = headerRecord(headerLines, ', ');
    let at = end + 4;
    if (status >= 100 && status < 200) {
      // Interim response: skip it, the caller wants the final one.
      this.buf = this.buf.subarray(at);
      return this.parse(headResponse);
    }
    let body: Buffer = Buffer.alloc(0);
    let trailers: string[] = [];
    if (headResponse || status === 204 || status === 304) {
      // no body
    } else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const chunked = chunkedBody(this.buf, at);
      if (chunked === null) return null;
      ({ body, trailers, end: at } = chunked);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (this.buf.length < at + n) return null;
      body = this.buf.subarray(at, at + n);
      at += n;
    } else {
      // Delimited by close.
      if (!this.closed) return null;
      body = this.buf.subarray(at);
      at = this.buf.length;
    }
    this.buf = this.buf.subarray(at);
    return { status, statusLine, headers, headerLines, body: Buffer.from(body), trailers };
  }
}

/** One request on a fresh connection, then close. */
export async function rawRequest(
  port: number,
  bytes: string | Buffer,
  o: RawOptions & { head?: boolean } = {},
): Promise<RawResponse> {
  const c = new RawConnection(port, o);
  try {
    return await c.send(bytes, o.head ?? false);
  } finally {
    c.close();
  }
}
