// The uws engine: uWebSockets.js (uSockets + BoringSSL) behind the same Engine
// interface as node:tls: same snapshot, SNI map, router and direct responses.
//
// What uWS 20.30 does that shapes this file (measured):
// - Server names are installed per app with addServerName(file names); a name's
//   routes live on its own router (`domain(name)`), so every installed name gets the
//   handler, or its requests hang.
// - removeServerName while a connection of that name is open frees the router that
//   connection still uses (exit 135). So a name is never removed: a rotation that
//   changes an installed name starts a new *generation* (a new app listening on the
//   same port with SO_REUSEPORT), then closes the old listen socket. The old app keeps
//   its open connections, with the certificate they shook hands with.
// - Its SNI tree matches `*.parent` itself and is case-sensitive: names are installed
//   lazily from missingServerName, wildcards together with the exact names below them
//   (or the wildcard would shadow them), odd spellings as bounded aliases.
// - The app's own context is the no-SNI / no-match certificate: default_ssl, or none,
//   and then such a handshake fails.
import { TlsgateError } from '../errors';
import { dataPlane as m } from '../metrics';
import { normalizeHost, wildcardParent } from '../routing/names';
import { sendError, serve } from '../proxy';
import type { ListenerSnapshot, SslSnapshot } from '../snapshot/types';
import type { DataPlaneState, Engine, EngineDeps, StateChange } from './engine';
import { KeyDir } from './key-dir';
import {
  loadUws,
  type HttpRequest,
  type HttpResponse,
  type UwsApp,
  type UwsModule,
  type us_listen_socket,
} from './uws-load';
import { UwsExchange } from './uws-exchange';

/** Spellings of a known name other than its normal form (upper case, trailing dot) installed per generation. */
const MAX_ALIASES = 256;
/** Retired generations whose listen socket is closed, not yet freed: more is worth a warning. */
const RETIRED_MAX_WARN = 1_000;
/**
 * A retired generation is closed and its names removed once no request ran on it for this
 * long: uWS closes an HTTP connection idle for 10-12 s (measured; a handshake too), so by
 * then it holds no connection. Before this, each rotation of an installed name kept its app
 * for good: +42 MB RSS per 1,000 rotations of one file (measured, 1k objects).
 */
const REAP_IDLE_MS = 30_000;
const REAP_EVERY_MS = 5_000;
/**
 * Past this many retired generations, those idle for PRESSED_IDLE_MS are freed too, oldest
 * first, at each rotation: every app ever made stays allocated (kept as a spare), so the apps
 * of a worker are the most generations alive at once. 1,000 rotations back to back (the
 * bench's soak, ~34 a second) kept ~1,000 alive within the 30 s delay: +29 MB RSS for good.
 * The cost: a keep-alive connection idle for 2 s on a certificate rotated since is closed, as
 * nginx's old workers close idle keep-alive connections at a reload.
 */
const RETIRED_SOFT_MAX = 32;
const PRESSED_IDLE_MS = 2_000;

interface Generation {
  id: number;
  readonly app: UwsApp;
  listenSocket: us_listen_socket | undefined;
  /** Key in uWS's SNI tree → hash of the SSL object installed under it. */
  readonly installed: Map<string, string>;
  aliases: number;
  readonly defaultHash: string | undefined;
  inflight: number;
  /** performance.now() of its last request start or end, handshake callback, or retirement. */
  lastActive: number;
  /** Generations this app has served as (more than 1: a spare reused). */
  uses: number;
}

let keyDir: KeyDir | undefined;
/** One private key directory per process, created with the first uws listener. */
function keys(): KeyDir {
  return (keyDir ??= new KeyDir());
}

export class UwsEngine implements Engine {
  listener: ListenerSnapshot;
  private state: DataPlaneState;
  private readonly uws: UwsModule;
  private current: Generation;
  private readonly retired: Generation[] = [];
  /**
   * Freed (closed, no names, no connection), same handlers: ready to listen as a new generation.
   * Every freed app is kept: uWS never frees an app's own structures, so one dropped here
   * would stay allocated anyway. Reusing all of them bounds a worker's apps by the most
   * generations alive at once (those rotated in the last REAP_IDLE_MS + REAP_EVERY_MS), not by
   * the rotations made. With at most 64 kept, rotating an installed name faster than about
   * 2 a second created new apps for good: ~42 KB each (bench soak, 1k objects, 14/s).
   */
  private readonly spare: Generation[] = [];
  private nextId = 1;
  private draining = false;
  private aliasWarned = false;
  private drainWaiter: (() => void) | undefined;
  private reaper: NodeJS.Timeout | undefined;

