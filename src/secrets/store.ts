// The primary's cache of resolved secret references. `apply()` takes the providers and
// references of a config and resolves what is new (all or nothing, so a refused config
// leaves the running state untouched). Each provider then gets one timer that re-reads
// all of its references every `refresh_interval` (jittered), so N references cost one
// wake-up, not N. A changed value is announced once per round ('change' / onChange) so
// the primary builds one snapshot; a failed read keeps the last good value, marks the
// reference stale and logs one warning when its failure streak starts. Values are never
// logged or put in events: only reference texts.
import { EventEmitter } from 'node:events';
import { statSync } from 'node:fs';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { SecretError, type ErrorCode } from '../errors';
import { createProvider, type ProviderConfig, type ProviderContext } from './providers';
import { parseValue, type SecretRef } from './reference';
import { resolveRef, type LocalSecrets, type SecretProvider } from './resolve';

export interface StoreLogger {
  warn(obj: object, msg: string): void;
  info?(obj: object, msg: string): void;
}

export interface StaleEntry {
  reference: string;
  /** Provider id, or "$file". */
  provider: string;
  /** ISO time of the first failure of the streak. */
  since: string;
  code: ErrorCode;
  /** The SecretError message: reference, provider, status; never a value. */
  error: string;
}

export interface SecretChange {
  provider: string;
  references: string[];
}

export interface RefreshReport {
  provider: string;
  references: number;
  changed: number;
  failed: number;
}

export interface SecretStoreEvents {
  /** Values changed at the source; read them with get()/values(). */
  change: [SecretChange];
  /** A refresh round finished (tests and metrics wait on this). */
  refreshed: [RefreshReport];
  /** References whose failure streak started this round. */
  stale: [StaleEntry[]];
  /** References readable again after a failure streak. */
  recovered: [string[]];
}

export interface SecretStoreOptions extends Partial<ProviderContext> {
  logger: StoreLogger;
  onChange?: (change: SecretChange) => void;
  /** Re-read interval of `$file://` references; 0: never. `$env://` is never re-read. */
  fileRefreshInterval?: number;
  /** ± fraction of the interval, so providers polled together drift apart. */
  jitter?: number;
  /** Secrets (paths / secret ids) read in parallel per provider. */
  concurrency?: number;
  /** `$secret://local/<id>` values (the config store's built-in secrets); settable later with setLocal(). */
  local?: LocalSecrets;
  /** Make a provider from its config; tests may wrap it. */
  createProvider?: (cfg: ProviderConfig, ctx: ProviderContext) => Promise<SecretProvider>;
}

export const STORE_DEFAULTS = {
  fileRefreshInterval: 60_000, // 60 seconds
  jitter: 0.1, // ±10 %
  concurrency: 8,
} as const;

export interface StorePlan {
  providers: readonly ProviderConfig[];
  /** Reference texts (`$env://…`, `$file://…`, `$secret://…`) the config uses. */
  references: Iterable<string>;
  /** Largest `$file://` value, bytes (config `file_max_size`). */
  fileMaxSize?: number;
  /** Background re-read interval of `$file://` values, ms (config `file_refresh_interval`). */
  fileRefreshInterval?: number;
  /**
   * Which local (`$file`, `$env`) references already held to read again; absent: all. The
   * primary passes the files a watcher named, so one changed file among 10k is one read.
   */
  reread?: (ref: SecretRef) => boolean;
  /** `$secret://local/<id>` values for this apply only (a config store checking a changed secret). */
  local?: LocalSecrets;
}

/** On failure, `partial` holds what did resolve: the config check still validates those objects. */
export type ApplyResult =
  | { ok: true; values: ReadonlyMap<string, string> }
  | { ok: false; errors: SecretError[]; partial: ReadonlyMap<string, string> };

const FILE_GROUP = '$file';

