// Loads the uWebSockets.js native binary, only when a listener says `engine: uws`.
// The npm package's own entry point falls back to a pure-JS imitation (no SNI, no
// BoringSSL) with a console warning when the binary does not load; tlsgate loads the
// binary itself, so "cannot load" is a clear error instead of a silent downgrade.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { TemplatedApp, AppOptions, us_listen_socket } from 'uWebSockets.js';
import { TlsgateError } from '../errors';

export type { TemplatedApp, AppOptions, HttpRequest, HttpResponse, us_listen_socket } from 'uWebSockets.js';

/** An app as the 20.30 binary has it: `close()` (all its sockets) is missing from the package's types. */
export interface UwsApp extends TemplatedApp {
  close(): UwsApp;
}

/** The part of the uWS module tlsgate uses. */
export interface UwsModule {
  SSLApp(options: AppOptions): UwsApp;
  /** Process-wide switches of the binary; 'silent' drops the `uWebSockets: 20` response header. */
  _cfg(key: string): void;
  us_listen_socket_close(listenSocket: us_listen_socket): void;
}

/** Environment variable: path of a uWS native binary to load instead of the package's (e.g. an official build). */
export const UWS_BINARY_ENV = 'TLSGATE_UWS_BINARY';

let loaded: UwsModule | undefined;

/** The binary for this Node (platform, arch, ABI), or the one named by TLSGATE_UWS_BINARY. */
export function uwsBinaryPath(): string {
  const override = process.env[UWS_BINARY_ENV];
  if (override) return override;
  const pkg = require.resolve('uWebSockets.js/package.json');
  return join(dirname(pkg), 'binaries', `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`);
}

/** Throws TLSGATE_E_ENGINE_LOAD naming the listener when the binary is missing or does not load. */
export function loadUws(listener: string): UwsModule {
  if (loaded) return loaded;
  const where = `Node ${process.version} (${process.platform}-${process.arch}, ABI ${process.versions.modules})`;
  let path: string;
  try {
    path = uwsBinaryPath();
  } catch (err) {
    throw new TlsgateError(
      'TLSGATE_E_ENGINE_LOAD',
      `listeners.${listener}: engine uws: the uWebSockets.js package is not installed ` +
        `(${(err as Error).message.split('\n')[0]}); run npm ci, or use engine: node`,
      { cause: err },
    );
  }
  if (!existsSync(path)) {
    throw new TlsgateError(
      'TLSGATE_E_ENGINE_LOAD',
      `listeners.${listener}: engine uws: no uWebSockets.js binary for ${where} at ${path}; use engine: node`,
    );
  }
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const m = require(path) as Partial<UwsModule>;
    if (typeof m.SSLApp !== 'function' || typeof m.us_listen_socket_close !== 'function')
      throw new Error('the module has no SSLApp / us_listen_socket_close');
    const mod = m as UwsModule;
    // By default every uWS response carries `uWebSockets: 20`: an implementation banner an
    // edge should not send (issue 11 §5). 'silent' turns it off for the process (20.30:
    // LoopData::noMark; measured with curl -i). The official source has no runtime switch
    // but this one, so its absence is a load error, not a silent banner.
    if (typeof mod._cfg !== 'function') throw new Error('the module has no _cfg (cannot drop the uWebSockets header)');
    mod._cfg('silent');
    loaded = mod;
    return loaded;
  } catch (err) {
    throw new TlsgateError(
      'TLSGATE_E_ENGINE_LOAD',
      `listeners.${listener}: engine uws cannot be loaded on ${where}: ${(err as Error).message.split('\n')[0]}; use engine: node`,
      { cause: err },
    );
  }
}

/** For `validate` and the primary: one issue per uws listener whose engine cannot load. */
export function engineLoadIssues(
  listeners: ReadonlyArray<{ name: string; engine: string }>,
): Array<{ path: string; message: string }> {
  const out: Array<{ path: string; message: string }> = [];
  listeners.forEach((l, i) => {
    if (l.engine !== 'uws') return;
    try {
      loadUws(l.name);
    } catch (err) {
      out.push({ path: `listeners[${i}].engine`, message: (err as Error).message });
    }
  });
  return out;
}

/**
 * A uws rotation closes a SO_REUSEPORT listen socket; Linux resets the connections still
 * queued on it unless net.ipv4.tcp_migrate_req is 1 (measured: ~0.1-0.3 reset per rotation
 * under continuous new-connection load without it, none with it). Returns the warning, if any.
 */
export function reusePortMigrationWarning(): string | undefined {
  let v: string;
  try {
    v = readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim();
  } catch {
    return undefined;
  }
  return v === '0'
    ? 'net.ipv4.tcp_migrate_req is 0: a certificate rotation on a uws listener closes a SO_REUSEPORT ' +
      'listen socket, and the kernel resets the connections still queued on it; set it to 1 (sysctl -w net.ipv4.tcp_migrate_req=1)'
    : undefined;
}