  constructor(
    listener: ListenerSnapshot,
    state: DataPlaneState,
    private readonly deps: EngineDeps,
  ) {
    this.listener = listener;
    this.state = state;
    this.uws = loadUws(listener.name);
    this.current = this.generation();
  }

  /** Generations made so far (the first included): what a test or the status can read. */
  get generations(): number {
    return this.nextId - 1;
  }

  listen(): Promise<void> {
    try {
      this.bind(this.current);
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /**
   * Names this generation never installed need nothing: they are installed on their first
   * handshake (missingServerName) from the new state. Only a name already installed with
   * other material, or a default certificate that changed, needs a new generation: uWS
   * 20.30 ignores addServerName for a name it holds (uSockets sni_add refuses a duplicate)
   * and removeServerName with a connection of that name open crashes the process.
   */
  update(state: DataPlaneState, listener: ListenerSnapshot, change?: StateChange): void {
    const prev = { state: this.state, listener: this.listener };
    const sameDefault = listener.defaultSsl === this.listener.defaultSsl;
    this.state = state;
    this.listener = listener;
    if (this.draining) return;
    const stale = change && sameDefault ? this.staleAfter(this.current, change) : this.stale(this.current);
    if (!stale) return;
    // A new app on the same port first, then the old listen socket closes: there is
    // always a socket accepting. uWS listens synchronously.
    let next: Generation | undefined;
    try {
      next = this.generation();
      this.bind(next);
    } catch (err) {
      // The previous generation keeps serving its own certificates: thrown, so the worker
      // does not ack a snapshot this listener does not serve.
      next?.app.close();
      this.state = prev.state;
      this.listener = prev.listener;
      throw err;
    }
    const old = this.current;
    this.current = next;
    // Closing a SO_REUSEPORT listen socket resets the connections still in its accept
    // queue (unless net.ipv4.tcp_migrate_req=1). update() runs from an IPC callback, long
    // after uWS last drained that queue; the check phase runs right after the poll phase
    // in which uWS accepted, so the window for a reset shrinks to microseconds.
    setImmediate(() => this.retire(old));
    this.deps.log.debug({ listener: listener.name, generation: next.id, uses: next.uses }, 'uws generation rotated');
  }

  close(timeoutMs: number): Promise<void> {
    this.draining = true;
    clearInterval(this.reaper);
    for (const g of [this.current, ...this.retired]) this.unbind(g);
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.drainWaiter = undefined;
        for (const g of [this.current, ...this.retired]) g.app.close();
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref();
      this.drainWaiter = () => {
        if (this.inflight() === 0) done();
      };
      this.drainWaiter();
    });
  }

  private inflight(): number {
    return this.retired.reduce((n, g) => n + g.inflight, this.current.inflight);
  }

  private generation(): Generation {
    const d = this.defaultSsl(this.state);
    // The app's own context (default_ssl) is fixed at creation: a spare serves only the same one.
    const i = this.spare.findIndex((g) => g.defaultHash === d?.hash);
    if (i >= 0) {
      const g = this.spare.splice(i, 1)[0]!;
      g.id = this.nextId++;
      g.listenSocket = undefined;
      g.installed.clear();
      g.aliases = 0;
      g.inflight = 0;
      g.lastActive = performance.now();
      g.uses++;
      return g;
    }
    const app = d
      ? keys().withPair(d.pairs[0]!, (files) => this.uws.SSLApp({ ...files, ssl_ciphers: uwsCiphers(d) }))
      : this.uws.SSLApp({});
    const g: Generation = {
      id: this.nextId++,
      app,
      listenSocket: undefined,
      installed: new Map(),
      aliases: 0,
      defaultHash: d?.hash,
      inflight: 0,
      lastActive: performance.now(),
      uses: 1,
    };
    app.any('/*', (res, req) => this.onRequest(g, res, req));
    app.missingServerName((name) => this.onMissingName(g, name));
    return g;
  }

