// An upstream's big response body, written as a server that honours backpressure does:
// a write, and the next one only after 'drain'. Tests (a client that stops reading must
// stall the upstream, not fill the gateway) and the streaming bench use it.
import type { ServerResponse } from 'node:http';

export interface StreamBodyOptions {
  /** Bytes per write: 64 KiB. */
  chunkSize?: number;
  /** The byte every write repeats: 'x'. */
  fill?: string;
  /** After each write, with the bytes written so far. */
  onWrite?: (written: number) => void;
}

/** Writes `size` bytes to `res` (headers as set by the caller), then ends it; stops when `res` closes. */
export function streamBody(res: ServerResponse, size: number, o: StreamBodyOptions = {}): void {
  const chunk = Buffer.alloc(o.chunkSize ?? 64 * 1024, o.fill ?? 'x');
  let left = size;
  let written = 0;
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      left -= n;
      written += n;
      const ok = res.write(n === chunk.length ? chunk : chunk.subarray(0, n));
      o.onWrite?.(written);
      if (!ok) return void res.once('drain', pump);
    }
    res.end();
  };
  res.on('close', () => (left = 0));
  pump();
}