interface Entry {
  ref: SecretRef;
  /** Refresh group: the provider id, "$file", or null (never re-read). */
  group: string | null;
  value: string;
  failing?: { since: number; code: ErrorCode; error: string };
  /** `$file`: the file's stat when a refresh round read `value`; a round re-reads only a file whose stat changed. */
  stat?: string;
}

/**
 * A refresh round gives the event loop back this often, ms. Reads are synchronous: at 100k
 * `$file://` values one round held the primary's loop for 0.8-9 s (profiled: a rotation's
 * file event waited for it, then found the round had already announced the change).
 */
const ROUND_SLICE_MS = 4;

interface Held {
  key: string;
  cfg: ProviderConfig;
  instance: SecretProvider;
}

interface Group {
  intervalMs: number;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
}

export class SecretStore extends EventEmitter<SecretStoreEvents> {
  private readonly ctx: ProviderContext;
  private readonly opts: SecretStoreOptions;
  private entries = new Map<string, Entry>();
  private providers = new Map<string, Held>();
  private readonly groups = new Map<string, Group>();
  private queue: Promise<unknown> = Promise.resolve();
  private closed = false;
  private fileMaxSize: number | undefined;
  private fileRefreshInterval: number | undefined;
  private local: LocalSecrets | undefined;

  constructor(opts: SecretStoreOptions) {
    super();
    this.opts = opts;
    this.ctx = { baseDir: opts.baseDir ?? process.cwd(), env: opts.env ?? process.env };
    this.local = opts.local;
  }

  /** The built-in secret store, once the config store is open. */
  setLocal(local: LocalSecrets | undefined): void {
    this.local = local;
  }

  /** Adopt the providers and references of a config. Serialized; all or nothing. */
  apply(plan: StorePlan): Promise<ApplyResult> {
    const run = this.queue.then(() => this.doApply(plan));
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * Read these held local references (`$file`, `$env`) again, all or nothing, without
   * walking every reference of the config as apply() does: a file event among 10k objects
   * costs its own read (issue 13). Undefined when one is not held or not local: the caller
   * falls back to apply(). A failed read leaves the store as it was.
   */
  reread(texts: readonly string[]): Promise<ApplyResult | undefined> {
    const run = this.queue.then(async (): Promise<ApplyResult | undefined> => {
      const held = texts.map((t) => this.entries.get(t));
      if (held.some((e) => e === undefined || (e.ref.kind !== 'file' && e.ref.kind !== 'env'))) return undefined;
      const ctx = { ...this.ctx, providers: new Map(), ...(this.fileMaxSize ? { fileMaxSize: this.fileMaxSize } : {}) };
      const errors: SecretError[] = [];
      const got = new Map<string, string>();
      await Promise.all(
        held.map(async (e) => {
          try {
            got.set(e!.ref.text, await resolveRef(e!.ref, ctx));
          } catch (err) {
            errors.push(asSecretError(err, e!.ref.text));
          }
        }),
      );
      if (errors.length) return { ok: false, errors, partial: got };
      for (const e of held) {
        this.entries.set(e!.ref.text, { ref: e!.ref, group: e!.group, value: got.get(e!.ref.text)! });
      }
      return { ok: true, values: got };
    });
    this.queue = run.catch(() => undefined);
    return run;
  }

  get(reference: string): string | undefined {
    return this.entries.get(reference)?.value;
  }

  /** Reference text → value, for building a snapshot. */
  values(): ReadonlyMap<string, string> {
    return new Map([...this.entries].map(([k, e]) => [k, e.value]));
  }

  stale(): StaleEntry[] {
    const out: StaleEntry[] = [];
    for (const [reference, e] of this.entries) {
      if (e.failing) {
        out.push({
          reference,
          provider: e.group ?? '$env',
          since: new Date(e.failing.since).toISOString(),
          code: e.failing.code,
          error: e.failing.error,
        });
      }
    }
    return out;
  }

  /** The live provider object (e.g. to listen to a VaultProvider's token events). */
  provider(id: string): SecretProvider | undefined {
    return this.providers.get(id)?.instance;
  }

  /** Re-read now: one provider (id or "$file") or all; joins a round already running. */
  async refresh(group?: string): Promise<void> {
    const ids = group === undefined ? [...this.groups.keys()] : [group];
    await Promise.all(ids.map((id) => this.round(id)));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const g of this.groups.values()) clearTimeout(g.timer);
    await Promise.allSettled([...this.groups.values()].map((g) => g.running));
    this.groups.clear();
    await Promise.allSettled([...this.providers.values()].map((p) => p.instance.close()));
    this.providers.clear();
  }

