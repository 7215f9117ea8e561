// A real etcd (Debian etcd-server 3.4) for tests: TLS on a free loopback port, client
// certificates required (--client-cert-auth), its own data dir; stop/start keep the data.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCA, issue, type Issued } from './pki';
import { freePort, waitFor } from './gateway';

export const ETCD_BIN = '/usr/bin/etcd';
export const ETCDCTL_BIN = '/usr/bin/etcdctl';

export class Etcd {
  readonly dir = mkdtempSync(join(tmpdir(), 'tlsgate-etcd-'));
  readonly ca: Issued = createCA('tlsgate test etcd CA');
  readonly server: Issued = issue({
    cn: 'etcd',
    dns: ['localhost'],
    ips: ['127.0.0.1'],
    eku: ['serverAuth', 'clientAuth'],
    issuer: this.ca,
  });
  /** The client certificate gateways present (CN = user name when etcd auth is on). */
  readonly client: Issued = issue({ cn: 'tlsgate', eku: ['clientAuth'], issuer: this.ca });
  port = 0;
  private peerPort = 0;
  private proc: ChildProcess | undefined;
  stderr = '';

  static async start(): Promise<Etcd> {
    const e = new Etcd();
    e.port = await freePort();
    e.peerPort = await freePort();
    for (const [n, v] of [
      ['ca.pem', e.ca.cert],
      ['server.pem', e.server.cert],
      ['server.key', e.server.key],
      ['client.pem', e.client.cert],
      ['client.key', e.client.key],
    ] as const)
      writeFileSync(join(e.dir, n), v);
    await e.run();
    return e;
  }

  get endpoint(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  /** Run etcd and wait until it answers a TLS client. */
  async run(): Promise<void> {
    const d = this.dir;
    const peer = `http://127.0.0.1:${this.peerPort}`;
    this.proc = spawn(
      ETCD_BIN,
      [
        '--name',
        't',
        '--data-dir',
        join(d, 'data'),
        '--listen-client-urls',
        this.endpoint,
        '--advertise-client-urls',
        this.endpoint,
        '--listen-peer-urls',
        peer,
        '--initial-advertise-peer-urls',
        peer,
        '--initial-cluster',
        `t=${peer}`,
        '--cert-file',
        join(d, 'server.pem'),
        '--key-file',
        join(d, 'server.key'),
        '--trusted-ca-file',
        join(d, 'ca.pem'),
        '--client-cert-auth',
        '--logger',
        'zap',
        '--log-level',
        'error',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    this.proc.stderr!.on('data', (b: Buffer) => (this.stderr = (this.stderr + b).slice(-20_000)));
    const proc = this.proc;
    await waitFor(
      async () => {
        if (proc.exitCode !== null) throw new Error(`etcd exited ${proc.exitCode}: ${this.stderr}`);
        // `endpoint health` reports on stderr in 3.4: a read that succeeds is the check.
        return this.ctl('get', '/health-probe').then(
          () => true,
          () => false,
        );
      },
      'etcd healthy',
      20_000,
      100,
    );
  }

  /** SIGTERM and wait for the exit; the data dir stays. */
  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000).unref())]);
    if (p.exitCode === null) p.kill('SIGKILL');
  }

  /** etcdctl with the test client certificate; resolves stdout, rejects with stderr. */
  ctl(...args: string[]): Promise<string> {
    const d = this.dir;
    const tls = ['--endpoints', this.endpoint, '--cacert', join(d, 'ca.pem'), '--cert', join(d, 'client.pem')];
    return new Promise((resolve, reject) => {
      execFile(
        ETCDCTL_BIN,
        [...tls, '--key', join(d, 'client.key'), '--command-timeout', '5s', ...args],
        { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 15_000 },
        (err, stdout, stderr) =>
          err ? reject(new Error(`etcdctl ${args.join(' ')}: ${stderr || err.message}`)) : resolve(stdout),
      );
    });
  }

  put(key: string, value: unknown): Promise<string> {
    return this.ctl('put', key, typeof value === 'string' ? value : JSON.stringify(value));
  }

  async get(key: string): Promise<string | undefined> {
    const out = await this.ctl('get', key, '--print-value-only');
    return out === '' ? undefined : out.replace(/\n$/, '');
  }

  /** Current revision of the store. */
  async revision(): Promise<number> {
    const out = await this.ctl('endpoint', 'status', '-w', 'json');
    return Number((JSON.parse(out) as Array<{ Status: { header: { revision: number } } }>)[0]!.Status.header.revision);
  }

  async close(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A TCP forwarder in front of etcd: `cut()` drops every connection and refuses new ones until
 * `restore()`, so one gateway loses etcd while the test writes and compacts through etcdctl.
 */
export class Cut {
  private readonly server: Server;
  private readonly socks = new Set<Socket>();
  private open = true;
  port = 0;

  private constructor(target: number) {
    this.server = createServer((c) => {
      if (!this.open) {
        c.destroy();
        return;
      }
      const up = connect(target, '127.0.0.1');
      // Either side gone (etcd down: the connect fails): the other goes too, as with no forwarder.
      for (const [s, peer] of [
        [c, up],
        [up, c],
      ] as const) {
        this.socks.add(s);
        s.on('close', () => (this.socks.delete(s), peer.destroy()));
        s.on('error', () => peer.destroy());
      }
      c.pipe(up).pipe(c);
    });
  }

  static async start(target: number): Promise<Cut> {
    const c = new Cut(target);
    await new Promise<void>((r) => c.server.listen(0, '127.0.0.1', r));
    c.port = (c.server.address() as { port: number }).port;
    return c;
  }

  get endpoint(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  cut(): void {
    this.open = false;
    for (const s of this.socks) s.destroy();
  }

  restore(): void {
    this.open = true;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** The config_store block for a gateway in `dir`, with the etcd client files written there. */
export function storeBlock(
  e: Etcd,
  dir: string,
  o: { endpoint?: string; ca?: string; cert?: string | null; key?: string | null; startTimeout?: string } = {},
): string {
  writeFileSync(join(dir, 'etcd-ca.pem'), o.ca ?? e.ca.cert);
  const cert = o.cert === undefined ? e.client.cert : o.cert;
  const key = o.key === undefined ? e.client.key : o.key;
  if (cert) writeFileSync(join(dir, 'etcd-client.pem'), cert);
  if (key) writeFileSync(join(dir, 'etcd-client.key'), key);
  return [
    'config_store:',
    '  etcd:',
    `    endpoints: [${JSON.stringify(o.endpoint ?? e.endpoint)}]`,
    ...(o.startTimeout ? [`    start_timeout: ${o.startTimeout}`] : []),
    '    tls:',
    '      ca: $file://etcd-ca.pem',
    ...(cert ? ['      cert: $file://etcd-client.pem'] : []),
    ...(key ? ['      key: $file://etcd-client.key'] : []),
  ].join('\n');
}