  private bind(g: Generation): void {
    const { host, port, name } = this.listener;
    let socket: us_listen_socket | false = false;
    g.app.listen(host, port, (s) => {
      socket = s;
    });
    if (!socket)
      throw new TlsgateError(
        'TLSGATE_E_LISTEN',
        `listeners.${name}: cannot listen on ${host}:${port} (engine uws: the port is taken by a socket ` +
          `without SO_REUSEPORT, or the address is not local)`,
      );
    g.listenSocket = socket;
  }

  private unbind(g: Generation): void {
    if (g.listenSocket) this.uws.us_listen_socket_close(g.listenSocket);
    g.listenSocket = undefined;
  }

  private retire(g: Generation): void {
    this.unbind(g);
    g.lastActive = performance.now();
    this.retired.push(g);
    if (!this.reaper) {
      this.reaper = setInterval(() => this.reap(), REAP_EVERY_MS);
      this.reaper.unref();
    }
    if (this.retired.length > RETIRED_SOFT_MAX) this.reap();
    if (this.retired.length === RETIRED_MAX_WARN) {
      this.deps.log.warn(
        { listener: this.listener.name, generations: this.retired.length },
        'uws: many retired generations in this worker (uWS frees an app only at exit); memory grows with each rotation',
      );
    }
  }

  /**
   * Free the retired generations that have been idle past REAP_IDLE_MS: close() ends the
   * sockets it may still hold (none, after uWS's own idle timeout), then its names are
   * removed, which frees their contexts and routers (safe now: no connection uses them).
   */
  private reap(): void {
    if (this.draining) return;
    const now = performance.now();
    let over = this.retired.length - RETIRED_SOFT_MAX;
    // Oldest first: `retired` is in retirement order.
    const idle = this.retired.filter((g) => {
      if (g.inflight !== 0) return false;
      const quiet = now - g.lastActive;
      if (quiet >= REAP_IDLE_MS) return true;
      if (over > 0 && quiet >= PRESSED_IDLE_MS && g !== this.current) {
        over--;
        return true;
      }
      return false;
    });
    for (const g of idle) {
      this.retired.splice(this.retired.indexOf(g), 1);
      try {
        g.app.close();
        for (const key of g.installed.keys()) g.app.removeServerName(key);
        g.installed.clear();
        this.spare.push(g);
        this.deps.log.debug({ listener: this.listener.name, generation: g.id }, 'uws generation freed');
      } catch (err) {
        this.deps.log.warn({ err, listener: this.listener.name, generation: g.id }, 'uws: cannot free a generation');
      }
    }
    if (this.retired.length === 0) {
      clearInterval(this.reaper);
      this.reaper = undefined;
    }
  }

  private defaultSsl(state: DataPlaneState): SslSnapshot | undefined {
    return this.listener.defaultSsl ? state.sni.byId.get(this.listener.defaultSsl) : undefined;
  }

  /** stale(), looking only at what a delta changed: O(changed names), not O(installed). */
  private staleAfter(g: Generation, change: StateChange): boolean {
    const d = this.listener.defaultSsl;
    if (d !== undefined && change.ids.has(d) && this.defaultSsl(this.state)?.hash !== g.defaultHash) return true;
    // Odd spellings are installed under the client's own spelling: the full check finds them.
    if (g.aliases > 0) return this.stale(g);
    const sni = this.state.sni;
    for (const name of change.names) {
      const hash = g.installed.get(name);
      if (name.startsWith('*.')) {
        if (hash !== undefined && sni.wildcardOf(name.slice(2))?.hash !== hash) return true;
        continue;
      }
      if (hash !== undefined) {
        if (sni.lookup(name, undefined).ssl?.hash !== hash) return true;
        continue;
      }
      // A new exact name below an installed wildcard would be shadowed by it.
      const parent = wildcardParent(name);
      if (parent === null || !g.installed.has(`*.${parent}`)) continue;
      if (sni.lookup(name, undefined).match === 'exact') return true;
    }
    return false;
  }

