// What the raw clients (raw-http.ts, raw-conn.ts, h2-raw.ts) share: a TLS connection to the
// gateway under test that accepts any certificate, and the HTTP/1.1 head and chunked-body
// parsing of what comes back.
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';

export interface RawTlsOptions {
  /** undefined or '': no SNI. */
  servername?: string;
  cert?: string;
  key?: string;
  ALPNProtocols?: string[];
}

/** A TLS connection to 127.0.0.1:port that trusts whatever certificate it gets. */
export function connectRaw(port: number, o: RawTlsOptions = {}): TLSSocket {
  const opts: ConnectionOptions = {
    host: '127.0.0.1',
    port,
    rejectUnauthorized: false,
    ...(o.servername ? { servername: o.servername } : {}),
    ...(o.cert ? { cert: o.cert, key: o.key } : {}),
    ...(o.ALPNProtocols ? { ALPNProtocols: o.ALPNProtocols } : {}),
  };
  return connect(opts);
}

/** Header lines (no status line) → lower-cased names; a repeated name's values joined with `sep`. */
export function headerRecord(lines: readonly string[], sep: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const c = l.indexOf(':');
    const k = l.slice(0, c).trim().toLowerCase();
    const v = l.slice(c + 1).trim();
    headers[k] = headers[k] === undefined ? v : `${headers[k]}${sep}${v}`;
  }
  return headers;
}

/**
 * The chunked body starting at `at` in `buf`: its data, its trailer lines and where it ends;
 * null while it is incomplete.
 */
export function chunkedBody(buf: Buffer, at: number): { body: Buffer; trailers: string[]; end: number } | null {
  const parts: Buffer[] = [];
  const trailers: string[] = [];
  for (;;) {
    const nl = buf.indexOf('\r\n', at);
    if (nl < 0) return null;
    const size = parseInt(buf.subarray(at, nl).toString('latin1'), 16);
    at = nl + 2;
    if (size === 0) {
      for (;;) {
        const tl = buf.indexOf('\r\n', at);
        if (tl < 0) return null;
        const line = buf.subarray(at, tl).toString('latin1');
        at = tl + 2;
        if (line === '') return { body: Buffer.concat(parts), trailers, end: at };
        trailers.push(line);
      }
    }
    if (buf.length < at + size + 2) return null;
    parts.push(buf.subarray(at, at + size));
    at += size + 2;
  }
}

/** Whoever waits for a connection's next event (bytes, close), each wait bounded by a deadline. */
export class Wakeup {
  private waiters: Array<() => void> = [];

  /** Resolves at the next wake() or at `until` (a Date.now() time), whichever comes first. */
  wait(until: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      timer = setTimeout(done, Math.max(0, until - Date.now()));
      this.waiters.push(done);
    });
  }

  wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
