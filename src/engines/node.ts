// The node engine: node:https (OpenSSL 3) with SNICallback over the precompiled map,
// per-SNI mTLS set on the connection inside the callback, hitless swaps.
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants } from 'node:crypto';
import { createSecureContext, type SecureContext, type TLSSocket } from 'node:tls';
import { ListenError } from '../errors';
import type { ListenerSnapshot, SslSnapshot } from '../snapshot/types';
import type { DataPlaneState, Engine, EngineDeps } from './engine';
import { NodeExchange, rfc4514, serve, type ClientIdentity, type ConnFacts } from '../proxy';
import { SESSION_ID_CONTEXT, buildContext, versionRange } from './context-cache';
import { dataPlane as m } from '../metrics';
import { wireNodeParser } from './node-client-error';

const SSL = Symbol('tlsgate.ssl');
const CONN = Symbol('tlsgate.conn');
type GateSocket = TLSSocket & { [SSL]?: SslSnapshot; [CONN]?: NodeConn };

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
  /** Only a connection whose mTLS check passed (onSecure destroys the others) is verified. */
  get authorized(): boolean {
    return this.#socket[SSL]?.clientCa !== undefined && this.#socket.authorized;
  }
  get remoteAddress(): string {
    return this.#socket.remoteAddress ?? '';
  }
  clientIdentity(): ClientIdentity | undefined {
    if (this.#identity === null) {
      const cert = this.authorized ? this.#socket.getPeerCertificate() : undefined;
      this.#identity = cert && cert.subject ? { subject: rfc4514(cert.subject), fingerprint: cert.fingerprint256 } : undefined;
    }
    return this.#identity;
  }
}

/**
 * Private fields of node:tls that per-SNI mTLS relies on (Node 20, measured).
 * `setVerifyMode` asks for the certificate; `_requestCert` and `_rejectUnauthorized`
 * make Node check the chain after the handshake (without them a certificate from a
 * foreign CA was accepted with authorized === false). test/mtls-per-sni.test.ts fails
 * loudly if a Node release changes them.
 */
interface TlsSocketInternals {
  _handle: { setVerifyMode(request: boolean, reject: boolean): void } | null;
  _requestCert: boolean;
  _rejectUnauthorized: boolean;
}

function setVerify(socket: TLSSocket, on: boolean): void {
  const s = socket as unknown as TlsSocketInternals;
  s._handle?.setVerifyMode(on, on);
  s._requestCert = on;
  s._rejectUnauthorized = on;
}

export class NodeEngine implements Engine {
  listener: ListenerSnapshot;
  private state: DataPlaneState;
  private readonly server: Server;
  private draining = false;

