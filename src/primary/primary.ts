// The primary: owns the config, resolves secrets, validates certificates (piscina),
// compiles and broadcasts snapshots, forks and respawns workers, serves the admin API.
import { checkFdLimit } from './fd-limit';
import cluster, { type Worker as ClusterWorker } from 'node:cluster';
import { createHash, randomBytes } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { loadConfigFile, type Loaded } from '../config/load';
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
import { SecretStore } from '../secrets/store';
import { AuditLog } from './audit';
import { isWorkerMessage, type WorkerMessage, type WorkerStats } from '../worker/protocol';
import { adminRoutes } from './admin-routes';
import { PrimaryMetrics } from './metrics';
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
  /** Read + resolve + validate + compile, in ms. */
  compileMs: number;
}

export class Primary {
  current: Current | undefined;
  lastReload: ReloadResult | undefined;
  readonly slots = new Map<number, WorkerSlot>();
  private readonly validator = new CertValidator(1);
  private readonly store: SecretStore;
  private readonly audit: AuditLog;
  private readonly ticketKeys = randomBytes(48);
  /** Last parse of the config file, reused while its text does not change. */
  private loaded: Loaded | undefined;
  private admin: AdminServer | undefined;
  private watchers: FSWatcher[] = [];
  private reloadTimer: NodeJS.Timeout | undefined;
  private reloading: Promise<ReloadResult> | undefined;
  private again: Promise<ReloadResult> | undefined;
  private shuttingDown = false;
  private version = 0;
  private ackWaiters: Array<() => void> = [];
  private statsWaiters = new Map<number, { want: number; got: WorkerStats[]; done: (s: WorkerStats[]) => void }>();
  private statsSeq = 0;
  private changeAt: number | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  readonly metrics = new PrimaryMetrics();
  adminAddress: { host: string; port: number } | undefined;

  constructor(
    readonly configPath: string,
    private readonly log: Logger,
  ) {
    this.audit = new AuditLog(log, undefined);
    // A value changed at its source (Vault, AWS, a file): a new snapshot, no config edit.
    this.store = new SecretStore({
      logger: log,
      baseDir: dirname(resolvePath(configPath)),
      onChange: (c) => void this.reload(`secret:${c.provider}`, `secret-provider:${c.provider}`),
    });
  }

  get config(): GatewayConfig | undefined {
    return this.current?.resolved.config;
  }

  /** Load, validate, fork, wait for every worker to listen; throws on any start problem. */
  async start(): Promise<void> {
    const { compiled, warnings } = await this.build();
    this.logWarnings(warnings);
    const migrate = compiled.snapshot.listeners.some((l) => l.engine === 'uws') ? reusePortMigrationWarning() : undefined;
    if (migrate) this.log.warn({ listeners: compiled.snapshot.listeners.filter((l) => l.engine === 'uws').map((l) => l.name) }, migrate);
    this.install(compiled, 'start', `process:${process.pid}`);
    checkFdLimit(this.log, compiled.snapshot.listeners);
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
    // Expiry: checked at load (validation warnings) and daily while running.
    this.expiryTimer = setInterval(() => this.checkExpiry(), 86_400_000);
    this.expiryTimer.unref();
    this.lastReload = { ok: true, version: this.version, at: new Date().toISOString(), source: 'start', errors: [], warnings: warnings.map(formatIssue) };
    this.log.info({ version: this.version, compile_ms: compiled.compileMs, ssls: compiled.snapshot.ssls.length, workers: n, listeners: this.current!.snapshot.listeners.map((l) => `${l.name}@${l.host}:${l.port}`) }, 'tlsgate started');
  }

  private async build(): Promise<{ compiled: Current; warnings: ConfigIssue[] }> {
    const t0 = performance.now();
    const loaded = await loadConfigFile(this.configPath, this.loaded);
    this.loaded = loaded;
    const engineIssues = engineLoadIssues(loaded.config.listeners.map((l) => ({ name: l.name, engine: l.engine })));
    if (engineIssues.length) throw new ConfigError(engineIssues.map((i) => ({ ...i, code: 'TLSGATE_E_ENGINE_LOAD' as const, severity: 'error' as const })));
    const resolved = await resolveConfig(loaded.config, this.store);
    const c = await compileSnapshot(resolved, this.validator);
    const body = { ...c.snapshot, ticketKeys: this.ticketKeys };
    // "Did anything change?" from the per-object material hashes: no second msgpack
    // encoding of every PEM (≈10 MB at 10k objects) on each reload.
    const contentHash = createHash('sha256')
      .update(
        JSON.stringify({
          listeners: body.listeners,
          sni: body.sni,
          routes: body.routes,
          upstreams: body.upstreams.map((u) => u.hash),
          ssls: body.ssls.map((s) => [s.id, s.type, s.snis, s.hash]),
        }),
      )
      .digest('hex');
    const snapshot: Snapshot = { ...body, version: 0, createdAt: Date.now() };
    const compileMs = Math.round(performance.now() - t0);
    return { compiled: { snapshot, bytes: new Uint8Array(), contentHash, resolved, details: c.details, compileMs }, warnings: [...loaded.issues, ...c.warnings] };
  }