  private async doApply(plan: StorePlan): Promise<ApplyResult> {
    if (this.closed) throw new Error('SecretStore is closed');
    const errors: SecretError[] = [];
    const make = this.opts.createProvider ?? createProvider;

    const next = new Map<string, Held>();
    const created: Held[] = [];
    for (const cfg of plan.providers) {
      if (next.has(cfg.id)) {
        errors.push(
          new SecretError(
            'TLSGATE_E_DUPLICATE_ID',
            `secret_providers[${cfg.id}]`,
            `secret_providers: two providers have id "${cfg.id}"`,
          ),
        );
        continue;
      }
      const key = JSON.stringify(cfg);
      const old = this.providers.get(cfg.id);
      if (old && old.key === key) {
        next.set(cfg.id, old);
        continue;
      }
      try {
        const held = { key, cfg, instance: await make(cfg, this.ctx) };
        next.set(cfg.id, held);
        created.push(held);
      } catch (err) {
        errors.push(asSecretError(err, `secret_providers[${cfg.id}]`));
      }
    }

    const nextEntries = new Map<string, Entry>();
    const toFetch: SecretRef[] = [];
    for (const text of new Set(plan.references)) {
      const parsed = parseValue(text, plan.providers);
      if (!parsed.ok || !parsed.ref) {
        const code = parsed.ok ? 'TLSGATE_E_SECRET_REF' : (parsed.code ?? 'TLSGATE_E_SECRET_REF');
        errors.push(new SecretError(code, text, parsed.ok ? `"${text}" is not a reference` : parsed.message));
        continue;
      }
      const ref = parsed.ref;
      const old = this.entries.get(text);
      // Local references are cheap: re-read on every apply, so a reload sees a rewritten file.
      // A secret manager is asked again only when its provider is new or was changed.
      // A short reference whose default moved to another provider is read again.
      // A built-in secret (an in-memory map, decrypted once per etcd revision) is read on every apply.
      const held = ref.kind === 'vault' || ref.kind === 'aws' ? this.providers.get(ref.provider) : undefined;
      const reused =
        ref.kind === 'vault' || ref.kind === 'aws'
          ? old?.ref.kind === ref.kind && old.ref.provider === ref.provider &&
            held !== undefined && held === next.get(ref.provider)
          : ref.kind !== 'local' && plan.reread !== undefined && !plan.reread(ref);
      if (old && reused) nextEntries.set(text, old);
      else toFetch.push(ref);
    }

    const providers = new Map([...next].map(([id, h]) => [id, h.instance]));
    const fileMaxSize = plan.fileMaxSize ?? this.fileMaxSize;
    const local = plan.local ?? this.local;
    const ctx = { ...this.ctx, providers, ...(fileMaxSize ? { fileMaxSize } : {}), ...(local ? { local } : {}) };
    await eachLimited(groupBySource(toFetch), this.opts.concurrency ?? STORE_DEFAULTS.concurrency, async (refs) => {
      await Promise.all(
        refs.map(async (ref) => {
          try {
            const value = await resolveRef(ref, ctx);
            nextEntries.set(ref.text, { ref, group: groupOf(ref), value });
          } catch (err) {
            errors.push(asSecretError(err, ref.text));
          }
        }),
      );
    });

    if (errors.length > 0) {
      await Promise.allSettled(created.map((h) => h.instance.close()));
      return { ok: false, errors, partial: new Map([...nextEntries].map(([text, e]) => [text, e.value])) };
    }

    const retired = [...this.providers.values()].filter((h) => next.get(h.cfg.id) !== h);
    this.entries = nextEntries;
    this.providers = next;
    this.fileMaxSize = fileMaxSize;
    this.fileRefreshInterval = plan.fileRefreshInterval ?? this.fileRefreshInterval;
    this.reschedule(retired.map((h) => h.cfg.id));
    await Promise.allSettled(retired.map((h) => h.instance.close()));
    return { ok: true, values: this.values() };
  }

