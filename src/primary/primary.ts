// The primary: owns the config, resolves secrets, validates certificates (piscina),
// compiles and broadcasts snapshots, forks and respawns workers, serves the admin API.
import cluster, { type Worker as ClusterWorker } from 'node:cluster';
import { createHash, randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { dirname, isAbsolute, resolve as resolvePath } from 'node:path';
import { PerformanceObserver, constants as perfConstants } from 'node:perf_hooks';
import { createSecureContext } from 'node:tls';
import { loadConfigFile, type Loaded, type LoadOptions } from '../config/load';
import type { ConfigSource } from '../config/source';
import { resolveChangedFiles, resolveConfig, type ResolvedConfig } from '../config/resolve';
import type { GatewayConfig } from '../config/types';
import { defaults } from '../config/defaults';
import { CertValidator } from '../certs/pool';
import type { ValidateInput } from '../certs/validate';
import { CompileCache, compileSnapshot, sslTableDigest, type SslDetails, type SslPatch } from '../snapshot/compile';
import { encodeSnapshot } from '../snapshot/codec';
import { diffSnapshots, encodeDelta, ownBytes, sniById } from '../snapshot/delta';
import type { Snapshot } from '../snapshot/types';
import { AdminServer } from '../admin/server';
import { apiKeysOf, type ApiKey } from '../admin/access';
import { ConfigError, TlsgateError, formatIssue, type ConfigIssue } from '../errors';
import type { Logger } from '../log';
import { SecretStore } from '../secrets/store';
import { AuditLog, type AuditState } from './audit';
import { checkFdLimit } from './fd-limit';
import {
  isWorkerMessage, WORKER_SNAPSHOT_FD, type PrimaryMessage, type WorkerMessage, type WorkerStats,
} from '../worker/protocol';
import { adminRoutes } from './admin-routes';
import { FileWatch, nowMs } from './file-watch';
import { ValidationCache, validationCacheFile } from '../certs/validation-cache';
import { secretFields } from '../config/secret-fields';
import { mtlsLoss, mtlsLossIssues } from '../config/mtls-loss';
import { parseValue, type SecretRef } from '../secrets/reference';
import { readLocalFile } from '../secrets/resolve';
import { PrimaryMetrics } from './metrics';
import { ActiveHealth, type ActiveCheck } from '../proxy/active-health';
import { engineLoadIssues, reusePortMigrationWarning } from '../engines/uws-load';
import { openConfigStore } from '../store/open';
import type { EtcdStore, StoreStatus } from '../store/etcd-store';

/** glibc malloc arenas per worker (workerMallocEnv). */
const WORKER_MALLOC_ARENAS = 1;

/** The worker's fd for log lines: index of our stdout in the cluster stdio array. */
const WORKER_LOG_FD = 4;

/** A snapshot is proven once it served this long without a worker crashing. */
const STABLE_MS = 10_000; // 10 s
/** Respawn back-off for workers that keep dying: 100 ms doubling to 30 s. */
const RESPAWN_FIRST_MS = 100;
const RESPAWN_MAX_MS = 30_000;
/** A new standby is forked this long after the previous one was promoted. */
const STANDBY_AFTER_PROMOTE_MS = 1_000;
/** Quiet time after a commit before the full snapshot is encoded for respawns. */
const ENCODE_AFTER_MS = 1_000; // 1 s

interface WorkerSlot {
  worker: ClusterWorker;
  pid: number;
  /**
   * serving: listens; standby: holds the state (deltas like the others), listens only once
   * promoted; promoting: told to listen, not yet counted as serving.
   */
  role: 'serving' | 'standby' | 'promoting';
  /** Version it serves (0 until it listens). */
  version: number;
  /** Version a standby holds (its acks while not serving). */
  staged: number;
  listening: boolean;
  /** Sent 'ready': snapshots sent before it could arrive ahead of the current one. */
  ready: boolean;
  /** Version of the last snapshot or delta sent to it (0: none): the base of its next delta. */
  sent: number;
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

/**
 * The desired state of the gateway, as one source of change sees it: the whole config
 * (process settings and every object of every collection). applyDesired() compares it
 * object by object with what is served.
 */
export interface DesiredState {
  config: GatewayConfig;
  /** Warnings found while reading it (schema), reported with the result. */
  warnings?: ConfigIssue[];
  /**
   * Absolute paths of the `$file://` files known to have changed: only these are re-read
   * (the others keep the value the running state was built with). Absent: every file is
   * re-read (SIGHUP, POST /v1/reload: the operator asks for a full re-read).
   */
  changedFiles?: Iterable<string>;
}

export interface Current {
  snapshot: Snapshot;
  /** msgpack of the full snapshot, made when a worker needs one (start, respawn, resync). */
  bytes: Uint8Array | undefined;
  /** SNI patterns by SSL id (for diffs), made on first use. */
  sniIndex?: Map<string, string[]>;
  contentHash: string;
  resolved: ResolvedConfig;
  details: SslDetails[];
  /** Read + resolve + validate + compile, in ms. */
  compileMs: number;
  /** Where compileMs went: resolve (secret store), compile (validation), hash; ms. */
  phases?: { resolve: number; compile: number; hash: number; changed: number };
  /** From the compile's rotation path: which SSL objects differ from `sslPatch.from` (O(change) diff). */
  sslPatch?: SslPatch;
}

export class Primary {
  current: Current | undefined;
  lastReload: ReloadResult | undefined;
  readonly slots = new Map<number, WorkerSlot>();
  // Every core: at start nothing else runs yet (workers are forked after the first
  // compile); afterwards a change re-validates only the objects whose inputs changed.
  private readonly validator = new CertValidator(availableParallelism());
  private readonly compileCache = new CompileCache();
  /** ssl_dirs: new or changed certificate files are checked on the same pool (~1 ms CPU each, measured). */
  private readonly validateDir = (i: ValidateInput[]) => this.validator.validate(i);

  private loadOptions(): LoadOptions {
    const overlay = this.configStore?.overlay();
    return { validate: this.validateDir, ...(overlay ? { overlay } : {}) };
  }
  /** `$file://` paths named by file events since the last reload started; 'all': re-read every file. */
  private changedFiles: Set<string> | 'all' | undefined;
  private compose: (fileConfig: GatewayConfig) => GatewayConfig | Promise<GatewayConfig> = (c) => c;
  /** The parsed config the file watch was last armed for: re-armed only when it changes. */
  /** The last resolution and the store generation it saw (the rotation path's base). */
  private resolvedBase: { resolved: ResolvedConfig; gen: number } | undefined;
  private storeGen = 0;
  private armedFor: { parsed: Loaded['parsed']; overlay: string | undefined; dirs: string } | undefined;
  private readonly store: SecretStore;
  readonly audit: AuditLog;
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
  /** The warm standby (`standby_worker`): not in `slots` until promoted. */
  private standby: WorkerSlot | undefined;
  private standbyTimer: NodeJS.Timeout | undefined;
  private standbyStreak = 0;
  private lastStandbyAt: number | undefined;
  private started = false;
  private initial: Promise<unknown> | undefined;
  private reloading: Promise<ReloadResult> | undefined;
  /** Every change runs alone, in order: reload(), applyDesired(). */
  private exclusive: Promise<unknown> = Promise.resolve();
  private again: Promise<ReloadResult> | undefined;
  private shuttingDown = false;
  private version = 0;
  private ackWaiters: Array<() => void> = [];
  private statsWaiters = new Map<number, { want: number; got: WorkerStats[]; done: (s: WorkerStats[]) => void }>();
  private statsSeq = 0;
  private changeAt: number | undefined;
  /** Epoch ms of each phase of the change in flight (file event → every worker acked), logged at debug. */
  private trace: Record<string, number> | undefined;
  /** This process's last GCs (debug level only): a change's trace names those that landed in it. */
  private readonly gcs: Array<{ at: number; ms: number; major: boolean }> = [];
  private encodeTimer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  readonly metrics = new PrimaryMetrics();
  /** Active health checks of upstream nodes (one probe per node, verdicts sent to every worker). */
  readonly checks: ActiveHealth;
  adminAddress: { host: string; port: number } | undefined;
  /** config_store.etcd: where ssls, upstreams, routes and secret_providers come from (src/store/). */
  configStore: EtcdStore | undefined;

  constructor(
    readonly configPath: string,
    private readonly log: Logger,
  ) {
    this.audit = new AuditLog(log, undefined);
    if (log.isLevelEnabled('debug')) {
      new PerformanceObserver((list) => {
        for (const e of list.getEntries()) {
          const kind = (e as { detail?: { kind?: number } }).detail?.kind;
          this.gcs.push({ at: e.startTime, ms: e.duration, major: kind === perfConstants.NODE_PERFORMANCE_GC_MAJOR });
        }
        if (this.gcs.length > 64) this.gcs.splice(0, this.gcs.length - 64);
      }).observe({ entryTypes: ['gc'] });
    }
    this.checks = new ActiveHealth({
      log,
      metrics: this.metrics.activeHealth,
      // The standby too: once promoted it must skip the nodes the others skip.
      broadcast: (m) => {
        for (const s of this.slots.values()) if (s.ready) send(s.worker, m);
        if (this.standby?.ready) send(this.standby.worker, m);
      },
    });
    // A value changed at its source (Vault, AWS, a file): a new snapshot, no config edit.
    this.store = new SecretStore({
      logger: log,
      baseDir: dirname(resolvePath(configPath)),
      onChange: (c) => {
        // A `$file://` value found changed by the background re-read: the files it names,
        // as a watcher event would (O(change)); a full re-resolve was 8 s at 100k objects.
        const files = c.provider === '$file' ? this.filesOf(c.references) : undefined;
        if (!files) this.storeGen++; // resolveChangedFiles' base is stale now
        void this.reload(`secret:${c.provider}`, `secret-provider:${c.provider}`, files ?? []);
      },
    });
    // A refresh round compares a source with the store's last read, which may be newer
    // than what is served (a reload that read it was refused or rolled back): compare with
    // the running snapshot instead, or such a value would never be served.
    this.store.on('refreshed', (r) => {
      if (r.failed === r.references || this.reloading || !this.servedDiffers()) return;
      void this.reload(`secret:${r.provider}`, `secret-provider:${r.provider}`, []);
    });
    this.files = new FileWatch({
      onStable: (paths, timing) => {
        this.trace ??= { event: timing.eventAt, settle: timing.settleAt, stable: nowMs() };
        void this.reload('file', 'file', paths);
      },
      onError: (err, dir) => {
        this.log.warn({ err, dir }, 'config watch failed; SIGHUP and POST /v1/reload still work');
      },
    });
  }

  get config(): GatewayConfig | undefined {
    return this.current?.resolved.config;
  }

  /**
   * Load, validate, fork, wait for every worker to listen; throws on any start problem.
   * source: the config file as the CLI already read it (read here when absent).
   */
  async start(source?: ConfigSource): Promise<void> {
    let built: { compiled: Current; warnings: ConfigIssue[] };
    // Verdicts of unchanged certificates from the last run: a restart skips their validation.
    this.validator.persist(new ValidationCache(validationCacheFile(), this.log));
    // Config store (issue 14): its objects are part of the first build; each change it
    // validated is a reload, which goes through the same delta path as a file change.
    this.configStore = await openConfigStore({
      configPath: this.configPath,
      log: this.log,
      secrets: this.store,
      validator: this.validator,
      onApplied: (rev) => void this.reload('config-store', `etcd:${rev}`),
      ...(source ? { source } : {}),
    });
    const first = { ...this.loadOptions(), ...(source ? { source } : {}) };
    let forked: Array<Promise<void>> = [];
    const initial = loadConfigFile(this.configPath, undefined, first).then(async (loaded) => {
      this.loaded = loaded;
      const config = await this.compose(loaded.config);
      // Workers start now, while the first build runs: their process start and module load
      // (~0.5-1 s on this 2-core machine, measured) overlap the compile instead of following it.
      forked = this.forkEarly(config.workers);
      return this.build({ config, warnings: loaded.issues });
    });
    // A reload asked for while the first build runs (a secret refresh) waits for it.
    this.initial = initial.catch(() => undefined);
    let firstBuild: Current | undefined;
    try {
      built = await initial;
      firstBuild = built.compiled;
    } catch (err) {
      for (const slot of this.slots.values()) slot.worker.process.kill('SIGKILL'); // no snapshot to drain
      throw err;
    } finally {
      // Armed right after the first read and re-checked against what that build read (nothing
      // is committed yet): a file replaced while 10k objects compile is noticed, not lost
      // until a restart.
      this.armWatch(firstBuild);
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
    const n = compiled.resolved.config.workers;
    // Forked during the build: those already waiting get the first snapshot now (the others at 'ready').
    for (const slot of this.slots.values()) if (slot.ready) this.sendState(slot, compiled);
    await Promise.all(forked);
    this.started = true;
    this.syncStandby();
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
    // The rotation path's file → objects index, made now rather than by the first rotation
    // (≈ 20-50 ms at 10k objects): resolveChangedFiles with no file builds it.
    const base = this.resolvedBase?.resolved;
    const dir = base?.config.baseDir ?? '';
    const abs = (r: SecretRef): string => (r.kind === 'file' ? this.filePath(r.path, dir) : '');
    if (base) void resolveChangedFiles(base, this.store, new Set(), abs);
  }

  /**
   * Desired state → compiled state. Per object, only what changed is recomputed: files
   * re-read only when named by `changedFiles`, certificates re-validated only for objects
   * whose config or values changed (CompileCache), unchanged objects keep their identity.
   */
  private async build(desired: DesiredState): Promise<{ compiled: Current; warnings: ConfigIssue[] }> {
    const t0 = performance.now();
    const { config } = desired;
    const readIssues = desired.warnings ?? [];
    const engineIssues = engineLoadIssues(config.listeners.map((l) => ({ name: l.name, engine: l.engine })));
    if (engineIssues.length)
      throw new ConfigError(
        engineIssues.map((i) => ({ ...i, code: 'TLSGATE_E_ENGINE_LOAD' as const, severity: 'error' as const })),
      );
    const changed = desired.changedFiles === undefined ? 'all' : new Set(desired.changedFiles);
    // Only files changed, in the config resolved last time, with no secret refreshed since:
    // re-read those files alone (resolveChangedFiles); otherwise walk every reference.
    const gen = this.storeGen;
    const base = this.resolvedBase;
    let resolved: ResolvedConfig | undefined;
    const sameBase = base?.gen === gen && base.resolved.config === config && !base.resolved.unresolved?.length;
    if (changed !== 'all' && base && sameBase) {
      const absolute = (ref: SecretRef): string => (ref.kind === 'file' ? this.filePath(ref.path, config.baseDir) : '');
      resolved = await resolveChangedFiles(base.resolved, this.store, changed, absolute);
    }
    resolved ??= await resolveConfig(config, this.store, this.rereadOnly(changed, config.baseDir));
    this.resolvedBase = { resolved, gen };
    this.mark('resolved');
    const t1 = performance.now();
    const c = await compileSnapshot(resolved, this.validator, Date.now(), this.compileCache);
    const t2 = performance.now();
    this.mark('compiled');
    const body = { ...c.snapshot, ticketKeys: this.ticketKeys };
    // "Did anything change?" from the per-object material hashes: no second msgpack
    // encoding of every PEM (≈10 MB at 10k objects) on each reload.
    // Settings outside the snapshot (admin keys, providers, workers, log…) count too: an
    // edit of one of them is applied, refused or audited, never reported "unchanged".
    const { ssls: _ssls, ...settings } = resolved.config;
    // The admin fields by path (not a filter over every value: 20k at 10k objects).
    const adminValues = secretFields({ ...config, ssls: [], upstreams: [] })
      .map(([k]) => [k, resolved.values.get(k)] as const)
      .filter((e): e is readonly [string, string] => e[1] !== undefined)
      .map(([k, v]) => [k, createHash('sha256').update(v).digest('hex')]);
    const h = createHash('sha256').update(
      JSON.stringify({
        listeners: body.listeners,
        routes: body.routes,
        upstreams: body.upstreams.map((u) => u.hash),
        settings,
        adminValues,
      }),
    );
    // The SNI table follows from each object's type, status and SNIs: hashed per object.
    const status = statusOf(config);
    h.update(sslTableDigest(this.compileCache, body.ssls, status, c.sslPatch));
    const contentHash = h.digest('hex');
    const snapshot: Snapshot = { ...body, version: 0, createdAt: Date.now() };
    const t3 = performance.now();
    this.mark('hashed');
    const compileMs = Math.round(t3 - t0);
    const r = (x: number): number => Math.round(x * 10) / 10;
    const phases = { resolve: r(t1 - t0), compile: r(t2 - t1), hash: r(t3 - t2), changed: c.recompiled };
    return {
      compiled: {
        snapshot, bytes: undefined, contentHash, resolved, details: c.details, compileMs, phases,
        ...(c.sslPatch ? { sslPatch: c.sslPatch } : {}),
      },
      warnings: [...readIssues, ...c.warnings],
    };
  }

  /** For the secret store: which local references to read again ('all', or those of the named files). */
  private rereadOnly(changed: Set<string> | 'all', baseDir: string): ((ref: SecretRef) => boolean) | undefined {
    if (changed === 'all') return undefined;
    return (ref) => ref.kind === 'file' && changed.has(this.filePath(ref.path, baseDir));
  }

  /**
   * The full snapshot a respawned worker needs, encoded ahead of time once changes settle
   * (10k objects: 13 MB, ≈ 100-400 ms here), so a respawn does not wait for it; rotations
   * in a burst encode once, after the last.
   */
  private encodeSoon(): void {
    clearTimeout(this.encodeTimer);
    this.encodeTimer = setTimeout(() => {
      if (this.current && !this.shuttingDown) this.fullBytes(this.current);
    }, ENCODE_AFTER_MS);
    this.encodeTimer.unref();
  }

  private fullBytes(c: Current): Uint8Array {
    return (c.bytes ??= ownBytes(encodeSnapshot(c.snapshot)));
  }

  private sniIndex(c: Current): Map<string, string[]> {
    // The same SNI table as the served state (a rotation): the same index, not a rebuild.
    const cur = this.current;
    if (!c.sniIndex && cur?.sniIndex && cur !== c && cur.snapshot.sni === c.snapshot.sni) c.sniIndex = cur.sniIndex;
    return (c.sniIndex ??= sniById(c.snapshot));
  }

  /** A new version number; workers get it, `current` stays until they all ack. */
  private stamp(c: Current): void {
    this.version++;
    c.snapshot.version = this.version;
    c.bytes = undefined;
    this.metrics.version.set(this.version);
  }

  /** Every worker serves `c`: it becomes the snapshot respawns get, the admin API shows and the audit records. */
  private commit(c: Current, source: string, actor: string): void {
    const prev = this.current;
    this.current = c;
    this.checks.sync(c.snapshot.upstreams, activeChecks(c), c.snapshot.ssls);
    // Kept for a crash rollback: it shares every unchanged object with `c`; its bytes go.
    if (prev) prev.bytes = undefined;
    this.encodeSoon();
    // The next change's diff needs it: built now, not inside that change (the first
    // rotation after start spent 40-50 ms at 10k objects, ~0.9 s at 100k, building two).
    if (!c.sniIndex) setImmediate(() => this.current === c && this.sniIndex(c));
    this.syncStandby();
    this.previous = prev && { c: prev, until: Date.now() + STABLE_MS };
    this.audit.setPath(c.resolved.config.audit?.path, c.resolved.config.baseDir);
    if (prev) {
      // Only the objects that differ: comparing 10k objects field by field on every
      // rotation cost ≈ 200 ms of the primary's loop (profiled), delaying the next change.
      const { before, after, removed } = changedObjects(prev, c);
      this.audit.record(before, after, source, actor, c.snapshot.version);
      this.metrics.patchCertificates(after.details, removed);
    } else {
      this.audit.record(undefined, auditState(c), source, actor, c.snapshot.version);
      this.metrics.setCertificates(c.details);
    }
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
    this.broadcast(c);
    this.checks.sync(c.snapshot.upstreams, activeChecks(c), c.snapshot.ssls);
  }

  /** Send `c` to every ready worker and the standby: a delta from what each was last sent, one encoding per base. */
  private broadcast(c: Current): void {
    const deltas = new Map<number, Uint8Array>();
    for (const s of this.slots.values()) if (s.ready) this.sendState(s, c, deltas);
    if (this.standby?.ready) this.sendState(this.standby, c, deltas);
  }

  /**
   * A worker gets a delta when the snapshot it was last sent is known here (current,
   * pending, previous), else the full snapshot. A worker that is not at the delta's base
   * when it arrives (it failed or missed a version) answers 'resync' and gets a full one.
   */
  private sendState(slot: WorkerSlot, c: Current, deltas?: Map<number, Uint8Array>): void {
    const version = c.snapshot.version;
    if (slot.sent === version) return;
    const base = slot.sent === 0 ? undefined : this.known(slot.sent);
    if (base) {
      let bytes = deltas?.get(slot.sent);
      if (!bytes) {
        const d = diffSnapshots(base.snapshot, c.snapshot, this.sniIndex(base), this.sniIndex(c), c.sslPatch);
        this.mark('diffed');
        bytes = encodeDelta(d);
        this.mark('encoded');
        deltas?.set(slot.sent, bytes);
      }
      send(slot.worker, { type: 'delta', base: slot.sent, version, bytes });
    } else {
      sendFull(slot.worker, version, this.fullBytes(c));
    }
    slot.sent = version;
  }

  private known(version: number): Current | undefined {
    for (const c of [this.current, this.pending, this.previous?.c]) if (c?.snapshot.version === version) return c;
    return undefined;
  }

  /**
   * Resolves at the worker's first ack (a standby: once promoted and listening); rejects if
   * it cannot apply its first snapshot or exits before.
   */
  /** The first workers, forked once the config is parsed (before the first build ends). */
  private forkEarly(n: number): Array<Promise<void>> {
    // Workers share the listening socket and the kernel spreads connections:
    // no extra hop through the primary per connection. Must be set before
    // setupPrimary(), which freezes the policy (set after it, Node kept round-robin:
    // measured, the primary accepted every connection and handed it over IPC).
    cluster.schedulingPolicy = cluster.SCHED_NONE;
    // Worker fd 1 and 2 → our stderr; worker fd 4 → our stdout, where workers log (TLSGATE_LOG_FD).
    // Native code in a worker (uWS prints debug lines from domain()) writes to fd 1 and so
    // never lands inside the JSON log stream.
    cluster.setupPrimary({ serialization: 'advanced', stdio: [0, 2, 2, 'ipc', 1, 'pipe'], execArgv: workerExecArgv() });
    cluster.on('exit', (w, code, signal) => this.onExit(w, code, signal));
    const forked = Array.from({ length: n }, () => this.fork());
    // Awaited after the build; a worker that dies during it must not be an unhandled rejection meanwhile.
    for (const f of forked) f.catch(() => undefined);
    return forked;
  }

  private fork(role: 'serving' | 'standby' = 'serving'): Promise<void> {
    const worker = cluster.fork({
      TLSGATE_LOG_LEVEL: (this.config ?? this.loaded?.config)?.log.level ?? 'info',
      TLSGATE_LOG_FD: String(WORKER_LOG_FD),
      ...workerMallocEnv(),
      ...(role === 'standby' ? { TLSGATE_STANDBY: '1' } : {}),
    });
    const pid = worker.process.pid ?? 0;
    // A worker that dies mid-snapshot breaks its pipe (EPIPE): its exit is handled in onExit.
    snapshotPipe(worker)?.on('error', () => undefined);
    const slot: WorkerSlot = {
      worker, pid, role, version: 0, staged: 0, listening: false, ready: false, sent: 0, bornAt: Date.now(),
    };
    if (role === 'standby') this.standby = slot;
    else this.slots.set(worker.id, slot);
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
        if (this.current) this.sendState(slot, this.current);
        if (this.pending) this.sendState(slot, this.pending);
        this.checks.replay((h) => send(slot.worker, h));
        return;
      case 'resync': {
        // Full snapshot of the version it asked for if still wanted, else of the newest.
        const target = [this.pending, this.current].find((c) => c?.snapshot.version === m.version) ??
          this.pending ?? this.current;
        if (!target) return;
        slot.sent = 0;
        this.sendState(slot, target);
        return;
      }
      case 'ack':
        slot.staged = Math.max(slot.staged, m.version);
        // A standby's acks say what it holds, not what it serves.
        if (slot.role !== 'serving') return;
        slot.version = Math.max(slot.version, m.version);
        if (this.trace && this.pending?.snapshot.version === m.version) this.mark(`ack_${slot.pid}`);
        if (!slot.listening) {
          slot.listening = true;
          resolve();
        }
        this.notifyAcks();
        return;
      case 'promoted':
        slot.role = 'serving';
        slot.version = Math.max(slot.version, m.version);
        slot.listening = true;
        this.log.info({ pid: slot.pid, version: m.version }, 'standby worker promoted: serving');
        resolve();
        this.notifyAcks();
        return;
      case 'snapshot-error':
        if (slot.role === 'standby') {
          // It keeps what it holds (the base of its next delta); it serves nothing, so no reload fails for it.
          slot.sent = slot.staged;
          this.log.warn({ code: m.code, version: m.version, pid: slot.pid }, `standby worker: ${m.message}`);
          return;
        }
        // It keeps serving what it acked: the base of its next delta.
        slot.sent = slot.version;
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
    if (this.standby?.worker.id === w.id) {
      this.standby = undefined;
      if (this.shuttingDown) return;
      this.log.warn({ pid: w.process.pid, code, signal }, 'standby worker died');
      this.syncStandby();
      return;
    }
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
    if (this.promoteStandby()) return;
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

  /**
   * A dead worker's place goes to the standby: it already holds the state, so it only
   * binds (ms, not a process start, module load and full snapshot). It counts as serving
   * once it answers 'promoted', which it does only at the current version or later; a new
   * standby is forked behind it (with a back-off while they keep dying young).
   */
  private promoteStandby(): boolean {
    const s = this.standby;
    if (!s?.ready || !this.current || s.worker.isDead()) return false;
    this.standby = undefined;
    s.role = 'promoting';
    s.bornAt = Date.now();
    this.slots.set(s.worker.id, s);
    // Anything it lacks first (a delta or, when it is behind, a full snapshot), then the order.
    this.sendState(s, this.current);
    if (this.pending) this.sendState(s, this.pending);
    send(s.worker, { type: 'promote', version: this.current.snapshot.version });
    // Not at once: a new process loading its modules would take CPU from the promoted one.
    this.syncStandby(STANDBY_AFTER_PROMOTE_MS);
    return true;
  }

  /** A standby when `standby_worker` asks for one (forked after a back-off while standbys die young). */
  private syncStandby(minDelayMs = 0): void {
    if (!this.started || this.shuttingDown) return;
    const want = this.config?.standby_worker ?? true;
    if (!want) {
      clearTimeout(this.standbyTimer);
      this.standbyTimer = undefined;
      const s = this.standby;
      this.standby = undefined;
      if (s && !s.worker.isDead()) send(s.worker, { type: 'drain', timeoutMs: 0 });
      return;
    }
    if (this.standby || this.standbyTimer) return;
    const young = this.lastStandbyAt !== undefined && Date.now() - this.lastStandbyAt < STABLE_MS;
    this.standbyStreak = young ? this.standbyStreak + 1 : 0;
    const n = this.standbyStreak;
    const delay = Math.max(minDelayMs, n === 0 ? 0 : Math.min(RESPAWN_MAX_MS, RESPAWN_FIRST_MS * 2 ** (n - 1)));
    this.standbyTimer = setTimeout(() => {
      this.standbyTimer = undefined;
      if (!this.shuttingDown && !this.standby && (this.config?.standby_worker ?? true)) {
        this.lastStandbyAt = Date.now();
        // A standby serves nothing until promoted; its promise settles then (or never).
        this.fork('standby').catch(() => undefined);
      }
    }, delay);
  }

  /**
   * Re-read the config file and apply it (applyDesired). `changedFiles`: the `$file://`
   * files known to have changed (file events; [] for a secret refreshed at its source):
   * only those are re-read. Absent (SIGHUP, POST /v1/reload): every file is re-read.
   * Requests made while one runs are merged into one more pass.
   */
  reload(source: string, actor = source, changedFiles?: Iterable<string>): Promise<ReloadResult> {
    this.changeAt ??= Date.now();
    this.trace ??= { request: nowMs() };
    if (changedFiles === undefined) this.changedFiles = 'all';
    else if (this.changedFiles !== 'all') {
      this.changedFiles ??= new Set();
      for (const f of changedFiles) this.changedFiles.add(f);
    }
    if (this.reloading) {
      // One more pass after the running one, so its result reflects this request too.
      this.again ??= this.reloading.then(() => {
        this.again = undefined;
        return this.reload(source, actor, []);
      });
      return this.again;
    }
    this.reloading = this.serial(() => this.doReload(source, actor)).finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  /**
   * THE entry point of every change. `desired` is the whole desired config (process
   * settings and all objects); each object (ssls, upstreams, routes, listeners, by id) is
   * compared with the served one and only those whose config or resolved inputs changed
   * are recomputed: `$file://` values re-read only for `desired.changedFiles` (all when
   * absent), certificates re-validated only for changed objects (in parallel on the
   * pool). The result is validated as a whole config, sent to each worker as a delta from
   * the version it serves (a full snapshot to one that is not there), and committed only
   * when every worker acks; otherwise every worker goes back to the running state. A
   * refused change names each bad object and field; the running state keeps serving.
   * Calls are serialised with each other and with reload(); `source` and `actor` go to
   * the log, the audit and GET /v1/status.
   */
  applyDesired(source: string, desired: DesiredState, actor = source): Promise<ReloadResult> {
    this.changeAt ??= Date.now();
    return this.serial(() => this.applyNow(source, actor, desired));
  }

  /**
   * How reload() (file watch, SIGHUP, POST /v1/reload) and start() turn the config file into
   * the desired state: identity by default; a source that adds objects (a config store, cert
   * directories) sets it so a file reload keeps its objects. Throwing refuses the reload.
   */
  setComposer(fn: (fileConfig: GatewayConfig) => GatewayConfig | Promise<GatewayConfig>): void {
    this.compose = fn;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.exclusive.then(async () => {
      await this.initial;
      return fn();
    });
    this.exclusive = run.catch(() => undefined);
    return run;
  }

  private async doReload(source: string, actor: string): Promise<ReloadResult> {
    this.mark('reload');
    const files = this.changedFiles;
    this.changedFiles = undefined;
    let loaded: Loaded;
    try {
      loaded = this.unchangedLoad(files) ?? (await loadConfigFile(this.configPath, this.loaded, this.loadOptions()));
      this.loaded = loaded;
    } catch (err) {
      this.armWatch();
      return this.refused(source, new Date().toISOString(), errorsOf(err));
    }
    const changedFiles = files === 'all' ? undefined : [...(files ?? [])];
    let config: GatewayConfig;
    try {
      config = await this.compose(loaded.config);
    } catch (err) {
      return this.refused(source, new Date().toISOString(), errorsOf(err));
    }
    const desired: DesiredState = {
      config,
      warnings: loaded.issues,
      ...(changedFiles ? { changedFiles } : {}),
    };
    return this.applyNow(source, actor, desired);
  }

  /**
   * The last load, when the file events name neither the config file nor a file of an
   * `ssl_dirs` directory (a `$file://` rotation): reading and comparing a 10k-object
   * config (1.3 MB) was ≈ 15 ms of each rotation. A config store's objects come with it.
   */
  private unchangedLoad(files: Set<string> | 'all' | undefined): Loaded | undefined {
    const l = this.loaded;
    if (!l || files === 'all' || files === undefined || files.size === 0 || this.configStore) return undefined;
    const config = resolvePath(this.configPath);
    const dirs = new Set(l.watchDirs.map((d) => d.path));
    for (const f of files) if (f === config || dirs.has(f) || dirs.has(dirname(f))) return undefined;
    return l;
  }

  private async applyNow(source: string, actor: string, desired: DesiredState): Promise<ReloadResult> {
    const at = new Date().toISOString();
    let compiled: Current;
    let warnings: ConfigIssue[];
    try {
      let built: Current | undefined;
      try {
        ({ compiled, warnings } = await this.build(desired));
        built = compiled;
      } finally {
        // A file this build read for the first time is compared with what it read.
        this.armWatch(built);
      }
      this.logWarnings(warnings);
      const cur = this.current;
      const restart = cur ? [...needsRestart(cur, compiled), ...adminTlsIssues(cur, compiled)] : [];
      if (restart.length) throw new ConfigError(restart);
    } catch (err) {
      return this.refused(source, at, errorsOf(err));
    }
    const changeAt = this.changeAt ?? Date.now();
    this.changeAt = undefined;
    if (compiled.contentHash === this.current?.contentHash) {
      this.trace = undefined;
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
    this.broadcast(compiled);
    this.mark('sent');
    const sentAt = performance.now();
    const sent = { version, source, compile_ms: compiled.compileMs, phases: compiled.phases };
    this.log.info(sent, 'new snapshot sent to workers');
    const errors = await outcome;
    if (errors.length) {
      const good = this.current!;
      // Still `pending` while rolling back: a worker that applied it gets a delta back.
      this.rollback(good);
      this.pending = undefined;
      const why = { source, errors, version: this.version, refused_version: version };
      this.log.error(why, 'workers could not apply the new snapshot; the previous one keeps serving');
      return this.refused(source, at, errors);
    }
    this.pending = undefined;
    // Names this change leaves without client certificate verification: never silent.
    const prevConfig = this.current!.resolved.config;
    const lost = prevConfig === compiled.resolved.config ? [] : mtlsLoss(prevConfig, compiled.resolved.config);
    const lossIssues = lost.length ? mtlsLossIssues(prevConfig, compiled.resolved.config) : [];
    this.logWarnings(lossIssues);
    this.commit(compiled, source, actor);
    this.audit.recordMtlsLoss(lost, source, actor, version);
    this.metrics.reloads.inc({ result: 'applied' });
    this.metrics.rotation.observe((Date.now() - changeAt) / 1000);
    const ackMs = Math.round((performance.now() - sentAt) * 10) / 10;
    this.log.info({ version, source, ack_ms: ackMs, change_ms: Date.now() - changeAt }, 'snapshot applied');
    this.mark('committed');
    this.logTrace(version);
    const warned = [...warnings, ...lossIssues].map(formatIssue);
    return (this.lastReload = { ok: true, version, at, source, errors: [], warnings: warned });
  }

  private mark(phase: string): void {
    if (this.trace) this.trace[phase] = nowMs();
  }

  /**
   * Where one change's time went, for a profile: each phase's epoch ms (`at`, the first
   * file event) and ms since the phase before. Debug level: never formatted otherwise.
   */
  private logTrace(version: number): void {
    const t = this.trace;
    this.trace = undefined;
    if (!t || !this.log.isLevelEnabled('debug')) return;
    const phases: Record<string, number> = {};
    let prev: number | undefined;
    for (const [k, v] of Object.entries(t)) {
      phases[k] = prev === undefined ? 0 : Math.round((v - prev) * 10) / 10;
      prev = v;
    }
    const first = Object.values(t)[0]!;
    const from = first - performance.timeOrigin;
    const gcs = this.gcs.filter((g) => g.at + g.ms >= from);
    const ms = (x: number): number => Math.round(x * 10) / 10;
    const gc = {
      count: gcs.length,
      ms: ms(gcs.reduce((a, g) => a + g.ms, 0)),
      major_ms: ms(gcs.filter((g) => g.major).reduce((a, g) => a + g.ms, 0)),
    };
    this.log.debug({ version, at: first, total_ms: ms(prev! - first), phases, gc }, 'change phases');
  }

  private refused(source: string, at: string, errors: string[]): ReloadResult {
    this.changeAt = undefined;
    this.trace = undefined;
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

  /**
   * GET /metrics: prom-client asks every forked worker, the standby too, and a worker that
   * has not loaded it yet never answers (the scrape lost every worker's metrics after 5 s):
   * wait (at most 2 s) until each has said 'ready', which it does once it can answer.
   */
  async metricsText(): Promise<string> {
    const deadline = Date.now() + 2_000;
    const waiting = (): boolean =>
      [...this.slots.values(), ...(this.standby ? [this.standby] : [])].some((s) => !s.ready && !s.worker.isDead());
    while (waiting() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.metrics.text();
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
    /** The warm standby (not serving) and the version it holds. */
    standby?: { pid: number; version: number };
    last_reload: ReloadResult | undefined;
    stale_secrets: ReturnType<SecretStore['stale']>;
    store: StoreStatus | { kind: 'file'; file: string };
  } {
    return {
      version: this.version,
      workers: [...this.slots.values()].map((s) => ({ pid: s.pid, version: s.version })),
      ...(this.standby ? { standby: { pid: this.standby.pid, version: this.standby.staged } } : {}),
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
  private armWatch(read?: Current): void {
    if (this.shuttingDown) return;
    // The same parse, overlay and directories as last time: the same files are watched
    // already (O(objects) to redo: 28 ms of each rotation at 10k objects, profiled).
    const l = this.loaded;
    const key = l && { parsed: l.parsed, overlay: l.overlay, dirs: l.watchDirs.map((d) => d.path).join('\n') };
    const a = this.armedFor;
    if (key && a && a.parsed === key.parsed && a.overlay === key.overlay && a.dirs === key.dirs) return;
    this.armedFor = key;
    const expected = new Map<string, string | undefined>([[resolvePath(this.configPath), this.loaded?.text]]);
    const cur = read ?? this.current;
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
    const added = this.files.set(expected.keys(), this.loaded?.watchDirs);
    const max = cur?.resolved.config.file_max_size ?? defaults.fileMaxSize;
    const check = added.flatMap((f) => {
      const want = expected.get(f);
      return want === undefined ? [] : [{ f, want }];
    });
    if (check.length) void this.recheckArmed(check, max);
  }

  /**
   * Files just watched, compared with what the build read. Off the start's path and a slice
   * per turn of the loop: 100k files are ~1.5 s of reads, and an event on a file read here
   * is already queued by its watch.
   */
  private async recheckArmed(files: Array<{ f: string; want: string }>, max: number): Promise<void> {
    const changed: string[] = [];
    for (let i = 0; i < files.length; i++) {
      if (this.shuttingDown) return;
      const { f, want } = files[i]!;
      try {
        if (readLocalFile(f, f, Math.max(max, want.length * 4)) !== want) changed.push(f);
      } catch {
        changed.push(f);
      }
      if (i % 256 === 255) await new Promise((r) => setImmediate(r));
    }
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

  /** Absolute paths of these `$file://` reference texts, or undefined if one is not a file reference. */
  private filesOf(texts: readonly string[]): string[] | undefined {
    const baseDir = this.current?.resolved.config.baseDir;
    if (baseDir === undefined) return undefined;
    const out: string[] = [];
    for (const t of texts) {
      const parsed = parseValue(t);
      if (!parsed.ok || parsed.ref?.kind !== 'file') return undefined;
      out.push(this.filePath(parsed.ref.path, baseDir));
    }
    return out;
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
    clearTimeout(this.encodeTimer);
    for (const t of this.respawnTimers) clearTimeout(t);
    clearTimeout(this.standbyTimer);
    this.files.close();
    this.checks.close();
    const timeoutMs = this.config?.drain_timeout ?? defaults.drainTimeout;
    this.log.info({ timeoutMs }, 'draining workers');
    const all = [...this.slots.values(), ...(this.standby ? [this.standby] : [])];
    const exits = all.map(
      (s) =>
        new Promise<void>((resolve) => {
          if (s.worker.isDead()) return resolve();
          s.worker.once('exit', () => resolve());
          if (!send(s.worker, { type: 'drain', timeoutMs })) resolve();
        }),
    );
    const cap = new Promise<void>((resolve) => setTimeout(resolve, timeoutMs + 2_000).unref());
    await Promise.race([Promise.all(exits), cap]);
    for (const s of all) if (!s.worker.isDead()) s.worker.process.kill('SIGKILL');
    await this.admin?.close();
    await this.configStore?.close();
    this.validator.flush();
    await this.validator.close();
    await this.store.close();
    await this.audit.flush();
    this.log.info('tlsgate stopped');
  }
}

function errorsOf(err: unknown): string[] {
  const issues = err instanceof ConfigError ? err.issues.filter((i) => i.severity === 'error') : [];
  if (issues.length) return issues.map(formatIssue);
  return [`${(err as TlsgateError).code ?? 'ERROR'}: ${(err as Error).message}`];
}

/**
 * The SSL objects of `a` and `b` that differ, as two audit states (providers kept whole: few).
 * Unchanged objects keep their identity across compiles (CompileCache), so the test is an
 * identity check, then JSON only for config objects re-parsed from a changed file.
 */
function changedObjects(a: Current, b: Current): { before: AuditState; after: AuditState; removed: string[] } {
  const pick = (c: Current, idx: number[]): AuditState => ({
    resolved: { ...c.resolved, config: { ...c.resolved.config, ssls: idx.map((i) => c.resolved.config.ssls[i]!) } },
    details: idx.map((i) => c.details[i]!),
    ssls: idx.map((i) => c.snapshot.ssls[i]!),
  });
  const patch = b.sslPatch;
  if (patch && patch.from === a.snapshot.ssls && a.resolved.config.ssls === b.resolved.config.ssls) {
    // The compile says which objects it replaced: O(change), not a pass over every object.
    const idx = patch.indices.filter((i) => a.snapshot.ssls[i] !== b.snapshot.ssls[i] || a.details[i] !== b.details[i]);
    return { before: pick(a, idx), after: pick(b, idx), removed: [] };
  }
  if (a.resolved.config.ssls === b.resolved.config.ssls) {
    // The same objects in the same order (a rotation): identity per index, no maps.
    const idx: number[] = [];
    b.snapshot.ssls.forEach((s, i) => {
      if (a.snapshot.ssls[i] !== s || a.details[i] !== b.details[i]) idx.push(i);
    });
    return { before: pick(a, idx), after: pick(b, idx), removed: [] };
  }
  const prev = new Map<string, number>();
  a.resolved.config.ssls.forEach((s, i) => prev.set(s.id, i));
  const ia: number[] = [];
  const ib: number[] = [];
  b.resolved.config.ssls.forEach((s, j) => {
    const i = prev.get(s.id);
    prev.delete(s.id);
    if (i === undefined) return void ib.push(j);
    const o = a.resolved.config.ssls[i]!;
    const same =
      a.snapshot.ssls[i] === b.snapshot.ssls[j] &&
      a.details[i] === b.details[j] &&
      (o === s || JSON.stringify(o) === JSON.stringify(s));
    if (same) return;
    ia.push(i);
    ib.push(j);
  });
  const removed = [...prev.keys()];
  ia.push(...prev.values());
  return { before: pick(a, ia), after: pick(b, ib), removed };
}

function auditState(c: Current): AuditState {
  return { resolved: c.resolved, details: c.details, ssls: c.snapshot.ssls };
}

/** `checks.active` of each upstream that has them, by id. */
function activeChecks(c: Current): Map<string, ActiveCheck> {
  const m = new Map<string, ActiveCheck>();
  for (const u of c.resolved.config.upstreams) if (u.checks?.active) m.set(u.id, u.checks.active);
  return m;
}

/**
 * Workers run with a 2 MB young generation (V8's default grows to 16 MB per semi-space):
 * decoding a 10k-object snapshot grew it to its maximum and kept it (measured at 10k
 * objects: worker RSS 140 → 110 MB). An operator's own setting (execArgv, NODE_OPTIONS) wins.
 * `gc` is exposed so a worker collects once after a full snapshot (worker/worker.ts).
 */
function workerExecArgv(): string[] {
  const flags = [...process.execArgv, process.env.NODE_OPTIONS ?? ''];
  const own = flags.some((a) => a.includes('semi-space-size'));
  const gc = flags.some((a) => a.includes('expose-gc') || a.includes('expose_gc'));
  return [...process.execArgv, ...(own ? [] : ['--max-semi-space-size=2']), ...(gc ? [] : ['--expose-gc'])];
}

/**
 * glibc malloc arenas for a worker, unless the operator set MALLOC_ARENA_MAX: with glibc's
 * default (8 per core) what rotations freed stayed in arenas that new allocations did not reuse.
 * 10k objects, node engine, 400 rotations of one file, then 20 s idle (a GC ran): worker RSS
 * +11.6 / +12.5 MB with the default, +7.5 MB with 2 arenas, +2.3 MB with 1 (and no growth from
 * rotation 200 to 400). The worker's hot path is one thread; V8's helper threads share it.
 */
function workerMallocEnv(): Record<string, string> {
  return process.env.MALLOC_ARENA_MAX === undefined ? { MALLOC_ARENA_MAX: String(WORKER_MALLOC_ARENAS) } : {};
}

/** To a worker that may be exiting: a failed send is that worker's exit, handled in onExit. */
function send(w: ClusterWorker, m: PrimaryMessage): boolean {
  if (w.isDead() || !w.isConnected()) return false;
  w.send(m, undefined, () => undefined);
  return true;
}

function snapshotPipe(w: ClusterWorker): import('node:stream').Writable | undefined {
  return (w.process.stdio as ReadonlyArray<unknown>)[WORKER_SNAPSHOT_FD] as import('node:stream').Writable | undefined;
}

/** A full snapshot: its bytes on the worker's snapshot pipe (worker/protocol.ts WORKER_SNAPSHOT_FD), else over IPC. */
function sendFull(w: ClusterWorker, version: number, bytes: Uint8Array): boolean {
  const pipe = snapshotPipe(w);
  if (!pipe?.writable) return send(w, { type: 'snapshot', version, bytes });
  if (!send(w, { type: 'snapshot-pipe', version, size: bytes.length })) return false;
  pipe.write(bytes);
  return true;
}

function adminSecrets(c: Current): { keys: ApiKey[]; tls: { cert: string; key: string } | undefined } {
  const a = c.resolved.config.admin;
  const v = c.resolved.values;
  const keys = apiKeysOf(a, v);
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

/** Each SSL object's status, made once per config object (the rotation path's hash needs it). */
const statuses = new WeakMap<GatewayConfig, string[]>();
function statusOf(c: GatewayConfig): string[] {
  let out = statuses.get(c);
  if (!out) statuses.set(c, (out = c.ssls.map((x) => x.status)));
  return out;
}
