// Runs the real gateway (`node dist/cli.js start`) as a child process in a temp dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { connect, type PeerCertificate, type TLSSocket } from 'node:tls';
import { request as httpsRequest } from 'node:https';

export const ROOT = resolve(__dirname, '..', '..', '..');
export const CLI = join(ROOT, 'dist', 'cli.js');

export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

/** Poll `fn` until it returns a truthy value or the deadline passes. */
export async function waitFor<T>(fn: () => T | Promise<T>, what: string, timeoutMs = 10_000, everyMs = 25): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export class Gateway {
  readonly dir: string;
  proc: ChildProcess | undefined;
  readonly logs: LogLine[] = [];
  stdout = '';
  stderr = '';
  adminPort = 0;
  readonly apiKey = 'test-admin-key-' + Math.random().toString(36).slice(2);
  exitCode: number | null | undefined;
  private exited: Promise<number | null> | undefined;

  constructor(prefix = 'tlsgate-test-') {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
  }

  get configPath(): string {
    return join(this.dir, 'gateway.yaml');
  }

  write(name: string, content: string): void {
    // Write then rename: the watcher sees one complete file.
    const p = join(this.dir, name);
    writeFileSync(p + '.tmp', content);
    renameSync(p + '.tmp', p);
  }

  /** Start and wait for "tlsgate started"; rejects with stderr if the process exits first. */
  async start(config: string, env: NodeJS.ProcessEnv = {}): Promise<void> {
    this.write('gateway.yaml', config);
    const proc = spawn(process.execPath, [CLI, 'start', '--config', this.configPath], {
      cwd: this.dir,
      // The validation cache lives and goes with the test's directory (not ~/.cache).
      env: { TLSGATE_CACHE_DIR: join(this.dir, '.cache'), ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    this.exited = new Promise((res) => proc.once('exit', (code) => res((this.exitCode = code))));
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      this.stdout += d;
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          this.logs.push(JSON.parse(line) as LogLine);
        } catch {
          /* not JSON */
        }
      }
    });
    proc.stderr!.on('data', (d: Buffer) => (this.stderr += d));
    await Promise.race([
      waitFor(() => this.logs.find((l) => l.msg === 'tlsgate started'), 'gateway start', 20_000),
      this.exited.then((code) => {
        throw new Error(`gateway exited with ${code} before starting:\n${this.stderr}`);
      }),
    ]);
  }

  waitExit(timeoutMs = 15_000): Promise<number | null> {
    return Promise.race([
      this.exited!,
      new Promise<never>((_, rej) => setTimeout(() => rej(new Error('gateway did not exit')), timeoutMs).unref()),
    ]);
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- test helper: JSON bodies are asserted field by field
  async admin(method: string, path: string, key: string | null = this.apiKey): Promise<{ status: number; body: any }> {
    const res = await fetch(`http://127.0.0.1:${this.adminPort}${path}`, { method, headers: key ? { 'x-api-key': key } : {} });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      /* text */
    }
    return { status: res.status, body };
  }

  async status(): Promise<{ version: number; workers: Array<{ pid: number; version: number }> }> {
    const r = await this.admin('GET', '/v1/status');
    if (r.status !== 200) throw new Error(`status ${r.status}`);
    return r.body;
  }

  /** Wait until every worker serves at least `version`. */
  async waitVersion(version: number, timeoutMs = 10_000): Promise<void> {
    await waitFor(async () => {
      const s = await this.status();
      return s.version >= version && s.workers.length > 0 && s.workers.every((w) => w.version >= version);
    }, `all workers at version ${version}`, timeoutMs);
  }

  async stop(): Promise<void> {
    if (this.proc && this.exitCode === undefined) {
      this.proc.kill('SIGTERM');
      await this.waitExit().catch(() => this.proc!.kill('SIGKILL'));
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface HandshakeResult {
  ok: boolean;
  error?: string;
  cert?: PeerCertificate;
  authorized?: boolean;
  protocol?: string | null;
  reused?: boolean;
  socket?: TLSSocket;
}

/** One TLS handshake; resolves with the server certificate or the error. Closes unless keep. */
export function handshake(
  port: number,
  opts: { servername?: string; ca?: string; cert?: string; key?: string; minVersion?: 'TLSv1.2' | 'TLSv1.3'; maxVersion?: 'TLSv1.2' | 'TLSv1.3'; keep?: boolean; session?: Buffer } = {},
): Promise<HandshakeResult> {
  return new Promise((resolve) => {
    const s = connect({
      host: '127.0.0.1',
      port,
      ...(opts.servername !== undefined ? { servername: opts.servername } : {}),
      rejectUnauthorized: false,
      ...(opts.ca ? { ca: opts.ca } : {}),
      ...(opts.cert ? { cert: opts.cert, key: opts.key } : {}),
      ...(opts.minVersion ? { minVersion: opts.minVersion } : {}),
      ...(opts.maxVersion ? { maxVersion: opts.maxVersion } : {}),
      ...(opts.session ? { session: opts.session } : {}),
    });
    let done = false;
    const finish = (r: HandshakeResult): void => {
      if (done) return;
      done = true;
      if (!opts.keep || !r.ok) s.destroy();
      resolve(r);
    };
    s.once('secureConnect', () => {
      // TLS 1.3: the server may still refuse the client certificate after the client
      // considers the handshake done; a request round trip settles it.
      finish({ ok: true, cert: s.getPeerCertificate(), authorized: s.authorized, protocol: s.getProtocol(), reused: s.isSessionReused(), socket: s });
    });
    s.once('error', (err) => finish({ ok: false, error: (err as NodeJS.ErrnoException).code ?? err.message }));
    s.once('close', () => finish({ ok: false, error: 'closed' }));
  });
}

/** HTTPS GET over a fresh connection (or a given agent), resolving status/body/peer cert. */
export function get(
  port: number,
  path: string,
  opts: { servername?: string; host?: string; ca?: string; cert?: string; key?: string; agent?: import('node:https').Agent | false; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: string; headers: import('node:http').IncomingHttpHeaders; fingerprint?: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'GET',
        servername: opts.servername,
        headers: { host: opts.host ?? opts.servername ?? 'localhost', ...opts.headers },
        rejectUnauthorized: false,
        ...(opts.ca ? { ca: opts.ca } : {}),
        ...(opts.cert ? { cert: opts.cert, key: opts.key } : {}),
        agent: opts.agent ?? false,
      },
      (res) => {
        let body = '';
        const fp = (res.socket as TLSSocket).getPeerCertificate?.()?.fingerprint256;
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers, ...(fp ? { fingerprint: fp } : {}) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}