  /** One timer per group that has references; a replaced provider restarts its timer. */
  private reschedule(replaced: string[]): void {
    const wanted = new Map<string, number>();
    for (const e of this.entries.values()) {
      if (e.group === null || wanted.has(e.group)) continue;
      const fileMs = this.fileRefreshInterval ?? this.opts.fileRefreshInterval ?? STORE_DEFAULTS.fileRefreshInterval;
      const ms = e.group === FILE_GROUP ? fileMs : this.providers.get(e.group)!.cfg.refresh_interval;
      if (ms > 0) wanted.set(e.group, ms);
    }
    for (const [id, g] of this.groups) {
      if (!wanted.has(id) || wanted.get(id) !== g.intervalMs || replaced.includes(id)) {
        clearTimeout(g.timer);
        this.groups.delete(id);
      }
    }
    for (const [id, ms] of wanted) {
      if (this.groups.has(id)) continue;
      const g: Group = { intervalMs: ms };
      this.groups.set(id, g);
      this.arm(id, g);
    }
  }

  private arm(id: string, g: Group): void {
    if (this.closed || this.groups.get(id) !== g) return;
    const jitter = this.opts.jitter ?? STORE_DEFAULTS.jitter;
    const delay = Math.max(1, Math.round(g.intervalMs * (1 + jitter * (2 * Math.random() - 1))));
    clearTimeout(g.timer);
    g.timer = setTimeout(() => {
      void this.round(id).finally(() => this.arm(id, g));
    }, delay);
    g.timer.unref();
  }

  private round(id: string): Promise<void> {
    const g = this.groups.get(id);
    if (!g) return Promise.resolve();
    g.running ??= this.doRound(id, g).finally(() => {
      g.running = undefined;
    });
    return g.running;
  }

