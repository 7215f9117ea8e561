// Certificate verdicts kept across restarts, so a restart with 10k unchanged certificates
// skips their validation (≈ 0.65 ms of CPU each: 6.5 s at 10k objects, measured).
//
// Key: sha256 of the validator version, the object's type, warn_days, every certificate and
// key PEM and the client CA, in one hash: a changed byte in any file is another key, and
// the hash of a key is never stored apart from its certificate's. Value: only a verdict
// without any issue, with the facts the admin API shows (subjects, serials, dates, SANs,
// fingerprints) and the time window in which that verdict stays the same (every date valid,
// no expiry warning yet); no PEM, no key, no reference. Outside its window an entry is not
// used. The SNI coverage check is not cached (it depends on the object's SNIs, not the
// files): it is done again from the cached SANs, so an `ssl_dirs` scan (no SNIs yet) and
// the object made from the same file share one entry: each file is validated once.
//
// Where: `validation.json` in `TLSGATE_CACHE_DIR`, else `$XDG_CACHE_HOME/tlsgate`, else
// `~/.cache/tlsgate`; `TLSGATE_CACHE_DIR=off` turns it off. One file per user, not per config:
// a verdict depends on the bytes only, so every config (and a config moved or copied) shares
// it, and no file is left behind per config path; it holds at most MAX_ENTRIES verdicts,
// the least recently used dropped first. Two gateways writing it: the last write wins (a
// cache: the other's new verdicts are made again on its next start). The directory is made
// 0700 and the file 0600; a file not owned by this user, writable by others, or that does
// not parse as this format is ignored with a warning (a forged "valid" verdict could
// otherwise let a bad certificate reach the workers). Written by rename, so a reader never
// sees half a file.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { coverageIssues, dnsOf, type CertInfo, type ValidateInput, type ValidateOutput } from './validate';

/** Bump when validateSsl's checks change: every entry written by another version is ignored. */
export const VALIDATOR_VERSION = 'tlsgate-validate-1';
const FORMAT = 1;
const DAY = 86_400_000;
/** Written this long after the last new verdict: one write for a start or a burst of rotations. */
const SAVE_AFTER_MS = 1000;
/** Entries kept at most: a 100k-object config and then some (≈ 570 bytes each in the file). */
const MAX_ENTRIES = 150_000;

interface Entry {
  certs: CertInfo[];
  clientCa?: ValidateOutput['clientCa'];
  notAfter: number;
  /** null: unbounded (JSON has no Infinity). */
  from: number | null;
  until: number | null;
}

interface FileShape {
  format: number;
  validator: string;
  entries: Record<string, Entry>;
}

export interface CacheLog {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

/** The cache file, or undefined when turned off. */
export function validationCacheFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const set = env.TLSGATE_CACHE_DIR;
  if (set === 'off') return undefined;
  const dir = set || join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'tlsgate');
  return join(dir, 'validation.json');
}

export function cacheKey(i: ValidateInput): string {
  const h = createHash('sha256').update(`${VALIDATOR_VERSION}\x1f${i.type}\x1f${i.warnDays}\x1f`);
  h.update(i.clientCa?.pem ?? '\0').update('\x1f');
  for (const p of i.pairs) h.update(p.cert).update('\x1f').update(p.key).update('\x1f');
  return h.digest('hex');
}

export class ValidationCache {
  private entries = new Map<string, Entry>();
  private timer: NodeJS.Timeout | undefined;
  private dirty = false;
  hits = 0;
  misses = 0;

  /** `file` undefined: kept in memory only (an `ssl_dirs` file is still validated once, not twice). */
  constructor(
    private readonly file: string | undefined,
    private readonly log: CacheLog | undefined,
  ) {}

