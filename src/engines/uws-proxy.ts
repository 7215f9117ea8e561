// Proxying from uWS handlers to an upstream through undici, streaming both ways.
// A stop-gap until src/proxy (written over node:http objects) grows a uWS adapter:
// the rules that matter for uWS live here.
// - HttpRequest is valid only during the handler: everything is copied up front.
// - A response not ended in the handler needs onAborted, and after an abort it must
//   never be touched again: every later write checks `aborted`.
// - Every write outside the handler is corked (uncorked writes cost a TLS record and a
//   warning line each), in slices that fit uWS's 16 KB cork buffer (see writeCorked).
// - Backpressure both ways: res.write() false → pause the upstream body until
//   onWritable; the request body (onData) pauses the client (res.pause) while the
//   upstream does not take more.
import { Readable } from 'node:stream';
import { Pool } from 'undici';
import type { ErrorCode } from '../errors';
import type { Snapshot, UpstreamNodeSnapshot, UpstreamSnapshot } from '../snapshot/types';
import type { HttpRequest, HttpResponse } from './uws-load';
import { sendError, writeStatus } from './uws-respond';

export interface UwsProxyContext {
  remoteAddress: string;
  /** Close the client connection after this response (engine draining). */
  close: boolean;
  /** Called once, when the exchange is over (status sent, or 499 when the client went away). */
  done(status: number): void;
}

/** Hop-by-hop headers (RFC 9110 §7.6.1) and the ones uWS writes itself. */
const HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'content-length', 'date', 'host']);

interface UpstreamPools {
  hash: string;
  nodes: Array<{ node: UpstreamNodeSnapshot; pool: Pool }>;
  total: number;
}

export class UwsProxy {
  private readonly pools = new Map<string, UpstreamPools>();
  private snapshot: Snapshot;

  constructor(snapshot: Snapshot) {
    this.snapshot = snapshot;
  }

  /** Keep pools whose upstream did not change; close the others once idle. */
  update(snapshot: Snapshot): void {
    this.snapshot = snapshot;
    const wanted = new Map(snapshot.upstreams.map((u) => [u.id, u.hash]));
    for (const [id, p] of this.pools) {
      if (wanted.get(id) === p.hash) continue;
      this.pools.delete(id);
      for (const n of p.nodes) void n.pool.close();
    }
  }

  async close(timeoutMs: number): Promise<void> {
    const all = [...this.pools.values()].flatMap((p) => p.nodes.map((n) => n.pool));
    this.pools.clear();
    const timer = new Promise<void>((r) => setTimeout(r, timeoutMs).unref());
    await Promise.race([Promise.all(all.map((p) => p.close())), timer]);
    await Promise.all(all.map((p) => p.destroy()));
  }

  handle(res: HttpResponse, req: HttpRequest, upstream: UpstreamSnapshot, ctx: UwsProxyContext): void {
    const method = req.getMethod().toUpperCase();
    const query = req.getQuery();
    const path = req.getUrl() + (query ? `?${query}` : '');
    const headers: Record<string, string> = {};
    let hasBody = false;
    req.forEach((k, v) => {
      if (k === 'content-length') hasBody ||= Number(v) > 0;
      if (k === 'transfer-encoding') hasBody = true;
      if (HOP.has(k)) return;
      headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
    });
    const host = req.getHeader('host');
    headers.host = upstream.host ?? host;
    headers['x-forwarded-for'] = headers['x-forwarded-for'] ? `${headers['x-forwarded-for']}, ${ctx.remoteAddress}` : ctx.remoteAddress;
    headers['x-forwarded-proto'] = 'https';
    if (host) headers['x-forwarded-host'] = host;

    let aborted = false;
    let finished = false;
    const ac = new AbortController();
    const finish = (status: number): void => {
      if (finished) return;
      finished = true;
      ctx.done(status);
    };
    res.onAborted(() => {
      aborted = true;
      ac.abort();
      finish(499);
    });

    let body: Readable | undefined;
    if (hasBody) {
      // The client is paused while undici has not asked for more.
      body = new Readable({ read: () => !aborted && res.resume() });
      const b = body;
      res.onData((chunk, isLast) => {
        // uWS neuters the ArrayBuffer on return: copy it.
        if (!b.push(Buffer.from(chunk.slice(0)))) res.pause();
        if (isLast) b.push(null);
      });
    }

    const pool = this.pick(upstream);
    pool
      .request({ path, method, headers, ...(body ? { body } : {}), signal: ac.signal, headersTimeout: upstream.timeout.readMs, bodyTimeout: upstream.timeout.readMs })
      .then(
        (up) => {
          if (aborted) {
            up.body.destroy();
            return;
          }
          const writeHead = (): void => {
            writeStatus(res, up.statusCode);
            for (const [k, v] of Object.entries(up.headers)) {
              if (v === undefined || HOP.has(k)) continue;
              for (const one of Array.isArray(v) ? v : [v]) res.writeHeader(k, one);
            }
          };
          const length = up.headers['content-length'];
          if (method === 'HEAD' || up.statusCode === 204 || up.statusCode === 304) {
            up.body.resume();
            res.cork(() => {
              writeHead();
              if (typeof length === 'string') res.writeHeader('content-length', length);
              res.endWithoutBody();
            });
            finish(up.statusCode);
            return;
          }
          if (typeof length === 'string' && Number(length) <= SMALL_BODY) {
            // Small and sized: status, headers and body leave in one corked write.
            const parts: Buffer[] = [];
            up.body.on('data', (chunk: Buffer) => parts.push(chunk));
            up.body.once('end', () => {
              if (aborted) return;
              res.cork(() => {
                writeHead();
                res.end(parts.length === 1 ? parts[0]! : Buffer.concat(parts), ctx.close);
              });
              finish(up.statusCode);
            });
            up.body.once('error', () => {
              if (!aborted) res.cork(() => sendError(res, 502, 'TLSGATE_E_UPSTREAM_RESET', `upstream ${upstream.id}: response body failed`, true));
              finish(502);
            });
            return;
          }
          res.cork(writeHead);
          up.body.on('data', (chunk: Buffer) => {
            if (aborted) return;
            if (!writeCorked(res, chunk)) {
              // uWS buffered the chunk; take no more until the socket drains.
              up.body.pause();
              res.onWritable(() => {
                up.body.resume();
                return true;
              });
            }
          });
          up.body.once('end', () => {
            if (aborted) return;
            res.cork(() => res.end(undefined, ctx.close));
            finish(up.statusCode);
          });
          up.body.once('error', () => {
            // Headers are out: the only honest signal left is closing the connection.
            if (!aborted) res.close();
            finish(502);
          });
        },
        (err: Error & { code?: string }) => {
          if (aborted) return;
          const [status, code] = classify(err);
          res.cork(() => sendError(res, status, code, `upstream ${upstream.id}: ${err.code ?? err.message}`, ctx.close));
          finish(status);
        },
      );
  }

