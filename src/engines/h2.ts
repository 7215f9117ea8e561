// HTTP/2 on a node listener: a TLS socket whose ALPN chose `h2` is handed here (the others
// stay with the engine's http.Server), becomes an Http2Session, and each stream becomes an
// exchange for the same request stage as HTTP/1.1. Upstreams stay HTTP/1.1.
//
// Limits and attack mitigations (nginx, Envoy, Varnish and nghttp2 as reference):
// - SETTINGS_MAX_CONCURRENT_STREAMS = limits.h2_max_concurrent_streams (Node's own default
//   is 2^32 - 1); SETTINGS_MAX_HEADER_LIST_SIZE and the header pair count follow the
//   listener's header limits (the decoded size: an HPACK bomb is refused per stream by Node).
// - Rapid Reset (CVE-2023-44487): every stream reaches the stage, which may already have
//   sent it upstream when the client's RST_STREAM arrives, so resets are rationed per
//   connection (token bucket, limits.h2_max_resets); past it, GOAWAY ENHANCE_YOUR_CALM and
//   close. nghttp2's own limit (burst 1000, 33/s) stays behind it.
// - CONTINUATION flood (2024): nghttp2 1.61 (Node 20.20) ends the connection after 8
//   CONTINUATION frames of one header block, and a header block holds no stream, so the
//   idle timer below (no stream open) bounds a slow one.
// - A connection with no stream open is closed after timeouts.request_header (before its
//   first request) or timeouts.keepalive (between requests), whatever frames (PING,
//   SETTINGS, partial headers) it sends meanwhile: Node's session timeout resets on them.
// - A stream with no frame either way for timeouts.h2_stream_idle is reset (CANCEL).
import {
  constants, createServer, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Session,
  type ServerHttp2Stream, type Settings,
} from 'node:http2';
import type { TLSSocket } from 'node:tls';
import { dataPlane as m } from '../metrics';
import { checkAuthority, sendError, serve, servingLookup, type ConnFacts } from '../proxy';
import { parseAuthority } from '../routing/names';
import type { H2Settings, ListenerSnapshot, RequestLimits } from '../snapshot/types';
import type { DataPlaneState } from './engine';
import { H2_CONNECTION_HEADERS, H2Exchange } from './h2-exchange';

const { NGHTTP2_CANCEL, NGHTTP2_ENHANCE_YOUR_CALM } = constants;

/** What the h2 front reads from its engine (current state and listener, after every update). */
export interface H2Host {
  state(): DataPlaneState;
  listener(): ListenerSnapshot;
}

/** RFC 7541 §4.1: each header entry counts 32 bytes on top of its name and value. */
const ENTRY_OVERHEAD = 32;
/** :method, :path, :scheme, :authority. */
const PSEUDO = 4;

interface SessionState {
  readonly conn: ConnFacts;
  readonly session: ServerHttp2Session;
  open: number;
  idle: NodeJS.Timeout | undefined;
  tokens: number;
  refilled: number;
  /** Sent GOAWAY for too many resets: closing. */
  cut: boolean;
}

export function h2Settings(h2: H2Settings, limits: RequestLimits): Settings {
  return {
    maxConcurrentStreams: h2.maxConcurrentStreams,
    // The stage answers 431 below the listener's limits; this bound (the same limits with
    // HPACK's per-entry overhead) is where Node resets the stream without decoding more.
    maxHeaderListSize: limits.maxHeaderBytes + ENTRY_OVERHEAD * (limits.maxHeaderCount + PSEUDO),
    enablePush: false,
    enableConnectProtocol: false,
  };
}

export class H2Front {
  private readonly server: Http2Server;
  private readonly sessions = new Set<SessionState>();
  private next: ConnFacts | undefined;
  private draining = false;
  private count: { inc(): void };

  constructor(private readonly host: H2Host) {
    const l = host.listener();
    this.server = createServer({
      settings: h2Settings(l.h2!, l.limits),
      // Pairs beyond the stage's count are refused by Node (RST_STREAM) without decoding.
      maxHeaderListPairs: l.limits.maxHeaderCount + PSEUDO,
    });
    this.server.on('session', (s: ServerHttp2Session) => this.onSession(s));
    this.count = m.protocolRequests.labels(l.name, 'h2');
  }

