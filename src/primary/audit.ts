// Audit log: one JSON line per SSL object or secret provider added, changed or removed,
// with time, actor and source, and one per admin API write (who, what, content hashes).
// Never a value: reference texts, fingerprints and hashes only.
import { createHash } from 'node:crypto';
import { appendFile, mkdir } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { dirname, isAbsolute, resolve } from 'node:path';
import { callerOf, type Principal } from '../admin/access';
import type { Logger } from '../log';
import type { ResolvedConfig } from '../config/resolve';
import type { SslDetails } from '../snapshot/compile';
import type { SslSnapshot } from '../snapshot/types';

export interface AuditState {
  resolved: ResolvedConfig;
  details: SslDetails[];
  ssls: SslSnapshot[];
}

export interface AuditEntry {
  time: string;
  actor: string;
  source: string;
  object: 'ssl' | 'secret_provider';
  id: string;
  action: 'added' | 'changed' | 'removed' | 'mtls_lost';
  fields?: string[];
  /** mtls_lost: the name that lost client verification, and the SSL object now serving it. */
  sni?: string;
  served_by?: string;
  fingerprint_sha256?: string | null;
  version: number;
}

export class AuditLog {
  private queue: Promise<void> = Promise.resolve();

  constructor(
    private readonly log: Logger,
    private path: string | undefined,
  ) {}

  setPath(path: string | undefined, baseDir: string): void {
    this.path = path === undefined ? undefined : isAbsolute(path) ? path : resolve(baseDir, path);
  }

  /** Diff two states by id and append one line per difference. */
  record(prev: AuditState | undefined, next: AuditState, source: string, actor: string, version: number): AuditEntry[] {
    const time = new Date().toISOString();
    const entries: AuditEntry[] = [];
    const push = (e: Omit<AuditEntry, 'time' | 'actor' | 'source' | 'version'>): void =>
      void entries.push({ time, actor, source, version, ...e });

    const sslMap = (
      s: AuditState | undefined,
    ): Map<string, { cfg: string; hash: string; fp: string | null; fields: Record<string, string> }> =>
      new Map(
        (s?.resolved.config.ssls ?? []).map((c, i) => {
          const { cert, key, certs, keys, client, ...rest } = c;
          const fields: Record<string, string> = {
            cert,
            key,
            certs: certs.join(','),
            keys: keys.join(','),
            client: JSON.stringify(client ?? null),
            ...Object.fromEntries(Object.entries(rest).map(([k, v]) => [k, JSON.stringify(v)])),
          };
          return [
            c.id,
            {
              cfg: JSON.stringify(fields),
              hash: s!.ssls[i]?.hash ?? '',
              fp: s!.details[i]?.certs[0]?.fingerprint_sha256 ?? null,
              fields,
            },
          ];
        }),
      );
    if (!prev) {
      // The start: every object is added, nothing to compare (the field maps cost ~2.5 s at 100k, profiled).
      next.resolved.config.ssls.forEach((c, i) => {
        const fp = next.details[i]?.certs[0]?.fingerprint_sha256 ?? null;
        push({ object: 'ssl', id: c.id, action: 'added', fingerprint_sha256: fp });
      });
    }
    const before = sslMap(prev);
    const after = prev ? sslMap(next) : new Map<string, never>();
    for (const [id, a] of after) {
      const b = before.get(id);
      if (!b) push({ object: 'ssl', id, action: 'added', fingerprint_sha256: a.fp });
      else if (b.cfg !== a.cfg || b.hash !== a.hash) {
        const fields = Object.keys(a.fields).filter((k) => a.fields[k] !== b.fields[k]);
        // Same references, new material: the value changed at its source (rotation).
        push({
          object: 'ssl',
          id,
          action: 'changed',
          fields: fields.length ? fields : ['material'],
          fingerprint_sha256: a.fp,
        });
      }
    }
    for (const id of before.keys()) if (!after.has(id)) push({ object: 'ssl', id, action: 'removed' });

    const provMap = (s: AuditState | undefined): Map<string, string> =>
      new Map((s?.resolved.config.secret_providers ?? []).map((p) => [p.id, JSON.stringify(p)]));
    const pb = provMap(prev);
    const pa = provMap(next);
    for (const [id, cfg] of pa) {
      const b = pb.get(id);
      if (b === undefined) push({ object: 'secret_provider', id, action: 'added' });
      else if (b !== cfg) {
        const ob = JSON.parse(b) as Record<string, unknown>;
        const oa = JSON.parse(cfg) as Record<string, unknown>;
        push({
          object: 'secret_provider',
          id,
          action: 'changed',
          fields: Object.keys({ ...ob, ...oa }).filter((k) => JSON.stringify(ob[k]) !== JSON.stringify(oa[k])),
        });
      }
    }
    for (const id of pb.keys()) if (!pa.has(id)) push({ object: 'secret_provider', id, action: 'removed' });

