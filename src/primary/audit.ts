// Audit log: one JSON line per SSL object or secret provider added, changed or removed,
// with time, actor and source. Never a value: reference texts and fingerprints only.
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname, isAbsolute, resolve } from 'node:path';
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
    const before = sslMap(prev);
    const after = sslMap(next);
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

  private append(entries: AuditEntry[]): void {
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