  /** Reads the file; a missing one is an empty cache, anything wrong with it a warning and an empty cache. */
  load(): void {
    if (this.file === undefined) return;
    let text: string;
    try {
      const fd = openSync(this.file, 'r');
      try {
        const st = fstatSync(fd);
        const uid = process.getuid?.();
        if (!st.isFile() || (uid !== undefined && st.uid !== uid) || (st.mode & 0o022) !== 0) {
          this.log?.warn({ file: this.file }, 'validation cache not owned by this user or writable by others: ignored');
          return;
        }
        text = readFileSync(fd, 'utf8');
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        const code = (err as NodeJS.ErrnoException).code;
        this.log?.warn({ file: this.file, code }, 'validation cache unreadable: ignored');
      }
      return;
    }
    try {
      const data = JSON.parse(text) as FileShape;
      if (data?.format !== FORMAT || typeof data.entries !== 'object' || data.entries === null) {
        throw new Error('not a validation cache');
      }
      if (data.validator !== VALIDATOR_VERSION) return; // another version's verdicts: start empty
      for (const [k, e] of Object.entries(data.entries)) {
        if (/^[0-9a-f]{64}$/.test(k) && wellFormed(e)) this.entries.set(k, e);
      }
    } catch {
      this.log?.warn({ file: this.file }, 'validation cache corrupted: ignored (it is rewritten)');
      this.entries.clear();
    }
  }

  /** The cached verdict for this input at its `now`, checked against its SNIs; undefined: validate it. */
  get(key: string, input: ValidateInput): ValidateOutput | undefined {
    const e = this.entries.get(key);
    if (!e || (e.from !== null && input.now < e.from) || (e.until !== null && input.now >= e.until)) {
      this.misses++;
      return undefined;
    }
    // Most recently used last: the first entries are the ones dropped when over MAX_ENTRIES.
    this.entries.delete(key);
    this.entries.set(key, e);
    this.hits++;
    const issues =
      input.type === 'server'
        ? input.pairs.flatMap((p, j) => coverageIssues(input, p.certPath, dnsOf(e.certs[j]?.sans ?? [])))
        : [];
    const certs = e.certs.map((c) => ({ ...c, days_left: Math.floor((Date.parse(c.not_after) - input.now) / DAY) }));
    return { issues, certs, ...(e.clientCa ? { clientCa: e.clientCa } : {}), notAfter: e.notAfter };
  }

  /** Keeps a verdict that had no issue (and its window); others are never cached. */
  put(key: string, out: ValidateOutput): void {
    if (out.issues.length > 0 || !out.stable) return;
    const fin = (x: number): number | null => (Number.isFinite(x) ? x : null);
    this.entries.set(key, {
      certs: out.certs,
      ...(out.clientCa ? { clientCa: out.clientCa } : {}),
      notAfter: out.notAfter,
      from: fin(out.stable.from),
      until: fin(out.stable.until),
    });
    if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    if (this.file === undefined) return;
    this.dirty = true;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.save(), SAVE_AFTER_MS);
    this.timer.unref();
  }

  save(): void {
    clearTimeout(this.timer);
    if (!this.dirty || this.file === undefined) return;
    this.dirty = false;
    const data: FileShape = { format: FORMAT, validator: VALIDATOR_VERSION, entries: Object.fromEntries(this.entries) };
    const tmp = `${this.file}.${process.pid}.tmp`;
    try {
      mkdirSync(join(this.file, '..'), { recursive: true, mode: 0o700 });
      writeFileSync(tmp, JSON.stringify(data), { mode: 0o600 });
      renameSync(tmp, this.file);
      this.log?.info({ file: this.file, entries: this.entries.size }, 'validation cache written');
    } catch (err) {
      this.log?.warn({ file: this.file, code: (err as NodeJS.ErrnoException).code }, 'validation cache not written');
    }
  }
}

function wellFormed(e: unknown): e is Entry {
  if (typeof e !== 'object' || e === null) return false;
  const x = e as Entry;
  const time = (v: unknown): boolean => v === null || typeof v === 'number';
  const cert = (c: CertInfo): boolean =>
    typeof c === 'object' && c !== null && typeof c.not_after === 'string' && Array.isArray(c.sans);
  const times = typeof x.notAfter === 'number' && time(x.from) && time(x.until);
  return times && Array.isArray(x.certs) && x.certs.every(cert);
}
