// A well-behaved HTTP/2 client (node:http2) for tests: one session, many requests.
import { connect, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';

export interface H2Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** RST_STREAM code when the stream was reset instead of answered. */
  rstCode?: number;
}

export interface H2ClientOptions {
  servername?: string;
  cert?: string;
  key?: string;
}

export function h2Session(port: number, o: H2ClientOptions = {}): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const s = connect(`https://127.0.0.1:${port}`, {
      rejectUnauthorized: false,
      ...(o.servername !== undefined ? { servername: o.servername } : {}),
      ...(o.cert !== undefined ? { cert: o.cert, key: o.key } : {}),
    });
    s.once('error', reject);
    s.once('connect', () => {
      s.off('error', reject);
      s.on('error', () => undefined);
      resolve(s);
    });
  });
}

/** headers: `:path` defaults to '/', `:authority` to the servername given at connect. */
export function h2Request(
  session: ClientHttp2Session,
  headers: OutgoingHttpHeaders,
  body?: string | Buffer,
  timeoutMs = 10_000,
): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const req = session.request({ ':path': '/', ...headers }, { endStream: body === undefined });
    const timer = setTimeout(() => {
      req.close();
      reject(new Error(`no response to ${String(headers[':path'] ?? '/')} within ${timeoutMs} ms`));
    }, timeoutMs);
    let status = 0;
    let got: IncomingHttpHeaders = {};
    let text = '';
    req.on('response', (h) => {
      got = h;
      status = Number(h[':status']);
    });
    req.setEncoding('utf8');
    req.on('data', (d: string) => (text += d));
    req.on('error', () => undefined);
    req.on('close', () => {
      clearTimeout(timer);
      resolve({
        status, headers: got, body: text, ...(status === 0 || req.rstCode ? { rstCode: req.rstCode ?? 0 } : {}),
      });
    });
    if (body !== undefined) req.end(body);
  });
}

/** One request on a fresh session, closed afterwards. */
export async function h2Get(
  port: number, o: H2ClientOptions & { headers?: OutgoingHttpHeaders; body?: string } = {},
): Promise<H2Reply> {
  const s = await h2Session(port, o);
  try {
    return await h2Request(s, o.headers ?? {}, o.body);
  } finally {
    s.close();
  }
}
