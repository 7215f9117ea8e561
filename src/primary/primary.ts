// The primary: owns the config, resolves secrets, validates certificates (piscina),
// compiles and broadcasts snapshots, forks and respawns workers, serves the admin API.
import cluster, { type Worker as ClusterWorker } from 'node:cluster';
import { createHash, randomBytes } from 'node:crypto';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { createSecureContext } from 'node:tls';
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
import { AuditLog, type AuditState } from './audit';
import { checkFdLimit } from './fd-limit';
import { isWorkerMessage, type PrimaryMessage, type WorkerMessage, type WorkerStats } from '../worker/protocol';
import { adminRoutes } from './admin-routes';
import { FileWatch } from './file-watch';
import { secretFields } from '../config/secret-fields';
import { mtlsLoss, mtlsLossIssues } from '../config/mtls-loss';
import { parseValue } from '../secrets/reference';
import { readLocalFile } from '../secrets/resolve';
import { PrimaryMetrics } from './metrics';
import { engineLoadIssues, reusePortMigrationWarning } from '../engines/uws-load';
import { openConfigStore } from '../store/open';
import type { EtcdStore, StoreStatus } from '../store/etcd-store';

/** The worker's fd for log lines: index of our stdout in the cluster stdio array. */
const WORKER_LOG_FD = 4;

/** A snapshot is proven once it served this long without a worker crashing. */
const STABLE_MS = 10_000; // 10 s
/** Respawn back-off for workers that keep dying: 100 ms doubling to 30 s. */
const RESPAWN_FIRST_MS = 100;
const RESPAWN_MAX_MS = 30_000;

interface WorkerSlot {
  worker: ClusterWorker;
  pid: number;
  version: number;
  listening: boolean;
  /** Sent 'ready': snapshots sent before it could arrive ahead of the current one. */
  ready: boolean;
  bornAt: number;
}

