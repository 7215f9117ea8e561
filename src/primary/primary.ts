// The primary: owns the config, resolves secrets, validates certificates (piscina),
// compiles and broadcasts snapshots, forks and respawns workers, serves the admin API.
import cluster, { type Worker as ClusterWorker } from 'node:cluster';
import { createHash, randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { loadConfigFile } from '../config/load';
import { resolveConfig, type ResolvedConfig } from '../config/resolve';
import type { GatewayConfig } from '../config/types';
import { defaults } from '../config/defaults';
import { CertValidator } from '../certs/pool';
import { compileSnapshot, type SslDetails } from '../snapshot/compile';
import { encodeSnapshot } from '../snapshot/codec';
import type { Snapshot } from '../snapshot/types';
import { AdminServer } from '../admin/server';
import { ConfigError, TlsgateError, formatIssue, type ConfigIssue } from '../errors';
import type { Logger } from '../log';
import type { SecretProvider } from '../secrets/resolve';
import { isWorkerMessage, type WorkerMessage } from '../worker/protocol';
import { adminRoutes } from './admin-routes';
import { engineLoadIssues, reusePortMigrationWarning } from '../engines/uws-load';

/** The worker's fd for log lines: index of our stdout in the cluster stdio array. */
const WORKER_LOG_FD = 4;

interface WorkerSlot {
  worker: ClusterWorker;
  pid: number;
  version: number;
  listening: boolean;
}

export interface ReloadResult {
  ok: boolean;
  version: number;
  at: string;
  source: string;
  errors: string[];
  warnings: string[];
}

export interface Current {
  snapshot: Snapshot;
  bytes: Uint8Array;
  contentHash: string;
  resolved: ResolvedConfig;
  details: SslDetails[];
}

export class Primary {
  current: Current | undefined;
  lastReload: ReloadResult | undefined;
  readonly slots = new Map<number, WorkerSlot>();
  private readonly validator = new CertValidator(1);
  private readonly providers = new Map<string, SecretProvider>();
  private readonly ticketKeys = randomBytes(48);
  private admin: AdminServer | undefined;
  private watchers: FSWatcher[] = [];
  private reloadTimer: NodeJS.Timeout | undefined;
  private reloading: Promise<ReloadResult> | undefined;
  private reloadAgain = false;
  private shuttingDown = false;
  private version = 0;
  private ackWaiters: Array<() => void> = [];
  adminAddress: { host: string; port: number } | undefined;

  constructor(
    readonly configPath: string,
    private readonly log: Logger,
  ) {}

  get config(): GatewayConfig | undefined {
    return this.current?.resolved.config;
  }

  /** Load, validate, fork, wait for every worker to listen; throws on any start problem. */
  async start(): Promise<void> {
    const { compiled, warnings } = await this.build();
    this.logWarnings(warnings);
    const migrate = compiled.snapshot.listeners.some((l) => l.engine === 'uws') ? reusePortMigrationWarning() : undefined;
    if (migrate) this.log.warn({ listeners: compiled.snapshot.listeners.filter((l) => l.engine === 'uws').map((l) => l.name) }, migrate);
    this.install(compiled);
    // Workers share the listening socket and the kernel spreads connections:
    // no extra hop through the primary per connection. Must be set before
    // setupPrimary(), which freezes the policy (set after it, Node kept round-robin:
    // measured, the primary accepted every connection and handed it over IPC).
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    // Worker fd 1 and 2 → our stderr; worker fd 4 → our stdout, where workers log (TLSGATE_LOG_FD).
    // Native code in a worker (uWS prints debug lines from domain()) writes to fd 1 and so
    // never lands inside the JSON log stream.
    cluster.setupPrimary({ serialization: 'advanced', stdio: [0, 2, 2, 'ipc', 1] });
    cluster.on('exit', (w, code, signal) => this.onExit(w, code, signal));
    const n = compiled.resolved.config.workers;
    const started = Array.from({ length: n }, () => this.fork());
    await Promise.all(started);
    await this.startAdmin();
    this.watch();
    process.on('SIGHUP', () => void this.reload('SIGHUP'));
    this.lastReload = { ok: true, version: this.version, at: new Date().toISOString(), source: 'start', errors: [], warnings: warnings.map(formatIssue) };
    this.log.info({ version: this.version, workers: n, listeners: this.current!.snapshot.listeners.map((l) => `${l.name}@${l.host}:${l.port}`) }, 'tlsgate started');
  }

  private async build(): Promise<{ compiled: Current; warnings: ConfigIssue[] }> {
    const loaded = await loadConfigFile(this.configPath);
    const engineIssues = engineLoadIssues(loaded.config.listeners.map((l) => ({ name: l.name, engine: l.engine })));
    if (engineIssues.length) throw new ConfigError(engineIssues.map((i) => ({ ...i, code: 'TLSGATE_E_ENGINE_LOAD' as const, severity: 'error' as const })));
    const resolved = await resolveConfig(loaded.config, { baseDir: loaded.config.baseDir, env: process.env, providers: this.providers });
    const c = await compileSnapshot(resolved, this.validator);
    const body = { ...c.snapshot, ticketKeys: this.ticketKeys };
    const contentHash = createHash('sha256').update(encodeSnapshot({ ...body, version: 0, createdAt: 0 })).digest('hex');
    const snapshot: Snapshot = { ...body, version: 0, createdAt: Date.now() };
    return { compiled: { snapshot, bytes: new Uint8Array(), contentHash, resolved, details: c.details }, warnings: [...loaded.issues, ...c.warnings] };
  }

  private install(c: Current): void {
    this.version++;
    c.snapshot.version = this.version;
    c.bytes = encodeSnapshot(c.snapshot);
    this.current = c;
  }

  private fork(): Promise<void> {
    const worker = cluster.fork({ TLSGATE_LOG_LEVEL: this.config?.log.level ?? 'info', TLSGATE_LOG_FD: String(WORKER_LOG_FD) });
    const slot: WorkerSlot = { worker, pid: worker.process.pid ?? 0, version: 0, listening: false };
    this.slots.set(worker.id, slot);
    return new Promise((resolve, reject) => {
      worker.on('message', (m: unknown) => {
        if (!isWorkerMessage(m)) return;
        this.onWorkerMessage(slot, m, resolve, reject);
      });
    });
  }

  private onWorkerMessage(slot: WorkerSlot, m: WorkerMessage, resolve: () => void, reject: (e: Error) => void): void {
    switch (m.type) {
      case 'ready':
        // A new or respawned worker gets the current snapshot before it accepts traffic.
        if (this.current) slot.worker.send({ type: 'snapshot', version: this.current.snapshot.version, bytes: this.current.bytes });
        return;
      case 'ack':
        slot.version = m.version;
        if (!slot.listening) {
          slot.listening = true;
          resolve();
        }
        this.notifyAcks();
        return;
      case 'listen-error':
        this.log.error({ code: m.code, pid: slot.pid }, m.message);
        reject(new TlsgateError('TLSGATE_E_LISTEN', m.message));
        return;
      case 'snapshot-error':
        this.log.error({ code: m.code, version: m.version, pid: slot.pid }, m.message);
        return;
      case 'log':
        this.log[m.level]({ ...m.fields, pid: slot.pid }, m.msg);
        return;
      case 'stats':
      case 'listening':
        return;
    }
  }

  private onExit(w: ClusterWorker, code: number | null, signal: string | null): void {
    const slot = this.slots.get(w.id);
    this.slots.delete(w.id);
    if (this.shuttingDown || !slot) return;
    this.log.warn({ pid: slot.pid, code, signal }, 'worker died, respawning');
    // A worker that never listened failed at start: do not loop on it.
    if (!slot.listening) return;
    this.fork().catch((err: Error) => this.log.error({ err }, 'respawned worker failed to start'));
  }

  /** Re-read config and secrets; a refused config keeps the running snapshot. */
  reload(source: string): Promise<ReloadResult> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = this.doReload(source).finally(() => {
      this.reloading = undefined;
      if (this.reloadAgain) {
        this.reloadAgain = false;
        void this.reload(source);
      }
    });
    return this.reloading;
  }

  private async doReload(source: string): Promise<ReloadResult> {
    const at = new Date().toISOString();
    try {
      const { compiled, warnings } = await this.build();
      this.logWarnings(warnings);
      if (compiled.contentHash === this.current?.contentHash) {
        return (this.lastReload = { ok: true, version: this.version, at, source, errors: [], warnings: warnings.map(formatIssue) });
      }
      this.install(compiled);
      for (const s of this.slots.values()) s.worker.send({ type: 'snapshot', version: this.version, bytes: compiled.bytes });
      this.log.info({ version: this.version, source }, 'new snapshot sent to workers');
      this.rewatch();
      return (this.lastReload = { ok: true, version: this.version, at, source, errors: [], warnings: warnings.map(formatIssue) });
    } catch (err) {
      const issues = err instanceof ConfigError ? err.issues.filter((i) => i.severity === 'error') : [];
      const errors = issues.length ? issues.map(formatIssue) : [`${(err as TlsgateError).code ?? 'ERROR'}: ${(err as Error).message}`];
      this.log.error({ source, errors, version: this.version }, 'config refused; the running snapshot keeps serving');
      return (this.lastReload = { ok: false, version: this.version, at, source, errors, warnings: [] });
    }
  }

  /** Resolves when every live worker serves `version` (or later), or after timeoutMs. */
  waitForAcks(version: number, timeoutMs = defaults.workerAckTimeout): Promise<boolean> {
    const done = (): boolean => [...this.slots.values()].every((s) => s.version >= version);
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.ackWaiters = this.ackWaiters.filter((f) => f !== check);
        resolve(false);
      }, timeoutMs);
      const check = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        this.ackWaiters = this.ackWaiters.filter((f) => f !== check);
        resolve(true);
      };
      this.ackWaiters.push(check);
    });
  }

  private notifyAcks(): void {
    for (const f of [...this.ackWaiters]) f();
  }

  status(): { version: number; workers: Array<{ pid: number; version: number }>; last_reload: ReloadResult | undefined } {
    return {
      version: this.version,
      workers: [...this.slots.values()].map((s) => ({ pid: s.pid, version: s.version })),
      last_reload: this.lastReload,
    };
  }

  private async startAdmin(): Promise<void> {
    const c = this.config!;
    if (!c.admin) return;
    const values = this.current!.resolved.values;
    const keys = c.admin.api_keys.map((_, i) => values.get(`admin.api_keys[${i}]`)!);
    const tls = c.admin.tls ? { cert: values.get('admin.tls.cert')!, key: values.get('admin.tls.key')! } : undefined;
    if (!tls && !isLoopback(c.admin.listen.host)) {
      this.log.warn({ listen: `${c.admin.listen.host}:${c.admin.listen.port}` }, 'admin API bound beyond loopback without TLS: API keys cross the network in clear');
    }
    this.admin = new AdminServer({ host: c.admin.listen.host, port: c.admin.listen.port, apiKeys: keys, ...(tls ? { tls } : {}), log: this.log, ...adminRoutes(this) });
    this.adminAddress = await this.admin.listen();
    this.log.info({ admin: `${tls ? 'https' : 'http'}://${this.adminAddress.host}:${this.adminAddress.port}` }, 'admin API listening');
  }

  /** Watch the config file and every `$file://` it references (directories: editors replace files). */
  private watch(): void {
    const files = new Set<string>([resolvePath(this.configPath)]);
    const cur = this.current!;
    for (const ref of cur.resolved.refs.values()) {
      if (ref.kind === 'file') files.add(isAbsolute(ref.path) ? ref.path : resolvePath(cur.resolved.config.baseDir, ref.path));
    }
    const byDir = new Map<string, Set<string>>();
    for (const f of files) {
      const d = dirname(f);
      if (!byDir.has(d)) byDir.set(d, new Set());
      byDir.get(d)!.add(basename(f));
    }
    for (const [dir, names] of byDir) {
      try {
        const w = watch(dir, { persistent: false }, (_event, name) => {
          if (name === null || names.has(name.toString())) this.scheduleReload();
        });
        w.on('error', (err) => this.log.warn({ err, dir }, 'config watch failed'));
        this.watchers.push(w);
      } catch (err) {
        this.log.warn({ err, dir }, 'cannot watch for config changes; SIGHUP and POST /v1/reload still work');
      }
    }
  }

  private rewatch(): void {
    for (const w of this.watchers) w.close();
    this.watchers = [];
    this.watch();
  }

  private scheduleReload(): void {
    if (this.shuttingDown) return;
    // Editors write in several steps; one reload after the burst.
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => void this.reload('file'), defaults.reloadDebounce);
  }

  private logWarnings(issues: ConfigIssue[]): void {
    for (const i of issues) if (i.severity === 'warning') this.log.warn({ path: i.path, code: i.code }, i.message);
  }

  /** SIGTERM: workers stop accepting and finish in-flight requests (capped), then exit. */
  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    clearTimeout(this.reloadTimer);
    for (const w of this.watchers) w.close();
    const timeoutMs = this.config?.drain_timeout ?? defaults.drainTimeout;
    this.log.info({ timeoutMs }, 'draining workers');
    const exits = [...this.slots.values()].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.worker.isDead()) return resolve();
          s.worker.once('exit', () => resolve());
          s.worker.send({ type: 'drain', timeoutMs });
        }),
    );
    const cap = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs + 2_000).unref());
    await Promise.race([Promise.all(exits), cap]);
    for (const s of this.slots.values()) if (!s.worker.isDead()) s.worker.process.kill('SIGKILL');
    await this.admin?.close();
    await this.validator.close();
    for (const p of this.providers.values()) await p.close();
    this.log.info('tlsgate stopped');
  }
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost' || host.startsWith('127.');
}
