// The node engine: TCP accepted by a net.Server, the ClientHello read before any TLS
// object exists (bounded in size and time), the SSL object picked by its SNI, then the
// TLS socket made from that object's own context (every pair, its client CA and CRL,
// versions, ciphers) and handed to a plain http.Server. Hitless swaps: a new snapshot
// only changes which object the next ClientHello picks.
//
// Why not https.Server + SNICallback (measured on Node 20.20): Node's SNI switch copies
// one certificate into a connection made from the default context, whose own pair stays
// in its slot, so an ECDSA-capable client of an RSA-only name got the default ECDSA
// certificate, and a dual RSA + ECDSA object could present one pair; per-SNI mTLS needed
// private fields, the version was chosen before the SNI, and a resumed session skipped
// the callback.
import {
  createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse,
} from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { Server as TlsServer, type TLSSocket } from 'node:tls';
import { ListenError } from '../errors';
import type { ListenerSnapshot, SslSnapshot } from '../snapshot/types';
import type { DataPlaneState, Engine, EngineDeps } from './engine';
import { CLOSING, NodeExchange, rfc4514, serve, type ClientIdentity, type ConnFacts } from '../proxy';
import { contextOptions } from './context-cache';
import { parseClientHello, UNRECOGNIZED_NAME_ALERT } from './client-hello';
import { connectionBudget } from './fd-budget';
import { dataPlane as m } from '../metrics';
import { wireNodeParser } from './node-client-error';
import { H2Front } from './h2';

const SSL = Symbol('tlsgate.ssl');
const CONN = Symbol('tlsgate.conn');
/** A certificate that failed the check of an object with exemptions: the connection stays, unverified. */
const UNVERIFIED = Symbol('tlsgate.unverified');
type GateSocket = TLSSocket & { [SSL]?: SslSnapshot; [CONN]?: NodeConn; [CLOSING]?: boolean; [UNVERIFIED]?: true };

/** A connection's facts for the request stage: one per connection, read lazily. */
class NodeConn implements ConnFacts {
  readonly #socket: GateSocket;
  #identity: ClientIdentity | undefined | null = null;
  constructor(socket: GateSocket) {
    this.#socket = socket;
  }
  get ssl(): SslSnapshot | undefined {
    return this.#socket[SSL];
  }
  /**
   * Only a connection whose mTLS check passed is verified: onSecure destroys the others, or,
   * for an object with skip_mtls_paths, keeps them unverified (UNVERIFIED: a chain too deep).
   */
  get authorized(): boolean {
    const s = this.#socket;
    return s[SSL]?.clientCa !== undefined && s.authorized && s[UNVERIFIED] !== true;
  }
  get remoteAddress(): string {
    return this.#socket.remoteAddress ?? '';
  }
  clientIdentity(): ClientIdentity | undefined {
    if (this.#identity === null) {
      const cert = this.authorized ? this.#socket.getPeerCertificate() : undefined;
      this.#identity =
        cert && cert.subject ? { subject: rfc4514(cert.subject), fingerprint: cert.fingerprint256 } : undefined;
    }
    return this.#identity;
  }
}

/** A TCP connection from accept until its TLS handshake ends. */
interface Pending {
  readonly raw: Socket;
  readonly key: string;
  timer: NodeJS.Timeout | undefined;
  ssl?: SslSnapshot;
  /** Handed to a TLS server; its outcome is counted there. */
  handed: boolean;
  secured: boolean;
  failed: boolean;
}

let engines = 0;

export class NodeEngine implements Engine {
  listener: ListenerSnapshot;
  private state: DataPlaneState;
  private readonly tcp: TcpServer;
  private readonly http: HttpServer;
  /** Handshakes in progress by remote address:port (unique among a listener's live connections). */
  private readonly pending = new Map<string, Pending>();
  /** Distinguishes this engine's TLS servers in the worker's shared cache. */
  private readonly id = `node${++engines}`;
  /** Connections the open-files limit allows (read once: the limit is set before start). */
  private readonly budget = connectionBudget();
  private draining = false;
  private acceptErrors = 0;
  /** HTTP/2 sessions (ALPN h2), made on the first h2 connection. */
  private h2: H2Front | undefined;
  private h1Count: { inc(): void };