    if (entries.length && this.path) this.append(entries);
    return entries;
  }

  /**
   * One line per name a reload leaves without client certificate verification (an mTLS
   * object disabled or removed while a wildcard or default_ssl still answers for it).
   */
  recordMtlsLoss(
    lost: ReadonlyArray<{ sni: string; from: string; to: string }>,
    source: string,
    actor: string,
    version: number,
  ): AuditEntry[] {
    const time = new Date().toISOString();
    const entries = lost.map((l): AuditEntry => {
      const what = { object: 'ssl' as const, id: l.from, action: 'mtls_lost' as const, sni: l.sni, served_by: l.to };
      return { time, actor, source, version, ...what };
    });
    if (entries.length && this.path) this.append(entries);
    return entries;
  }

  /** One admin API write (see auditWrite). */
  write(e: WriteEntry): void {
    this.log.info({ audit: e }, 'admin write');
    if (this.path) this.append([e]);
  }

  private append(entries: Array<AuditEntry | WriteEntry>): void {
    const path = this.path!;
    const text = entries.map((e) => JSON.stringify(e)).join('\n') + '\n';
    this.queue = this.queue
      .then(() => mkdir(dirname(path), { recursive: true }))
      .then(() => appendFile(path, text, { mode: 0o600 }))
      .catch((err: Error) => this.log.error({ err, path }, 'cannot write the audit log'));
  }

  flush(): Promise<void> {
    return this.queue;
  }
}

/** One admin API write: who (key id and role), what (method, collection, id), and content hashes. */
export interface WriteEntry {
  time: string;
  action: 'write';
  /** `admin-api:<key id>`, as in the entries a reload it caused records. */
  actor: string;
  key_id: string;
  role: string;
  source: 'admin-api';
  method: string;
  /** `ssls`, `upstreams`, `routes`, `secret_providers`, `secrets`, or an action such as `reload`. */
  object: string;
  id?: string;
  /** HTTP status answered: 2xx applied, 4xx refused (403: by role). */
  status: number;
  /** `sha256:<hex>` of the stored content before / after; null when there was none. */
  before: string | null;
  after: string | null;
  version?: number;
  revision?: number;
  error?: string;
}

export interface WriteAudit {
  audit: AuditLog;
  /** The admin request (its authenticated key is the actor), or the caller itself. */
  req?: IncomingMessage;
  caller?: Principal | null;
  method: string;
  collection: string;
  id?: string;
  status: number;
  /**
   * Content before / after the write (undefined: none; a DELETE has no after). Only
   * `contentHash` of it is written. A secret's plaintext must not be passed (a hash of a
   * guessable value names it): pass its stored, encrypted form.
   */
  before?: unknown;
  after?: unknown;
  /** Or the hashes themselves, when the content is not at hand (a reload: the config's hash). */
  beforeHash?: string | null;
  afterHash?: string | null;
  version?: number;
  revision?: number;
  /** Error code of a refused write. */
  error?: string;
}

/**
 * Record one admin API write (applied or refused) in the audit log and the log. Call it
 * from every mutating route, after the outcome is known.
 */
export function auditWrite(w: WriteAudit): WriteEntry {
  const who = w.caller ?? (w.req ? callerOf(w.req) : undefined);
  const hash = (h: string | null | undefined, v: unknown): string | null =>
    h !== undefined ? h : v === undefined ? null : contentHash(v);
  const e: WriteEntry = {
    time: new Date().toISOString(),
    action: 'write',
    actor: `admin-api:${who?.id ?? 'anonymous'}`,
    key_id: who?.id ?? 'anonymous',
    role: who?.role ?? 'none',
    source: 'admin-api',
    method: w.method,
    object: w.collection,
    ...(w.id !== undefined ? { id: w.id } : {}),
    status: w.status,
    before: hash(w.beforeHash, w.before),
    after: hash(w.afterHash, w.after),
    ...(w.version !== undefined ? { version: w.version } : {}),
    ...(w.revision !== undefined ? { revision: w.revision } : {}),
    ...(w.error !== undefined ? { error: w.error } : {}),
  };
  w.audit.write(e);
  return e;
}

/** `sha256:<hex>` of a value's canonical JSON (keys sorted), so equal content hashes equal. */
export function contentHash(v: unknown): string {
  return `sha256:${createHash('sha256').update(canonical(v)).digest('hex')}`;
}

function canonical(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(o[k])}`).join(',')}}`;
  }
  return JSON.stringify(v) ?? 'null';
}
