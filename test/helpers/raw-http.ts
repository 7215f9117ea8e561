// Raw HTTP/1.1 over TLS: exact bytes in, the response as received out. For requests a
// well-behaved client would not send (absolute-form targets, forged headers, pipelining).
import { chunkedBody, connectRaw, headerRecord, type RawTlsOptions } from './raw-tls';

export interface RawResponse {
  status: number;
  head: string;
  /** Header names lower-cased, values as received; repeated names joined with '\n'. */
  headers: Record<string, string>;
  body: string;
  /** Everything the server sent before it closed (or before the deadline). */
  raw: string;
}

export interface RawOptions extends Omit<RawTlsOptions, 'ALPNProtocols'> {
  /** Stop reading after this many complete responses (keep-alive) instead of waiting for close. */
  responses?: number;
  timeoutMs?: number;
  /** Write the request in parts, with a pause between them. */
  parts?: Array<string | Buffer>;
  pauseMs?: number;
  /** Indexes of the responses that answer HEAD (no body whatever Content-Length says). */
  bodiless?: number[];
}

/** Parse every complete response in `raw` (Content-Length or chunked bodies). */
export function parseResponses(raw: string, bodiless: readonly number[] = []): RawResponse[] {
  const out: RawResponse[] = [];
  let rest = raw;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return out;
    const head = rest.slice(0, end);
    const lines = head.split('\r\n');
    const status = Number(lines[0]!.split(' ')[1]);
    const headers = headerRecord(lines.slice(1), '\n');
    let body = '';
    let after = rest.slice(end + 4);
    if (status === 100) {
      rest = after;
      continue;
    }
    if (bodiless.includes(out.length)) {
      // an answer to HEAD: Content-Length describes a body that is not sent
    } else if (headers['transfer-encoding'] === 'chunked') {
      const chunked = chunkedBody(Buffer.from(after, 'latin1'), 0);
      if (chunked === null) return out;
      body = chunked.body.toString('latin1');
      after = after.slice(chunked.end);
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (after.length < n) return out;
      body = after.slice(0, n);
      after = after.slice(n);
    }
    out.push({ status, head, headers, body, raw: '' });
    rest = after;
  }
}

export type RawResult = RawResponse[] & { raw: string; closed: boolean };

/** Send `request` (or `o.parts`); collect responses until close, `responses` complete, or the deadline. */
export function rawRequest(port: number, request: string | Buffer, o: RawOptions = {}): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    const s = connectRaw(port, o);
    let raw = '';
    let settled = false;
    const finish = (closed: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      s.destroy();
      resolve(Object.assign(parseResponses(raw, o.bodiless), { raw, closed }));
    };
    const timer = setTimeout(() => finish(false), o.timeoutMs ?? 5_000);
    s.on('secureConnect', async () => {
      const parts = o.parts ?? [request];
      for (let i = 0; i < parts.length; i++) {
        if (i > 0) await new Promise((r) => setTimeout(r, o.pauseMs ?? 100));
        if (!s.destroyed) s.write(parts[i]!);
      }
    });
    s.on('data', (d: Buffer) => {
      raw += d.toString('latin1');
      if (o.responses !== undefined && parseResponses(raw, o.bodiless).length >= o.responses) finish(false);
    });
    s.on('close', () => finish(true));
    s.on('error', (err) => {
      if (raw === '' && !settled) {
        settled = true;
        clearTimeout(timer);
        reject(err);
      }
    });
  });
}
