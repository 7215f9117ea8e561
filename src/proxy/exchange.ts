// What the request stage needs from an engine: one request as an engine-neutral
// exchange, and a response writer. An engine owns sockets and TLS; it fills these in
// and calls the stage (stage.ts), which never sees a node:http or uWS object.
import type { Readable } from 'node:stream';
import type { SslSnapshot } from '../snapshot/types';
import type { ClientIdentity } from './options';

/** Facts of the TLS connection the request arrived on. */
export interface ConnFacts {
  /** The SSL object the handshake selected (SNI, or the listener's default_ssl); undefined when none. */
  readonly ssl: SslSnapshot | undefined;
  /** The client certificate was verified against `ssl.clientCa` (mTLS). */
  readonly authorized: boolean;
  readonly remoteAddress: string;
  /** Read on demand: only a proxied request on a verified connection needs it. */
  clientIdentity(): ClientIdentity | undefined;
}

/** How the stage answers; one per request. Every call after the client went away is a no-op. */
export interface ResponseWriter {
  /** Status line and headers are committed (written or buffered for the first body write). */
  readonly headersSent: boolean;
  /** The client connection is gone (aborted, reset) or the writer was destroyed. */
  readonly gone: boolean;
  /**
   * headers: flat [name, value, …], order and case as given. The engine frames the body
   * itself: content-length / transfer-encoding in `headers` are hints it may replace.
   */
  writeHead(status: number, reason: string | undefined, headers: string[]): void;
  /** false: the engine holds data back; call onDrain before writing more. */
  write(chunk: Buffer): boolean;
  /** Called once, when the engine can take more after write() returned false. */
  onDrain(cb: () => void): void;
  /** trailers: flat [name, value, …] (dropped by an engine that cannot send them). */
  end(body?: Buffer | string, trailers?: string[]): void;
  /** `100 Continue`, for an exchange with `expectContinue`. */
  writeContinue(): void;
  /** Close the client connection now: a truncated response is the only signal left. */
  destroy(): void;
  /** The client went away before end(); at most one listener. */
  onGone(cb: (() => void) | null): void;
  /** Ask the engine to close the connection after this response. */
  closeAfter(): void;
}

export interface Exchange {
  readonly method: string;
  /** The request target exactly as received. */
  readonly target: string;
  /** '1.0' or '1.1' as on the request line; absent: the engine only parses HTTP/1.1. */
  readonly httpVersion?: string;
  /** Flat [name, value, …], order, case and duplicates as received. */
  readonly rawHeaders: string[];
  readonly conn: ConnFacts;
  /**
   * The client sent `Expect: 100-continue` and the engine has NOT answered it: the
   * stage sends 100 only once an upstream connection is ready.
   */
  readonly expectContinue: boolean;
  /** The request body with backpressure (consumed at most once); null when the request has none. */
  body(): Readable | null;
  /** The whole body was read (an error answer keeps the connection only then). */
  readonly bodyDone: boolean;
  readonly res: ResponseWriter;
}