  private async doRound(id: string, g: Group): Promise<void> {
    const targets = new Map([...this.entries.values()].filter((e) => e.group === id).map((e) => [e.ref, e]));
    const providers = new Map([...this.providers].map(([pid, h]) => [pid, h.instance]));
    const results = new Map<Entry, { value: string } | { error: SecretError }>();
    const stats = new Map<Entry, string>();
    let sliceAt = performance.now();
    await eachLimited(
      groupBySource([...targets.keys()]),
      this.opts.concurrency ?? STORE_DEFAULTS.concurrency,
      async (refs) => {
        await Promise.all(
          refs.map(async (ref) => {
            const entry = targets.get(ref)!;
            if (performance.now() - sliceAt >= ROUND_SLICE_MS) {
              await new Promise((r) => setImmediate(r));
              sliceAt = performance.now();
            }
            if (ref.kind === 'file') {
              // Unchanged since the last read (same inode, size, mtime, ctime): no read, no
              // new string (100k values re-read every minute were ~100 MB of garbage).
              const stat = fileStat(ref.path, this.ctx.baseDir);
              if (stat !== undefined && stat === entry.stat && !entry.failing) {
                results.set(entry, { value: entry.value });
                return;
              }
              if (stat !== undefined) stats.set(entry, stat);
            }
            try {
              const ctx = { ...this.ctx, providers, ...(this.fileMaxSize ? { fileMaxSize: this.fileMaxSize } : {}) };
              results.set(entry, { value: await resolveRef(ref, ctx) });
            } catch (err) {
              results.set(entry, { error: asSecretError(err, ref.text) });
            }
          }),
        );
      },
    );
    // An apply() during the round replaced this group or these entries: drop the results.
    if (this.closed || this.groups.get(id) !== g) return;

    const changed: string[] = [];
    const recovered: string[] = [];
    const started: StaleEntry[] = [];
    const now = Date.now();
    for (const [entry, r] of results) {
      if (this.entries.get(entry.ref.text) !== entry) continue;
      if ('value' in r) {
        const stat = stats.get(entry);
        if (stat !== undefined) entry.stat = stat;
        if (r.value !== entry.value) {
          entry.value = r.value;
          changed.push(entry.ref.text);
        }
        if (entry.failing) {
          delete entry.failing;
          recovered.push(entry.ref.text);
        }
      } else if (entry.failing) {
        entry.failing = { ...entry.failing, code: r.error.code, error: r.error.message };
      } else {
        entry.failing = { since: now, code: r.error.code, error: r.error.message };
        started.push({
          reference: entry.ref.text,
          provider: id,
          since: new Date(now).toISOString(),
          code: r.error.code,
          error: r.error.message,
        });
      }
    }
    const failed = [...results.values()].filter((r) => 'error' in r).length;

    if (started.length > 0) {
      this.opts.logger.warn(
        {
          provider: id,
          stale: started.length,
          references: started.slice(0, 10).map((s) => s.reference),
          code: started[0]!.code,
          error: started[0]!.error,
        },
        'secret refresh failed; serving the last good value until the provider answers again',
      );
      this.emit('stale', started);
    }
    if (recovered.length > 0) {
      this.opts.logger.info?.(
        { provider: id, recovered: recovered.length, references: recovered.slice(0, 10) },
        'secret refresh recovered',
      );
      this.emit('recovered', recovered);
    }
    if (changed.length > 0) {
      const change = { provider: id, references: changed };
      this.opts.onChange?.(change);
      this.emit('change', change);
    }
    this.emit('refreshed', { provider: id, references: results.size, changed: changed.length, failed });
  }
}

/** What a refresh round compares to skip reading a file again; undefined when it cannot be stat'ed. */
function fileStat(path: string, baseDir: string): string | undefined {
  try {
    const st = statSync(isAbsolute(path) ? path : resolvePath(baseDir, path));
    return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
  } catch {
    return undefined;
  }
}

function groupOf(ref: SecretRef): string | null {
  // A built-in secret changes through the config store's watch, never by polling.
  if (ref.kind === 'env' || ref.kind === 'local') return null;
  if (ref.kind === 'file') return FILE_GROUP;
  return ref.provider;
}

/** References reading the same secret go together, so the provider reads it once. */
function groupBySource(refs: SecretRef[]): SecretRef[][] {
  const by = new Map<string, SecretRef[]>();
  for (const ref of refs) {
    const key =
      ref.kind === 'vault'
        ? `vault/${ref.provider}/${ref.path}`
        : ref.kind === 'aws'
          ? `aws/${ref.provider}/${ref.secretId}`
          : ref.kind === 'file'
            ? `file/${ref.path}`
            : ref.kind === 'local'
              ? `local/${ref.id}`
              : `env/${ref.name}`;
    const list = by.get(key);
    if (list) list.push(ref);
    else by.set(key, [ref]);
  }
  return [...by.values()];
}

async function eachLimited<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(Math.max(1, limit), items.length) }, worker));
}

function asSecretError(err: unknown, reference: string): SecretError {
  if (err instanceof SecretError) return err;
  const e = err as { code?: unknown; name?: unknown };
  const detail = typeof e?.code === 'string' ? e.code : typeof e?.name === 'string' ? e.name : 'error';
  // Not the original message: a library error could quote what it was parsing.
  return new SecretError('TLSGATE_E_SECRET_UNRESOLVED', reference, `${reference}: cannot be resolved (${detail})`);
}