  /** Does the new state change what this generation already answers for? */
  private stale(g: Generation): boolean {
    const state = this.state;
    if (this.defaultSsl(state)?.hash !== g.defaultHash) return true;
    for (const [key, hash] of g.installed) {
      if (key.startsWith('*.')) {
        const parent = key.slice(2);
        if (state.sni.wildcardOf(parent)?.hash !== hash) return true;
        // A new exact name below an installed wildcard would be shadowed by it.
        for (const child of state.sni.exactUnder(parent)) if (!g.installed.has(child)) return true;
      } else if (state.sni.lookup(key, undefined).ssl?.hash !== hash) {
        return true;
      }
    }
    return false;
  }

  /** Called by uWS, synchronously inside the handshake, for a name its tree does not hold. Must not throw. */
  private onMissingName(g: Generation, raw: string): void {
    g.lastActive = performance.now();
    try {
      const { sni } = this.state;
      const { ssl, match } = sni.lookup(raw, undefined);
      // No match: nothing installed, uWS continues with the app's own context (default_ssl or none).
      if (!ssl) return;
      const name = normalizeHost(raw)!;
      if (name !== raw) {
        if (g.aliases >= MAX_ALIASES) {
          if (!this.aliasWarned)
            this.deps.log.warn(
              { listener: this.listener.name, max: MAX_ALIASES },
              'uws: too many SNI spellings (upper case, trailing dot) in one generation; further ones get the default certificate',
            );
          this.aliasWarned = true;
          return;
        }
        g.aliases++;
        this.install(g, raw, ssl);
        return;
      }
      if (match === 'exact') {
        this.install(g, name, ssl);
        return;
      }
      const parent = wildcardParent(name)!;
      for (const child of sni.exactUnder(parent)) {
        const c = sni.lookup(child, undefined).ssl;
        if (c) this.install(g, child, c);
      }
      this.install(g, `*.${parent}`, ssl);
    } catch (err) {
      m.handshakeFailures.inc({ listener: this.listener.name, reason: 'context' });
      this.deps.log.error({ err, listener: this.listener.name }, 'uws: cannot install a server name');
    }
  }

  private install(g: Generation, key: string, ssl: SslSnapshot): void {
    if (g.installed.has(key)) return;
    // One pair per uWS context: the preferred (ECDSA) one, first in the snapshot.
    keys().withPair(ssl.pairs[0]!, (files) => g.app.addServerName(key, { ...files, ssl_ciphers: uwsCiphers(ssl) }));
    g.installed.set(key, ssl.hash);
    // domain() makes the next registration go to this name's router.
    g.app.domain(key).any('/*', (res, req) => this.onRequest(g, res, req));
  }

  private onRequest(g: Generation, res: HttpResponse, req: HttpRequest): void {
    let ex: UwsExchange | undefined;
    try {
      g.inflight++;
      g.lastActive = performance.now();
      ex = new UwsExchange(res, req, this.draining, () => {
        g.inflight--;
        g.lastActive = performance.now();
        this.drainWaiter?.();
      });
      m.protocolRequests.inc({ listener: this.listener.name, protocol: 'http/1.1' });
      serve(this.state, this.listener, ex);
      ex.leftHandler();
    } catch (err) {
      // An exception out of a uWS handler ends the process: answer 500 instead.
      this.deps.log.error({ err, listener: this.listener.name }, 'uws: request handler failed');
      if (ex === undefined) {
        g.inflight--;
        res.close();
      } else if (!ex.headersSent) sendError(ex, 500, 'TLSGATE_E_INTERNAL', 'internal error', true);
      else ex.destroy();
    }
  }
}

/**
 * The object's TLS ≤ 1.2 cipher list for BoringSSL (its TLS 1.3 suites are fixed, so TLS_
 * names are dropped). Renegotiation needs no option: BoringSSL servers never renegotiate.
 */
function uwsCiphers(ssl: SslSnapshot): string {
  return ssl.ciphers
    .split(':')
    .filter((c) => c && !c.startsWith('TLS_'))
    .join(':');
}