  /** New sessions get the listener's current settings; open ones keep theirs. */
  update(listener: ListenerSnapshot): void {
    if (listener.h2 === undefined) return;
    this.server.updateSettings(h2Settings(listener.h2, listener.limits));
    this.count = m.protocolRequests.labels(listener.name, 'h2');
  }

  /** A TLS socket whose ALPN is h2 (handshake and mTLS checks done by the engine). */
  accept(socket: TLSSocket, conn: ConnFacts): void {
    // The server's connection listener makes the session and emits 'session' synchronously.
    this.next = conn;
    this.server.emit('connection', socket);
    this.next = undefined;
  }

  private onSession(session: ServerHttp2Session): void {
    const conn = this.next;
    if (conn === undefined || this.draining) {
      session.destroy();
      return;
    }
    const st: SessionState = {
      conn, session, open: 0, idle: undefined, cut: false,
      tokens: this.host.listener().h2?.maxResets ?? 100, refilled: now(),
    };
    this.sessions.add(st);
    // Protocol errors end the session (Node sends GOAWAY); counted, never thrown.
    session.on('error', () => this.closed('protocol_error'));
    session.once('close', () => {
      clearTimeout(st.idle);
      this.sessions.delete(st);
    });
    session.on('stream', (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, _f: number, raw: string[]) =>
      this.onStream(st, stream, headers, raw),
    );
    this.idle(st, this.host.listener().timeouts.requestHeaderMs);
  }

  private idle(st: SessionState, ms: number): void {
    clearTimeout(st.idle);
    st.idle = setTimeout(() => {
      if (st.open > 0 || st.session.destroyed) return;
      this.closed('idle');
      st.session.close();
    }, ms);
  }

  private closed(reason: string): void {
    m.h2Closed.inc({ listener: this.host.listener().name, reason });
  }

  /** A stream the client reset before its response ended; past the allowance the connection goes. */
  private reset(st: SessionState): void {
    const max = this.host.listener().h2?.maxResets ?? 100;
    const t = now();
    st.tokens = Math.min(max, st.tokens + ((t - st.refilled) * max) / 10_000);
    st.refilled = t;
    if (--st.tokens >= 0 || st.session.destroyed || st.cut) return;
    st.cut = true;
    this.closed('rapid_reset');
    // GOAWAY first (destroy(code) sends NO_ERROR on Node 20.20, measured), then close once
    // it is written; the streams still open are reset with it.
    st.session.goaway(NGHTTP2_ENHANCE_YOUR_CALM);
    setImmediate(() => st.session.destroy());
  }

  private onStream(st: SessionState, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, raw: string[]): void {
    // Stream errors (a reset mid-body) reach the exchange through 'close'; never thrown.
    stream.on('error', noop);
    const state = this.host.state();
    const listener = this.host.listener();
    const h2 = listener.h2;
    st.open++;
    clearTimeout(st.idle);
    st.idle = undefined;
    let ex: H2Exchange | undefined;
    stream.once('close', () => {
      st.open--;
      // Closed before the gateway ended or reset it, while the session lives: the client reset it
      // (Node ends the writable side on a reset, so writableFinished cannot tell).
      if (!st.session.destroyed && ex?.settled !== true) this.reset(st);
      if (st.open === 0 && !st.session.destroyed && !st.session.closed) this.idle(st, listener.timeouts.keepAliveMs);
    });
    if (h2 !== undefined) {
      stream.setTimeout(h2.streamIdleMs, () => {
        if (ex !== undefined) ex.settled = true;
        stream.close(NGHTTP2_CANCEL);
      });
    }
    this.count.inc();

    const method = headers[':method'] ?? '';
    const path = headers[':path'];
    const authority = headers[':authority'];
    const build = requestHeaders(raw, stream.endAfterHeaders);
    ex = new H2Exchange(stream, method, path ?? '', build.headers, st.conn, build.expectContinue);
    // nghttp2 already resets a stream with connection-specific headers, an unknown or
    // misplaced pseudo-header, or no :method/:scheme/:path; these are the rules it leaves.
    let bad: string | null = build.error;
    if (bad === null && method === 'CONNECT') bad = 'CONNECT is not supported';
    else if (bad === null && headers[':scheme'] !== 'https') bad = ':scheme must be https';
    else if (bad === null && path === undefined) bad = 'missing :path';
    else if (bad === null && authority !== undefined && build.host !== null) {
      // RFC 9113 §8.3.1: a Host that names another origin than :authority is malformed.
      if (build.host.toLowerCase() !== authority.toLowerCase()) bad = ':authority and Host differ';
    }
    if (bad !== null) {
      m.requests.inc({ route: '-', status: 400 });
      sendError(ex, 400, 'TLSGATE_E_BAD_REQUEST', bad, true);
      return;
    }
    if (build.host === null && authority === undefined) {
      m.requests.inc({ route: '-', status: 400 });
      sendError(ex, 400, 'TLSGATE_E_BAD_REQUEST', 'missing :authority', true);
      return;
    }
    const name = authority ?? build.host!;
    // Host first, as on an HTTP/1.1 request line: the stage reads the authority from it.
    ex.rawHeaders.unshift('host', name);
    const misdirected = otherCertificate(state, listener, st.conn, name);
    if (misdirected !== null) {
      m.refused.inc({ listener: listener.name, reason: 'misdirected_cert' });
      m.requests.inc({ route: '-', status: 421 });
      const msg = `host ${misdirected} is served with another certificate: connect with that name as SNI`;
      sendError(ex, 421, 'TLSGATE_E_MISDIRECTED', msg);
      return;
    }
    serve(state, listener, ex);
  }