  constructor(listener: ListenerSnapshot, state: DataPlaneState, private readonly deps: EngineDeps) {
    this.listener = listener;
    this.state = state;
    const t = listener.timeouts;
    this.http = createHttpServer(
      {
        keepAliveTimeout: t.keepAliveMs,
        // Node answers 408 to a request whose headers are not complete in time.
        headersTimeout: t.requestHeaderMs,
        // Bodies are streamed for as long as they flow: no cap on the whole request.
        requestTimeout: 0,
        // How often Node checks the header deadline (default 30 s).
        connectionsCheckingInterval: Math.min(1_000, t.requestHeaderMs),
        noDelay: true,
      },
      (req, res) => this.onRequest(req, res, false),
    );
    // Expect: 100-continue: the proxy sends 100 only once an upstream connection is
    // ready, so a client never uploads a body to a dead upstream.
    this.http.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res, true));
    // Parser limits follow the listener; parser errors (408 for slow headers included) get a status line.
    wireNodeParser(this.http, () => this.listener.limits);
    // The http.Server never listens (the TCP server does): 'listening' starts its
    // connection tracking, which the header deadline and closeIdleConnections() need.
    this.http.emit('listening');
    this.tcp = createTcpServer({ noDelay: true }, (raw) => this.onConnection(raw));
    // At the cap Node closes a new connection at accept; open ones keep being served.
    // Capped by the fd budget too: past the open-files limit accept() fails (EMFILE).
    this.tcp.maxConnections = Math.min(listener.maxConnections, this.budget);
    this.tcp.on('drop', () => this.fail('max_connections'));
    this.h1Count = m.protocolRequests.labels(listener.name, 'http/1.1');
  }

  listen(): Promise<void> {
    const { host, port, name } = this.listener;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new ListenError(name, `${host}:${port}`, err));
      this.tcp.once('error', onError);
      this.tcp.listen({ host, port }, () => {
        this.tcp.off('error', onError);
        // Accept errors (EMFILE, ENFILE) must not end the worker: libuv retries the accept.
        this.tcp.on('error', (err) => this.acceptError(err));
        resolve();
      });
    });
  }

  update(state: DataPlaneState, listener: ListenerSnapshot): void {
    this.state = state;
    this.listener = listener;
    this.http.keepAliveTimeout = listener.timeouts.keepAliveMs;
    this.http.headersTimeout = listener.timeouts.requestHeaderMs;
    this.tcp.maxConnections = Math.min(listener.maxConnections, this.budget);
    this.h2?.update(listener);
  }

  private acceptError(err: Error): void {
    // One log line per burst: under an fd flood every accept fails.
    if (this.acceptErrors++ % 1000 !== 0) return;
    this.deps.log.error({ err, listener: this.listener.name, count: this.acceptErrors }, 'accept failed');
  }

  private onConnection(raw: Socket): void {
    // Already reset by the client (no peer address), or draining.
    if (this.draining || raw.remoteAddress === undefined) {
      raw.destroy();
      return;
    }
    const key = `${raw.remoteAddress}|${raw.remotePort}`;
    const conn: Pending = { raw, key, timer: undefined, handed: false, secured: false, failed: false };
    conn.timer = setTimeout(() => {
      // Silent clients, or a ClientHello dribbled byte by byte (each holds an fd).
      this.fail('timeout');
      conn.failed = true;
      raw.destroy();
    }, this.listener.timeouts.handshakeMs);
    this.pending.set(key, conn);
    // Resets while the ClientHello is read; once handed over, the TLS socket reports its own.
    raw.on('error', () => undefined);
    raw.once('close', () => {
      clearTimeout(conn.timer);
      // Node destroys a connection whose client certificate fails the chain check; its
      // tlsClientError (a bare ECONNRESET) may come after this close or not at all. Counted
      // once: after the events of this turn, unless onTlsError counted it.
      setImmediate(() => {
        if (this.pending.get(key) === conn) this.pending.delete(key);
        if (!conn.handed || conn.secured || conn.failed || !conn.ssl?.clientCa) return;
        conn.failed = true;
        this.fail('mtls_invalid');
      });
    });
    // Parsed again only once the bytes it asked for are there: a ClientHello sent byte by
    // byte costs a few parses, not one per byte.
    const chunks: Buffer[] = [];
    let have = 0;
    let need = 5;
    let buf: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      have += chunk.length;
      if (have < need) return;
      buf = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, have);
      chunks.length = 0;
      chunks.push(buf);
      const hello = parseClientHello(buf);
      if (hello.kind === 'partial') {
        need = hello.need;
        return;
      }
      raw.off('data', onData);
      raw.pause();
      if (hello.kind === 'invalid') {
        this.fail('malformed');
        conn.failed = true;
        raw.destroy();
        return;
      }
      // The TLS socket reads what is buffered on the TCP socket first.
      raw.unshift(buf);
      this.handOff(conn, hello.servername);
    };
    raw.on('data', onData);
  }

  private handOff(conn: Pending, servername: string | undefined): void {
    const { ssl } = this.state.sni.lookup(servername, this.listener.defaultSsl);
    if (!ssl) {
      this.fail('no_sni_match');
      conn.failed = true;
      conn.raw.end(UNRECOGNIZED_NAME_ALERT);
      return;
    }
    let server: TlsServer;
    try {
      server = this.tlsServer(ssl);
    } catch (err) {
      this.fail('context');
      conn.failed = true;
      this.deps.log.error({ err, ssl: ssl.id }, 'cannot build the TLS context of an SSL object');
      conn.raw.destroy();
      return;
    }
    conn.ssl = ssl;
    conn.handed = true;
    // From here the TLS server's own handshake timeout runs (its tlsClientError names the
    // socket; destroying the TCP socket under it would leave the failure unattributed).
    clearTimeout(conn.timer);
    // Documented injection point: the TLS server wraps the socket with its context.
    server.emit('connection', conn.raw);
  }

  /**
   * One TLS server per SSL object (its SecureContext, verify mode, ALPN), cached by content
   * hash. Session tickets: every worker shares the ticket keys, so a session resumes on any
   * of them, and each object has its own session id context, so a session resumes only on
   * the object that made it. While an object asks for mTLS the listener issues no tickets
   * at all (defence in depth: a resumed session carries its first handshake's verification).
   */
  private tlsServer(ssl: SslSnapshot): TlsServer {
    const tickets = this.listener.sessionTickets && !this.state.mtls;
    const keys = this.state.ticketKeys;
    const h2 = this.listener.h2 !== undefined;
    const key = `${this.id}|${ssl.hash}|${tickets ? 't' : '-'}|${this.listener.timeouts.handshakeMs}|${h2 ? 'h2' : ''}`;
    return this.state.contexts.get(key, ssl.hash, () => {
      const server = new TlsServer({
        ...contextOptions(ssl, { tickets, ...(keys ? { ticketKeys: keys } : {}) }),
        handshakeTimeout: this.listener.timeouts.handshakeMs,
        requestCert: ssl.clientCa !== undefined,
        // With exemptions (skip_mtls_paths) a certificate is asked for, not required (nginx
        // `ssl_verify_client optional`): the stage serves an unverified connection only the exempt paths.
        rejectUnauthorized: ssl.clientCa !== undefined && ssl.skipMtls === undefined,
        ALPNProtocols: h2 ? ['h2', 'http/1.1'] : ['http/1.1'],
      });
      server.on('secureConnection', (s: TLSSocket) => this.onSecure(s as GateSocket));
      server.on('tlsClientError', (err: Error & { code?: string }, s: TLSSocket) => this.onTlsError(err, s));
      return server;
    });
  }

  private onSecure(socket: GateSocket): void {
    const conn = this.pending.get(`${socket.remoteAddress}|${socket.remotePort}`);
    if (!conn?.ssl) {
      this.fail('other');
      socket.destroy();
      return;
    }
    this.pending.delete(conn.key);
    clearTimeout(conn.timer);
    conn.secured = true;
    const ssl = conn.ssl;
    // The context allows only the object's versions; checked again before any HTTP byte.
    if (!ssl.protocols.includes(socket.getProtocol() as 'TLSv1.2')) {
      this.fail('protocol');
      socket.destroy();
      return;
    }
    if (ssl.clientCa) {
      const problem =
        !socket.authorized ? 'mtls_invalid' : intermediates(socket) > ssl.clientDepth ? 'mtls_depth' : null;
      if (problem !== null && ssl.skipMtls === undefined) {
        this.fail(problem);
        socket.destroy();
        return;
      }
      if (problem !== null) socket[UNVERIFIED] = true;
    }
    socket[SSL] = ssl;
    this.accepted(socket);
    if (socket.alpnProtocol === 'h2' && this.listener.h2 !== undefined) {
      this.h2 ??= new H2Front({ state: () => this.state, listener: () => this.listener });
      this.h2.accept(socket, (socket[CONN] ??= new NodeConn(socket)));
      return;
    }
    this.http.emit('connection', socket);
  }

  private accepted(socket: TLSSocket): void {
    const listener = this.listener.name;
    m.handshakes.inc({ listener });
    m.connections.inc({ listener });
    socket.once('close', () => m.connections.dec({ listener }));
  }

  private fail(reason: string): void {
    m.handshakeFailures.inc({ listener: this.listener.name, reason });
  }

  private onTlsError(err: Error & { code?: string }, socket: TLSSocket): void {
    const conn = this.pending.get(`${socket.remoteAddress}|${socket.remotePort}`);
    // A tls.Server leaves some failing sockets open (the handshake timeout among them):
    // https.Server destroys them in its own tlsClientError listener, so must we.
    socket.destroy();
    // No pending entry: the TCP close already counted this connection.
    if (conn === undefined || conn.failed) return;
    conn.failed = true;
    const c = err.code ?? '';
    // A certificate from a foreign CA passes OpenSSL (Node verifies after the handshake):
    // Node records the verify error, destroys the socket without an error, and the event
    // then carries a bare ECONNRESET "socket hang up" (measured, Node 20.20).
    const verifyError = (socket as TLSSocket & { authorizationError?: unknown }).authorizationError;
    const reason = verifyError
      ? 'mtls_invalid'
      : /CERTIFICATE_REQUIRED|PEER_DID_NOT_RETURN/.test(c + err.message)
      ? 'mtls_missing'
      : /CERT|VERIFY|UNABLE_TO_GET_ISSUER|SELF_SIGNED|CRL/.test(c)
        ? 'mtls_invalid'
        : /VERSION|PROTOCOL/.test(c)
          ? 'protocol'
          : /HANDSHAKE_TIMEOUT/.test(c)
            ? 'timeout'
            : 'other';
    this.fail(reason);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    const socket = req.socket as GateSocket;
    // Pipelined behind a response that closes the connection: never served. Node closes the
    // socket once that response is written (shouldKeepAlive false); this one stays unanswered.
    if (socket[CLOSING] === true) {
      res.shouldKeepAlive = false;
      return;
    }
    if (this.draining) res.shouldKeepAlive = false;
    const conn = (socket[CONN] ??= new NodeConn(socket));
    this.h1Count.inc();
    serve(this.state, this.listener, new NodeExchange(req, res, conn, expectContinue));
  }

  close(timeoutMs: number): Promise<void> {
    this.draining = true;
    this.h2?.drain();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.http.closeAllConnections();
        this.h2?.destroy();
        for (const c of this.pending.values()) c.raw.destroy();
      }, timeoutMs);
      timer.unref();
      // The TCP server stops accepting and calls back once every connection is closed;
      // idle keep-alive connections close now, active ones after their response
      // (shouldKeepAlive = false in onRequest).
      this.tcp.close(() => {
        clearTimeout(timer);
        this.http.close(() => undefined);
        resolve();
      });
      this.http.closeIdleConnections();
    });
  }
}

/**
 * Intermediates between the client certificate and its trust anchor. Node completes the
 * peer chain from the connection's certificate store: the object's own context holds its
 * client CA, so the walk ends at the anchor. (With the old SNI switch the store was the
 * default context's, without the CA: the walk stopped one short and `depth: 0` admitted
 * one intermediate.)
 */
function intermediates(socket: TLSSocket): number {
  let c = socket.getPeerCertificate(true);
  let n = 0;
  const seen = new Set<string>();
  while (c && c.issuerCertificate && c.issuerCertificate !== c && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    c = c.issuerCertificate;
    n++;
  }
  // n counts issuers above the leaf, the trust anchor included.
  return Math.max(0, n - 1);
}