/** What the workers reported for a snapshot version in flight. */
interface Outcome {
  version: number;
  errors: string[];
  done: () => void;
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
  private readonly files: FileWatch;
  /** Sent to workers, not yet acked by all of them. */
  private pending: Current | undefined;
  private outcome: Outcome | undefined;
  /** The snapshot before `current`, kept until `current` has served STABLE_MS without a crash. */
  private previous: { c: Current; until: number } | undefined;
  private respawnStreak = 0;
  /** Content hash of a snapshot that crashed workers → its version: never sent again. */
  private readonly crashedBy = new Map<string, number>();
  private respawnTimers = new Set<NodeJS.Timeout>();
  private started = false;
  private initial: Promise<unknown> | undefined;
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
  /** config_store.etcd: where ssls, upstreams, routes and secret_providers come from (src/store/). */
  configStore: EtcdStore | undefined;

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
    // A refresh round compares a source with the store's last read, which may be newer
    // than what is served (a reload that read it was refused or rolled back): compare with
    // the running snapshot instead, or such a value would never be served.
    this.store.on('refreshed', (r) => {
      if (r.failed === r.references || this.reloading || !this.servedDiffers()) return;
      void this.reload(`secret:${r.provider}`, `secret-provider:${r.provider}`);
    });
    this.files = new FileWatch({
      onStable: () => void this.reload('file'),
      onError: (err, dir) => {
        this.log.warn({ err, dir }, 'config watch failed; SIGHUP and POST /v1/reload still work');
      },
    });
  }

  get config(): GatewayConfig | undefined {
    return this.current?.resolved.config;
  }

  /** Load, validate, fork, wait for every worker to listen; throws on any start problem. */
  async start(): Promise<void> {
    let built: { compiled: Current; warnings: ConfigIssue[] };
    // ---- config store (issue 14): its objects are part of the first build; each change it
    // validated rebuilds. The lead wires onApplied to the delta entry point.
    this.configStore = await openConfigStore({
      configPath: this.configPath,
      log: this.log,
      secrets: this.store,
      validator: this.validator,
      onApplied: (rev) => void this.reload('config-store', `etcd:${rev}`),
    });
    // ---- end config store
    const initial = this.build();
    // A reload asked for while the first build runs (a secret refresh) waits for it.
    this.initial = initial.catch(() => undefined);
    try {
      built = await initial;
    } finally {
      // Armed right after the first read (and re-checked against what was read): a file
      // replaced while 10k objects compile is noticed, not lost until a restart.
      this.armWatch();
    }
    const { compiled, warnings } = built;
    this.logWarnings(warnings);
    const migrate = compiled.snapshot.listeners.some((l) => l.engine === 'uws')
      ? reusePortMigrationWarning()
      : undefined;
    if (migrate)
      this.log.warn(
        { listeners: compiled.snapshot.listeners.filter((l) => l.engine === 'uws').map((l) => l.name) },
        migrate,
      );
    this.stamp(compiled);
    this.commit(compiled, 'start', `process:${process.pid}`);
    checkFdLimit(this.log, compiled.snapshot.listeners);
    // Before anything slow: SIGHUP's default action would end the process.
    process.on('SIGHUP', () => void this.reload('SIGHUP'));
    // The admin API answers before any worker serves: a change made while workers start
    // can be reloaded and observed.
    await this.startAdmin();
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
    this.started = true;
    // Expiry: checked at load (validation warnings) and daily while running.
    this.expiryTimer = setInterval(() => this.checkExpiry(), 86_400_000);
    this.expiryTimer.unref();
    const at = new Date().toISOString();
    const ok = {
      ok: true,
      version: this.version,
      at,
      source: 'start',
      errors: [],
      warnings: warnings.map(formatIssue),
    };
    this.lastReload ??= ok;
    this.log.info(
      {
        version: this.version,
        compile_ms: compiled.compileMs,
        ssls: compiled.snapshot.ssls.length,
        workers: n,
        listeners: this.current!.snapshot.listeners.map((l) => `${l.name}@${l.host}:${l.port}`),
      },
      'tlsgate started',
    );
  }

  private async build(): Promise<{ compiled: Current; warnings: ConfigIssue[] }> {
    const t0 = performance.now();
    const loaded = await loadConfigFile(this.configPath, this.loaded, this.configStore?.overlay());
    this.loaded = loaded;
    const engineIssues = engineLoadIssues(loaded.config.listeners.map((l) => ({ name: l.name, engine: l.engine })));
    if (engineIssues.length)
      throw new ConfigError(
        engineIssues.map((i) => ({ ...i, code: 'TLSGATE_E_ENGINE_LOAD' as const, severity: 'error' as const })),
      );
    const resolved = await resolveConfig(loaded.config, this.store);
    const c = await compileSnapshot(resolved, this.validator);
    const body = { ...c.snapshot, ticketKeys: this.ticketKeys };
    // "Did anything change?" from the per-object material hashes: no second msgpack
    // encoding of every PEM (≈10 MB at 10k objects) on each reload.
    // Settings outside the snapshot (admin keys, providers, workers, log…) count too: an
    // edit of one of them is applied, refused or audited, never reported "unchanged".
    const { ssls: _ssls, ...settings } = resolved.config;
    const adminValues = [...resolved.values]
      .filter(([k]) => k.startsWith('admin.'))
      .map(([k, v]) => [k, createHash('sha256').update(v).digest('hex')]);
    const contentHash = createHash('sha256')
      .update(
        JSON.stringify({
          listeners: body.listeners,
          sni: body.sni,
          routes: body.routes,
          upstreams: body.upstreams.map((u) => u.hash),
          ssls: body.ssls.map((s) => [s.id, s.type, s.snis, s.hash]),
          settings,
          adminValues,
        }),
      )
      .digest('hex');
    const snapshot: Snapshot = { ...body, version: 0, createdAt: Date.now() };
    const compileMs = Math.round(performance.now() - t0);
    return {
      compiled: { snapshot, bytes: new Uint8Array(), contentHash, resolved, details: c.details, compileMs },
      warnings: [...loaded.issues, ...c.warnings],
    };
  }

  /** A new version number and its bytes; workers get it, `current` stays until they all ack. */
  private stamp(c: Current): void {
    this.version++;
    c.snapshot.version = this.version;
    c.bytes = encodeSnapshot(c.snapshot);
    this.metrics.version.set(this.version);
  }

  /** Every worker serves `c`: it becomes the snapshot respawns get, the admin API shows and the audit records. */
  private commit(c: Current, source: string, actor: string): void {
    const prev = this.current;
    this.current = c;
    this.previous = prev && { c: prev, until: Date.now() + STABLE_MS };
    this.audit.setPath(c.resolved.config.audit?.path, c.resolved.config.baseDir);
    this.audit.record(prev && auditState(prev), auditState(c), source, actor, c.snapshot.version);
    this.metrics.setCertificates(c.details);
    if (this.admin && c.resolved.config.admin) {
      const { keys, tls } = adminSecrets(c);
      this.admin.setApiKeys(keys);
      if (tls) this.admin.setTls(tls);
    }
  }

  /** Back to a known good snapshot under a new version number (versions only grow). */
  private rollback(to: Current): void {
    const c: Current = { ...to, snapshot: { ...to.snapshot } };
    this.stamp(c);
    this.current = c;
    this.previous = undefined;
    for (const s of this.slots.values()) if (s.ready) this.sendSnapshot(s, c);
  }

  private sendSnapshot(slot: WorkerSlot, c: Current): void {
    send(slot.worker, { type: 'snapshot', version: c.snapshot.version, bytes: c.bytes });
  }

  /** Resolves at the worker's first ack; rejects if it cannot apply its first snapshot or exits before. */
  private fork(): Promise<void> {
    const worker = cluster.fork({
      TLSGATE_LOG_LEVEL: this.config?.log.level ?? 'info',
      TLSGATE_LOG_FD: String(WORKER_LOG_FD),
    });
    const pid = worker.process.pid ?? 0;
    const slot: WorkerSlot = { worker, pid, version: 0, listening: false, ready: false, bornAt: Date.now() };
    this.slots.set(worker.id, slot);
    return new Promise((resolve, reject) => {
      worker.on('message', (m: unknown) => {
        if (!isWorkerMessage(m)) return;
        this.onWorkerMessage(slot, m, resolve, reject);
      });
      worker.once('exit', (code, signal) => {
        if (slot.listening) return;
        const why = `worker ${slot.pid} exited (${signal ?? code}) before serving`;
        reject(new TlsgateError('TLSGATE_E_WORKER_EXIT', why));
      });
    });
  }

  private onWorkerMessage(slot: WorkerSlot, m: WorkerMessage, resolve: () => void, reject: (e: Error) => void): void {
    switch (m.type) {
      case 'ready':
        // A new or respawned worker gets the last good snapshot before it accepts
        // traffic, then the one in flight (which it must ack like the others).
        slot.ready = true;
        if (this.current) this.sendSnapshot(slot, this.current);
        if (this.pending) this.sendSnapshot(slot, this.pending);
        return;
      case 'ack':
        slot.version = Math.max(slot.version, m.version);
        if (!slot.listening) {
          slot.listening = true;
          resolve();
        }
        this.notifyAcks();
        return;
      case 'snapshot-error':
        this.log.error({ code: m.code, version: m.version, pid: slot.pid }, m.message);
        if (this.outcome?.version === m.version) {
          this.outcome.errors.push(`${m.code}: worker ${slot.pid}: ${m.message}`);
          this.outcome.done();
        }
        if (!slot.listening && m.version === this.current?.snapshot.version) {
          const code = m.code === 'TLSGATE_E_LISTEN' ? 'TLSGATE_E_LISTEN' : 'TLSGATE_E_SNAPSHOT_APPLY';
          reject(new TlsgateError(code, m.message));
        }
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

  /**
   * Every dead worker is respawned, on the last good snapshot, with a back-off while
   * workers keep dying young. A crash during a reload fails that reload (it rolls back);
   * a crash (not SIGKILL/SIGTERM, which come from outside) within STABLE_MS of a commit
   * blames the new snapshot and restores the previous one.
   */
  private onExit(w: ClusterWorker, code: number | null, signal: string | null): void {
    const slot = this.slots.get(w.id);
    this.slots.delete(w.id);
    if (this.shuttingDown || !slot) return;
    const why = signal ?? `code ${code}`;
    this.log.warn({ pid: slot.pid, code, signal }, 'worker died, respawning');
    if (this.outcome) {
      const v = this.outcome.version;
      if (this.pending && crashed(code, signal)) this.crashedBy.set(this.pending.contentHash, v);
      this.outcome.errors.push(`TLSGATE_E_WORKER_EXIT: worker ${slot.pid} exited (${why}) while applying version ${v}`);
      this.outcome.done();
    } else if (this.previous && Date.now() < this.previous.until && crashed(code, signal)) {
      const badState = this.current!;
      const bad = badState.snapshot.version;
      this.crashedBy.set(badState.contentHash, bad);
      const to = this.previous.c;
      this.rollback(to);
      const error =
        `TLSGATE_E_WORKER_EXIT: worker ${slot.pid} crashed (${why}) within ${STABLE_MS / 1000} s of version ${bad}; ` +
        `version ${this.version} restores the previous snapshot`;
      this.log.error({ version: this.version, bad_version: bad, code: 'TLSGATE_E_WORKER_EXIT' }, error);
      this.audit.record(auditState(badState), auditState(to), 'rollback', 'primary', this.version);
      const at = new Date().toISOString();
      this.lastReload = { ok: false, version: this.version, at, source: 'worker-exit', errors: [error], warnings: [] };
    }
    if (!this.started) return; // start() fails instead: the fork() promise rejected
    if (Date.now() - slot.bornAt >= STABLE_MS) this.respawnStreak = 0;
    const n = this.respawnStreak;
    const delay = n === 0 ? 0 : Math.min(RESPAWN_MAX_MS, RESPAWN_FIRST_MS * 2 ** (n - 1));
    this.respawnStreak++;
    const t = setTimeout(() => {
      this.respawnTimers.delete(t);
      if (this.shuttingDown) return;
      this.fork().catch((err: Error) => this.log.error({ err }, 'respawned worker failed to start'));
    }, delay);
    this.respawnTimers.add(t);
    if (delay > 0) this.log.warn({ delay_ms: delay, streak: n }, 'workers keep dying: respawn backs off');
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
    let compiled: Current;
    let warnings: ConfigIssue[];
    await this.initial;
    try {
      try {
        ({ compiled, warnings } = await this.build());
      } finally {
        this.armWatch();
      }
      this.logWarnings(warnings);
      const cur = this.current;
      const restart = cur ? [...needsRestart(cur, compiled), ...adminTlsIssues(cur, compiled)] : [];
      if (restart.length) throw new ConfigError(restart);
    } catch (err) {
      const issues = err instanceof ConfigError ? err.issues.filter((i) => i.severity === 'error') : [];
      const errors = issues.length
        ? issues.map(formatIssue)
        : [`${(err as TlsgateError).code ?? 'ERROR'}: ${(err as Error).message}`];
      return this.refused(source, at, errors);
    }
    const changeAt = this.changeAt ?? Date.now();
    this.changeAt = undefined;
    if (compiled.contentHash === this.current?.contentHash) {
      this.metrics.reloads.inc({ result: 'unchanged' });
      const warned = warnings.map(formatIssue);
      return (this.lastReload = { ok: true, version: this.version, at, source, errors: [], warnings: warned });
    }
    const crashedAt = this.crashedBy.get(compiled.contentHash);
    if (crashedAt !== undefined) {
      // The same content again (the watcher's event for the very write that was rolled back,
      // a retry): refused rather than crashing the workers once more. A restart forgets it.
      return this.refused(source, at, [
        `TLSGATE_E_WORKER_EXIT: this config crashed workers at version ${crashedAt}; change it to try again`,
      ]);
    }
    // Sent, then committed only when every worker serves it: a worker that cannot apply
    // it (a port held by another process…) or dies on it fails the reload, and the
    // workers that did apply it go back to the running snapshot.
    this.stamp(compiled);
    const version = this.version;
    const outcome = this.expectOutcome(version);
    this.pending = compiled;
    for (const s of this.slots.values()) if (s.ready) this.sendSnapshot(s, compiled);
    const sent = { version, source, compile_ms: compiled.compileMs, snapshot_size: compiled.bytes.length };
    this.log.info(sent, 'new snapshot sent to workers');
    const errors = await outcome;
    this.pending = undefined;
    if (errors.length) {
      const good = this.current!;
      this.rollback(good);
      const why = { source, errors, version: this.version, refused_version: version };
      this.log.error(why, 'workers could not apply the new snapshot; the previous one keeps serving');
      return this.refused(source, at, errors);
    }
    // Names this change leaves without client certificate verification: never silent.
    const prevConfig = this.current!.resolved.config;
    const lost = mtlsLoss(prevConfig, compiled.resolved.config);
    const lossIssues = lost.length ? mtlsLossIssues(prevConfig, compiled.resolved.config) : [];
    this.logWarnings(lossIssues);
    this.commit(compiled, source, actor);
    this.audit.recordMtlsLoss(lost, source, actor, version);
    this.metrics.reloads.inc({ result: 'applied' });
    this.metrics.rotation.observe((Date.now() - changeAt) / 1000);
    const warned = [...warnings, ...lossIssues].map(formatIssue);
    return (this.lastReload = { ok: true, version, at, source, errors: [], warnings: warned });
  }

  private refused(source: string, at: string, errors: string[]): ReloadResult {
    this.changeAt = undefined;
    this.metrics.reloads.inc({ result: 'refused' });
    this.log.error({ source, errors, version: this.version }, 'config refused; the running snapshot keeps serving');
    return (this.lastReload = { ok: false, version: this.version, at, source, errors, warnings: [] });
  }

  /** Errors of `version`: none once every live worker acked it; the first worker error or exit otherwise. */
  private expectOutcome(version: number, timeoutMs = defaults.workerAckTimeout): Promise<string[]> {
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(timer);
        this.ackWaiters = this.ackWaiters.filter((f) => f !== check);
        this.outcome = undefined;
        resolve(o.errors);
      };
      const o: Outcome = { version, errors: [], done: finish };
      const check = (): void => {
        const live = [...this.slots.values()].filter((s) => !s.worker.isDead());
        if (live.length > 0 && live.every((s) => s.version >= version)) finish();
      };
      const timer = setTimeout(() => {
        const late = [...this.slots.values()].filter((s) => s.version < version).map((s) => s.pid);
        const what = late.length ? `workers ${late.join(', ')} did not ack` : 'no worker was running to ack';
        o.errors.push(`TLSGATE_E_WORKER_ACK_TIMEOUT: ${what} version ${version} within ${timeoutMs} ms`);
        finish();
      }, timeoutMs);
      this.outcome = o;
      this.ackWaiters.push(check);
    });
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
      for (const s of live) send(s.worker, { type: 'stats?', id });
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
        if (days < 0)
          this.log.error(
            { ssl: d.id, snis: d.snis, not_after: cert.not_after, code: 'TLSGATE_E_CERT_EXPIRED' },
            'certificate expired',
          );
        else if (days < c.resolved.config.warn_days)
          this.log.warn(
            { ssl: d.id, snis: d.snis, days_left: days, code: 'TLSGATE_E_CERT_EXPIRING' },
            'certificate expiring',
          );
      }
    }
  }

  status(): {
    version: number;
    workers: Array<{ pid: number; version: number }>;
    last_reload: ReloadResult | undefined;
    stale_secrets: ReturnType<SecretStore['stale']>;
    store: StoreStatus | { kind: 'file'; file: string };
  } {
    return {
      version: this.version,
      workers: [...this.slots.values()].map((s) => ({ pid: s.pid, version: s.version })),
      last_reload: this.lastReload,
      stale_secrets: this.store.stale(),
      store: this.configStore?.status() ?? { kind: 'file', file: resolvePath(this.configPath) },
    };
  }

  private async startAdmin(): Promise<void> {
    const c = this.config!;
    if (!c.admin) return;
    const { keys, tls } = adminSecrets(this.current!);
    if (!tls && !isLoopback(c.admin.listen.host)) {
      this.log.warn(
        { listen: `${c.admin.listen.host}:${c.admin.listen.port}` },
        'admin API bound beyond loopback without TLS: API keys cross the network in clear',
      );
    }
    this.admin = new AdminServer({
      host: c.admin.listen.host,
      port: c.admin.listen.port,
      apiKeys: keys,
      ...(tls ? { tls } : {}),
      log: this.log,
      ...adminRoutes(this),
    });
    this.adminAddress = await this.admin.listen();
    this.log.info(
      { admin: `${tls ? 'https' : 'http'}://${this.adminAddress.host}:${this.adminAddress.port}` },
      'admin API listening',
    );
  }

  /**
   * Watch the config file and every `$file://` the last parsed config references (even one
   * a refused reload named: it may be written next). A newly watched file is compared with
   * what the running snapshot holds: a change made between that read and the watch being
   * armed is found here, not lost.
   */
  private armWatch(): void {
    if (this.shuttingDown) return;
    const expected = new Map<string, string | undefined>([[resolvePath(this.configPath), this.loaded?.text]]);
    const cur = this.current;
    if (cur) {
      for (const [path, ref] of cur.resolved.refs) {
        if (ref.kind !== 'file') continue;
        expected.set(this.filePath(ref.path, cur.resolved.config.baseDir), cur.resolved.values.get(path));
      }
    }
    if (this.loaded) {
      for (const [, raw] of secretFields(this.loaded.config)) {
        const parsed = parseValue(raw);
        if (parsed.ok && parsed.ref?.kind === 'file') {
          const f = this.filePath(parsed.ref.path, this.loaded.config.baseDir);
          if (!expected.has(f)) expected.set(f, undefined);
        }
      }
    }
    const added = this.files.set(expected.keys());
    const max = cur?.resolved.config.file_max_size ?? defaults.fileMaxSize;
    const changed = added.filter((f) => {
      const want = expected.get(f);
      if (want === undefined) return false;
      try {
        return readLocalFile(f, f, Math.max(max, want.length * 4)) !== want;
      } catch {
        return true;
      }
    });
    if (changed.length) {
      this.log.info({ files: changed.length }, 'a file changed before its watch was armed; reloading');
      this.files.mark(changed);
    }
  }

  /** Does any reference's current value differ from the one the running snapshot was built with? */
  private servedDiffers(): boolean {
    const cur = this.current;
    if (!cur) return false;
    for (const [path, ref] of cur.resolved.refs) {
      const v = this.store.get(ref.text);
      if (v !== undefined && v !== cur.resolved.values.get(path)) return true;
    }
    return false;
  }

  private filePath(p: string, baseDir: string): string {
    return isAbsolute(p) ? p : resolvePath(baseDir, p);
  }

  private logWarnings(issues: ConfigIssue[]): void {
    for (const i of issues) if (i.severity === 'warning') this.log.warn({ path: i.path, code: i.code }, i.message);
  }

  /** SIGTERM: workers stop accepting and finish in-flight requests (capped), then exit. */
  async shutdown(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    clearInterval(this.expiryTimer);
    for (const t of this.respawnTimers) clearTimeout(t);
    this.files.close();
    const timeoutMs = this.config?.drain_timeout ?? defaults.drainTimeout;
    this.log.info({ timeoutMs }, 'draining workers');
    const exits = [...this.slots.values()].map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.worker.isDead()) return resolve();
          s.worker.once('exit', () => resolve());
          if (!send(s.worker, { type: 'drain', timeoutMs })) resolve();
        }),
    );
    const cap = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs + 2_000).unref());
    await Promise.race([Promise.all(exits), cap]);
    for (const s of this.slots.values()) if (!s.worker.isDead()) s.worker.process.kill('SIGKILL');
    await this.admin?.close();
    await this.configStore?.close();
    await this.validator.close();
    await this.store.close();
    await this.audit.flush();
    this.log.info('tlsgate stopped');
  }
}