  /** GOAWAY to every session: in-flight streams finish, no new one starts. */
  drain(): void {
    this.draining = true;
    for (const st of this.sessions) {
      this.closed('drain');
      st.session.close();
    }
  }

  destroy(): void {
    for (const st of this.sessions) st.session.destroy();
  }
}

interface BuiltHeaders {
  /** Regular fields for the stage, cookies joined (RFC 9113 §8.2.3); Host is added by the caller. */
  headers: string[];
  host: string | null;
  expectContinue: boolean;
  error: string | null;
}

/**
 * raw: the stream's header list as received ([name, value, …], pseudo-headers first).
 * A request with a body and no content-length is marked `transfer-encoding: chunked` for
 * the stage, which then counts it against max_body_size (the header is never forwarded).
 */
function requestHeaders(raw: readonly string[], noBody: boolean): BuiltHeaders {
  const headers: string[] = [];
  let host: string | null = null;
  let cookie: string | null = null;
  let length = false;
  let expectContinue = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    if (name.charCodeAt(0) === 0x3a /* : */) continue;
    if (H2_CONNECTION_HEADERS.has(name)) {
      if (name === 'te' && value === 'trailers') continue;
      return { headers, host, expectContinue, error: `connection-specific header ${name} in an HTTP/2 request` };
    }
    switch (name) {
      case 'host':
        if (host !== null) return { headers, host, expectContinue, error: 'several Host headers' };
        host = value;
        continue;
      case 'cookie':
        cookie = cookie === null ? value : `${cookie}; ${value}`;
        continue;
      case 'content-length':
        length = true;
        break;
      case 'expect':
        expectContinue ||= value.toLowerCase() === '100-continue';
        break;
    }
    headers.push(name, value);
  }
  if (cookie !== null) headers.push('cookie', cookie);
  if (!noBody && !length) headers.push('transfer-encoding', 'chunked');
  // A request without a body has nothing to continue.
  return { headers, host, expectContinue: expectContinue && !noBody, error: null };
}

/**
 * Connection coalescing (RFC 9113 §9.1.1): a client reuses a connection for any name its
 * certificate covers. A name served by another SSL object with another certificate is sent
 * back (421) so the client connects with it as SNI; the mTLS side of the rule is the
 * stage's (authority.ts). null: this connection may serve the name.
 */
function otherCertificate(
  state: DataPlaneState, listener: ListenerSnapshot, conn: ConnFacts, authority: string,
): string | null {
  const own = conn.ssl;
  const a = parseAuthority(authority);
  // An invalid authority is the stage's 400.
  if (a === null || own === undefined) return null;
  // The same cached answer the stage's authority rule reads (the SNI lookup was ~2 µs of the
  // ~50 µs an h2 request costs here, measured).
  const lookup = servingLookup(state);
  const serving = lookup.get(a.host, listener.defaultSsl);
  if (serving === null || serving.id === own.id) return null;
  // The stage refuses it under the mTLS rule, with that reason.
  if (checkAuthority(state.sni, conn, a.host, listener.defaultSsl, lookup) !== null) return null;
  if (serving.pairs.length === own.pairs.length && serving.pairs.every((p, i) => p.cert === own.pairs[i]!.cert)) {
    return null;
  }
  return a.host;
}

function now(): number {
  return performance.now();
}

function noop(): void {}