  constructor(listener: ListenerSnapshot, state: DataPlaneState, private readonly deps: EngineDeps) {
    this.listener = listener;
    this.state = state;
    const engine = this;
    this.server = createServer(
      {
        requestCert: false,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
        sessionIdContext: SESSION_ID_CONTEXT,
        // A `function`, not an arrow: Node calls it with `this` = the TLSSocket.
        SNICallback: function (this: TLSSocket, servername, cb) {
          engine.onSni(this as GateSocket, servername, cb);
        },
        keepAliveTimeout: 5_000,
        headersTimeout: 30_000,
        requestTimeout: 60_000,
      },
      (req, res) => this.onRequest(req, res, false),
    );
    // Expect: 100-continue: the proxy sends 100 only once an upstream connection is
    // ready, so a client never uploads a body to a dead upstream.
    this.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => this.onRequest(req, res, true));
    this.server.on('secureConnection', (s: TLSSocket) => this.onSecure(s as GateSocket));
    this.server.on('tlsClientError', (err: Error & { code?: string }, s: TLSSocket) => this.onTlsError(err, s));
    wireNodeParser(this.server, () => this.listener.limits);
    this.applyDefault();
  }

  listen(): Promise<void> {
    const { host, port, name } = this.listener;
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(new ListenError(name, `${host}:${port}`, err));
      this.server.once('error', onError);
      this.server.listen({ host, port }, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
  }

  update(state: DataPlaneState, listener: ListenerSnapshot): void {
    this.state = state;
    this.listener = listener;
    // Read by Node for each new connection's parser.
    this.applyDefault();
  }

  /**
   * The server's own context serves clients without SNI (the listener's default SSL
   * object, if any) and seals/opens every session ticket, before any SNI callback.
   * A resumed session skips the SNI callback, so it would skip a per-SNI client
   * certificate check too: while any SSL object asks for mTLS, this listener issues
   * no tickets (measured: a separate session-id context per object does not stop
   * resumption across contexts on Node 20). Otherwise every worker shares the ticket
   * keys from the snapshot, so a ticket resumes on any of them.
   */
  private applyDefault(): void {
    const d = this.listener.defaultSsl ? this.state.sni.byId.get(this.listener.defaultSsl) : undefined;
    const srv = this.server as Server & { requestCert: boolean; rejectUnauthorized: boolean; _sharedCreds: SecureContext };
    const servers = this.state.snapshot.ssls.filter((s) => s.type === 'server');
    const noTickets = !this.listener.sessionTickets || servers.some((s) => s.clientCa !== undefined) ? constants.SSL_OP_NO_TICKET : 0;
    // The version is chosen with this context, before the SNI callback: offer the union
    // of the objects' ssl_protocols (per object, onSecure refuses the rest).
    const protocols = [...new Set(servers.flatMap((s) => s.protocols))];
    // Its own context (not the cached one): its ticket settings stay out of SNI contexts.
    srv._sharedCreds = d
      ? buildContext(d, { secureOptions: noTickets, protocols })
      : createSecureContext({ ...versionRange(protocols), sessionIdContext: SESSION_ID_CONTEXT, secureOptions: noTickets });
    const keys = this.state.snapshot.ticketKeys;
    if (keys && !noTickets) srv.setTicketKeys(Buffer.from(keys));
    srv.requestCert = !!d?.clientCa;
    srv.rejectUnauthorized = !!d?.clientCa;
  }

  private onSni(socket: GateSocket, servername: string, cb: (err: Error | null, ctx?: import('node:tls').SecureContext) => void): void {
    const state = this.state;
    const { ssl } = state.sni.lookup(servername, this.listener.defaultSsl);
    if (!ssl) {
      this.fail('no_sni_match');
      // Continue with the certificate-less default context: the client gets a TLS alert.
      setVerify(socket, false);
      cb(null, undefined);
      return;
    }
    let ctx;
    try {
      ctx = state.contexts.get(ssl);
    } catch (err) {
      this.fail('context');
      this.deps.log.error({ err, ssl: ssl.id }, 'cannot build the TLS context of an SSL object');
      cb(err as Error);
      return;
    }
    socket[SSL] = ssl;
    setVerify(socket, ssl.clientCa !== undefined);
    cb(null, ctx);
  }

  private onSecure(socket: GateSocket): void {
    let ssl = socket[SSL];
    if (!ssl && socket.isSessionReused()) {
      // A resumed session: no SNI callback ran. Tickets exist only while no object asks
      // for mTLS (applyDefault), so there is no client certificate to enforce, and the
      // version is within the listener's bounds. TLS 1.3 reports the SNI (select by it);
      // TLS 1.2 does not (Node acks SNI in the certificate callback, so the session
      // records no host name): then the connection keeps no SSL object.
      const name = (socket as TLSSocket & { servername?: string | false }).servername;
      ssl = name ? this.state.sni.lookup(name, this.listener.defaultSsl).ssl : undefined;
      if (ssl?.clientCa) {
        this.fail('mtls_missing');
        socket.destroy();
        return;
      }
      if (!ssl) {
        this.accepted(socket);
        return;
      }
    }
    ssl ??= this.listener.defaultSsl ? this.state.sni.byId.get(this.listener.defaultSsl) : undefined;
    if (!ssl) {
      this.fail('no_sni_match');
      socket.destroy();
      return;
    }
    socket[SSL] = ssl;
    // The SNI callback runs after the version is chosen: enforce ssl_protocols here,
    // before any HTTP byte is read.
    const proto = socket.getProtocol();
    if (!ssl.protocols.includes(proto as 'TLSv1.2')) {
      this.fail('protocol');
      socket.destroy();
      return;
    }
    if (ssl.clientCa) {
      if (!socket.authorized) {
        this.fail('mtls_invalid');
        socket.destroy();
        return;
      }
      if (intermediates(socket) > ssl.clientDepth) {
        this.fail('mtls_depth');
        socket.destroy();
        return;
      }
    }
    this.accepted(socket);
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
    const c = err.code ?? '';
    // A certificate from a foreign CA passes OpenSSL (Node verifies after the handshake):
    // Node records the verify error, destroys the socket without an error, and the event
    // then carries a bare ECONNRESET "socket hang up" (measured, Node 20.20).
    const verifyError = (socket as TLSSocket & { authorizationError?: unknown }).authorizationError;
    const reason = verifyError
      ? 'mtls_invalid'
      : /CERTIFICATE_REQUIRED|PEER_DID_NOT_RETURN/.test(c + err.message)
      ? 'mtls_missing'
      : /CERT|VERIFY|UNABLE_TO_GET_ISSUER|SELF_SIGNED/.test(c)
        ? 'mtls_invalid'
        : /VERSION|PROTOCOL/.test(c)
          ? 'protocol'
          : 'other';
    this.fail(reason);
  }

  private onRequest(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    const socket = req.socket as GateSocket;
    if (this.draining) res.shouldKeepAlive = false;
    serve(this.state, this.listener, new NodeExchange(req, res, (socket[CONN] ??= new NodeConn(socket)), expectContinue));
  }

  /** Node's own parser refused the request: a real status line, never a silent close. */
  close(timeoutMs: number): Promise<void> {
    this.draining = true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.server.closeAllConnections();
      }, timeoutMs);
      timer.unref();
      // close() stops accepting and (Node ≥ 19) closes idle keep-alive connections;
      // active ones end after their response (shouldKeepAlive = false above).
      this.server.close(() => {
        clearTimeout(timer);
        resolve();
      });
      this.server.closeIdleConnections();
    });
  }
}

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