  private install(c: Current, source: string, actor: string): void {
    this.version++;
    c.snapshot.version = this.version;
    c.bytes = encodeSnapshot(c.snapshot);
    const prev = this.current;
    this.current = c;
    this.audit.setPath(c.resolved.config.audit?.path, c.resolved.config.baseDir);
    this.audit.record(prev && { resolved: prev.resolved, details: prev.details, ssls: prev.snapshot.ssls }, { resolved: c.resolved, details: c.details, ssls: c.snapshot.ssls }, source, actor, this.version);
    this.metrics.version.set(this.version);
    this.metrics.setCertificates(c.details);
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
      case 'stats': {
        const w = this.statsWaiters.get(m.id);
        if (!w) return;
        w.got.push(m.stats);
        if (w.got.length >= w.want) w.done(w.got);
        return;
      }
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
  reload(source: string, actor = source): Promise<ReloadResult> {
    this.changeAt ??= Date.now();
    if (this.reloading) {
      // One more pass after the running one, so its result reflects this request too.
      this.again ??= this.reloading.then(() => {
        this.again = undefined;
        return this.reload(source, actor);
      });
      return this.again;
    }
    this.reloading = this.doReload(source, actor).finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private async doReload(source: string, actor: string): Promise<ReloadResult> {
    const at = new Date().toISOString();
    try {
      const { compiled, warnings } = await this.build();
      this.logWarnings(warnings);
      const changeAt = this.changeAt ?? Date.now();
      this.changeAt = undefined;
      if (compiled.contentHash === this.current?.contentHash) {
        this.metrics.reloads.inc({ result: 'unchanged' });
        return (this.lastReload = { ok: true, version: this.version, at, source, errors: [], warnings: warnings.map(formatIssue) });
      }
      this.install(compiled, source, actor);
      for (const s of this.slots.values()) s.worker.send({ type: 'snapshot', version: this.version, bytes: compiled.bytes });
      this.metrics.reloads.inc({ result: 'applied' });
      const version = this.version;
      void this.waitForAcks(version).then((ok) => {
        if (ok) this.metrics.rotation.observe((Date.now() - changeAt) / 1000);
        else this.log.error({ version, code: 'TLSGATE_E_WORKER_ACK_TIMEOUT' }, 'a worker did not ack the new snapshot in time');
      });
      this.log.info({ version: this.version, source, compile_ms: compiled.compileMs, snapshot_size: compiled.bytes.length }, 'new snapshot sent to workers');
      this.rewatch();
      return (this.lastReload = { ok: true, version: this.version, at, source, errors: [], warnings: warnings.map(formatIssue) });
    } catch (err) {
      const issues = err instanceof ConfigError ? err.issues.filter((i) => i.severity === 'error') : [];
      const errors = issues.length ? issues.map(formatIssue) : [`${(err as TlsgateError).code ?? 'ERROR'}: ${(err as Error).message}`];
      this.changeAt = undefined;
      this.metrics.reloads.inc({ result: 'refused' });
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

  /** Ask every worker for its stats (upstream health); answers within timeoutMs. */
  collectStats(timeoutMs = 2_000): Promise<WorkerStats[]> {
    const live = [...this.slots.values()].filter((s) => s.listening && !s.worker.isDead());
    if (live.length === 0) return Promise.resolve([]);
    const id = ++this.statsSeq;
    return new Promise((resolve) => {
      const finish = (got: WorkerStats[]): void => {
        clearTimeout(timer);
        this.statsWaiters.delete(id);
        resolve(got);
      };
      const timer = setTimeout(() => finish(this.statsWaiters.get(id)?.got ?? []), timeoutMs);
      this.statsWaiters.set(id, { want: live.length, got: [], done: finish });
      for (const s of live) s.worker.send({ type: 'stats?', id });
    });
  }

  /** Daily: certificates inside warn_days are warnings, expired ones errors (they keep serving until replaced). */
  checkExpiry(now = Date.now()): void {
    const c = this.current;
    if (!c) return;
    this.metrics.setCertificates(c.details, now);
    for (const d of c.details) {
      for (const cert of d.certs) {
        const days = Math.floor((Date.parse(cert.not_after) - now) / 86_400_000);
        if (days < 0) this.log.error({ ssl: d.id, snis: d.snis, not_after: cert.not_after, code: 'TLSGATE_E_CERT_EXPIRED' }, 'certificate expired');
        else if (days < c.resolved.config.warn_days) this.log.warn({ ssl: d.id, snis: d.snis, days_left: days, code: 'TLSGATE_E_CERT_EXPIRING' }, 'certificate expiring');
      }
    }
  }

  status(): {
    version: number;
    workers: Array<{ pid: number; version: number }>;
    last_reload: ReloadResult | undefined;
    stale_secrets: ReturnType<SecretStore['stale']>;
  } {
    return {
      version: this.version,
      workers: [...this.slots.values()].map((s) => ({ pid: s.pid, version: s.version })),
      last_reload: this.lastReload,
      stale_secrets: this.store.stale(),
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
    this.changeAt ??= Date.now();
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
    clearInterval(this.expiryTimer);
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
    await this.store.close();
    await this.audit.flush();
    this.log.info('tlsgate stopped');
  }
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost' || host.startsWith('127.');
}