  private pick(u: UpstreamSnapshot): Pool {
    let p = this.pools.get(u.id);
    if (!p || p.hash !== u.hash) {
      p = { hash: u.hash, nodes: u.nodes.map((node) => ({ node, pool: this.pool(u, node) })), total: u.nodes.reduce((n, x) => n + x.weight, 0) };
      this.pools.set(u.id, p);
    }
    if (p.nodes.length === 1 || p.total <= 0) return p.nodes[0]!.pool;
    let r = Math.random() * p.total;
    for (const n of p.nodes) if ((r -= n.node.weight) < 0) return n.pool;
    return p.nodes[p.nodes.length - 1]!.pool;
  }

  private pool(u: UpstreamSnapshot, n: UpstreamNodeSnapshot): Pool {
    const host = n.host.includes(':') ? `[${n.host}]` : n.host;
    const client = u.tls?.clientSsl ? this.snapshot.ssls.find((s) => s.id === u.tls!.clientSsl)?.pairs[0] : undefined;
    return new Pool(`${u.scheme}://${host}:${n.port}`, {
      connections: 128,
      connectTimeout: u.timeout.connectMs,
      ...(u.scheme === 'https'
        ? {
            connect: {
              rejectUnauthorized: u.tls?.verify ?? true,
              ...(u.tls?.ca ? { ca: u.tls.ca } : {}),
              ...(u.tls?.sni ? { servername: u.tls.sni } : {}),
              ...(client ? { cert: client.cert, key: client.key } : {}),
            },
          }
        : {}),
    });
  }
}

function classify(err: Error & { code?: string }): [number, ErrorCode] {
  const c = err.code ?? '';
  if (c === 'UND_ERR_CONNECT_TIMEOUT' || c === 'UND_ERR_HEADERS_TIMEOUT' || c === 'UND_ERR_BODY_TIMEOUT') return [504, 'TLSGATE_E_UPSTREAM_TIMEOUT'];
  if (/CERT|SSL|TLS|UNABLE_TO|SELF_SIGNED|ERR_TLS/.test(c)) return [502, 'TLSGATE_E_UPSTREAM_TLS'];
  if (c === 'ECONNRESET' || c === 'UND_ERR_SOCKET' || c === 'EPIPE') return [502, 'TLSGATE_E_UPSTREAM_RESET'];
  return [502, 'TLSGATE_E_UPSTREAM_CONNECT'];
}

/** Sized upstream bodies up to this are sent with the headers in one write (16 KB: one TLS record). */
const SMALL_BODY = 16_000;

/** Fits uWS's cork buffer (16 KB) with the chunk-size line around it. */
const CORK_SLICE = 16_000;

/**
 * res.write in corked slices. In uWS 20.30 a corked write larger than what is left of the
 * cork buffer, on a socket with backpressure, loses the data after its chunk-size line
 * (AsyncSocket::uncork returns before writing it; measured: clients fail with "Expected LF
 * after chunk data"). A slice that fits is copied into the cork buffer and flushed in
 * order. Returns false when uWS holds data back (backpressure).
 */
export function writeCorked(res: HttpResponse, chunk: Buffer): boolean {
  let ok = true;
  for (let i = 0; i < chunk.length; i += CORK_SLICE) {
    const slice = chunk.subarray(i, i + CORK_SLICE);
    res.cork(() => {
      ok = res.write(slice) && ok;
    });
  }
  return ok;
}