function auditState(c: Current): AuditState {
  return { resolved: c.resolved, details: c.details, ssls: c.snapshot.ssls };
}

/** To a worker that may be exiting: a failed send is that worker's exit, handled in onExit. */
function send(w: ClusterWorker, m: PrimaryMessage): boolean {
  if (w.isDead() || !w.isConnected()) return false;
  w.send(m, undefined, () => undefined);
  return true;
}

function adminSecrets(c: Current): { keys: string[]; tls: { cert: string; key: string } | undefined } {
  const a = c.resolved.config.admin;
  const v = c.resolved.values;
  const keys = (a?.api_keys ?? []).map((_, i) => v.get(`admin.api_keys[${i}]`)!);
  const tls = a?.tls ? { cert: v.get('admin.tls.cert')!, key: v.get('admin.tls.key')! } : undefined;
  return { keys, tls };
}

/**
 * Settings read only at start. Everything else applies live: admin.api_keys and the
 * admin certificate (commit), secret providers (the store rebuilds a changed provider),
 * audit path, warn_days, drain_timeout, listeners, SSL objects, upstreams, routes.
 */
function needsRestart(cur: Current, next: Current): ConfigIssue[] {
  const a = cur.resolved.config;
  const b = next.resolved.config;
  const issues: ConfigIssue[] = [];
  const check = (path: string, x: unknown, y: unknown): void => {
    if (JSON.stringify(x) === JSON.stringify(y)) return;
    const message =
      `changed from ${JSON.stringify(x) ?? 'unset'} to ${JSON.stringify(y) ?? 'unset'}: ` +
      'takes effect only at a restart; restart tlsgate or put the old value back';
    issues.push({ path, code: 'TLSGATE_E_NEEDS_RESTART', severity: 'error', message });
  };
  check('workers', a.workers, b.workers);
  check('log', a.log, b.log);
  check('config_store', a.config_store, b.config_store);
  check('admin', a.admin === undefined ? 'absent' : 'present', b.admin === undefined ? 'absent' : 'present');
  if (a.admin && b.admin) {
    check('admin.listen', a.admin.listen, b.admin.listen);
    check('admin.tls', a.admin.tls ? 'on' : 'off', b.admin.tls ? 'on' : 'off');
  }
  return issues;
}

/** A changed admin certificate must load before the reload is acked (it is applied at commit). */
function adminTlsIssues(cur: Current, next: Current): ConfigIssue[] {
  const a = adminSecrets(cur).tls;
  const b = adminSecrets(next).tls;
  if (!b || (a && a.cert === b.cert && a.key === b.key)) return [];
  try {
    createSecureContext({ cert: b.cert, key: b.key });
    return [];
  } catch (err) {
    const detail = (err as { code?: string }).code ?? 'invalid';
    const message = `the certificate and key cannot be loaded together (${detail})`;
    return [{ path: 'admin.tls', code: 'TLSGATE_E_CERT_KEY_MISMATCH', severity: 'error', message }];
  }
}

/** Exited by itself (exception, abort, segfault), not killed from outside. */
function crashed(code: number | null, signal: string | null): boolean {
  if (signal === null) return code !== 0;
  return signal !== 'SIGKILL' && signal !== 'SIGTERM' && signal !== 'SIGINT';
}

function isLoopback(host: string): boolean {
  return host === '127.0.0.1' || host === '::1' || host === 'localhost' || host.startsWith('127.');
}
