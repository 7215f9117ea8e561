// Field readers that record a problem with its path instead of throwing, so a
// config is checked whole and every problem is reported at once.
import type { ConfigIssue, ErrorCode } from '../errors';
import { parseValue } from '../secrets/reference';
import { parseDuration } from './duration';
import { bindHost, nearest } from './formats';
import type { HostPort } from './types';

export type Obj = Record<string, unknown>;

export class Reader {
  readonly issues: ConfigIssue[] = [];

  error(path: string, message: string, code: ErrorCode = 'TLSGATE_E_CONFIG_INVALID'): void {
    this.issues.push({ path, message, code, severity: 'error' });
  }
  warn(path: string, message: string, code: ErrorCode = 'TLSGATE_E_CONFIG_INVALID'): void {
    this.issues.push({ path, message, code, severity: 'warning' });
  }

  /** `keys`: the fields the mapping takes, shown when the value is not a mapping. */
  obj(v: unknown, path: string, keys?: readonly string[]): Obj | undefined {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Obj;
    this.error(path, `must be a mapping${keys ? ` {${keys.join(', ')}}` : ''}, got ${describe(v)}`);
    return undefined;
  }

  /** Reports keys the schema does not know: a typo must not be silently ignored. */
  known(o: Obj, path: string, keys: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (keys.includes(k)) continue;
      const near = nearest(k, keys);
      const hint = near ? `; did you mean "${near}"?` : '';
      this.error(join(path, k), `unknown field${hint} (expected one of: ${keys.join(', ')})`);
    }
  }

  /** `shape` names what a list holds (`{host, port, weight}`, `host names`), for a value of the wrong shape. */
  list(o: Obj, key: string, path: string, required = false, shape?: string): unknown[] | undefined {
    const v = o[key];
    if (v === undefined || v === null) {
      if (required) this.error(join(path, key), shape ? `is required: a list of ${shape}` : 'is required');
      return undefined;
    }
    if (Array.isArray(v)) return v;
    this.error(join(path, key), `must be a list${shape ? ` of ${shape}` : ''}, got ${describe(v)}`);
    return undefined;
  }

  /** Like obj(), with the expected keys in the message: `must be a mapping {host, port, weight}`. */
  shaped(v: unknown, path: string, shape: string): Obj | undefined {
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Obj;
    this.error(path, `must be a mapping ${shape}, got ${describe(v)}`);
    return undefined;
  }

  str(o: Obj, key: string, path: string, opts: { required?: boolean; pattern?: RegExp; hint?: string } = {}): string | undefined {
    const v = o[key];
    const p = join(path, key);
    if (v === undefined || v === null) {
      if (opts.required) this.error(p, 'is required');
      return undefined;
    }
    if (typeof v !== 'string' || v.length === 0) {
      this.error(p, `must be a non-empty string, got ${describe(v)}`);
      return undefined;
    }
    if (opts.pattern && !opts.pattern.test(v)) {
      this.error(p, `${JSON.stringify(v)} ${opts.hint ?? `does not match ${opts.pattern}`}`);
      return undefined;
    }
    return v;
  }

  /** A value that may be a literal or a `$env/$file/$secret` reference. Never echoes a literal. */
  secret(o: Obj, key: string, path: string, required = false): string | undefined {
    const v = o[key];
    const p = join(path, key);
    if (v === undefined || v === null) {
      if (required) this.error(p, 'is required');
      return undefined;
    }
    if (typeof v !== 'string' || v.length === 0) {
      this.error(p, `must be a non-empty string (PEM, $env://, $file:// or $secret://), got ${describe(v)}`);
      return undefined;
    }
    const parsed = parseValue(v);
    if (!parsed.ok) {
      this.error(p, parsed.message, 'TLSGATE_E_SECRET_REF');
      return undefined;
    }
    return v;
  }

  secretAt(v: unknown, p: string): string | undefined {
    return this.secret({ v }, 'v', '') === undefined ? (this.relocate(p), undefined) : (v as string);
  }

  /** Moves the last issue (recorded at a placeholder path) to the real one. */
  private relocate(p: string): void {
    const last = this.issues[this.issues.length - 1];
    if (last) last.path = p;
  }

  int(o: Obj, key: string, path: string, opts: { min?: number; max?: number } = {}): number | undefined {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    const p = join(path, key);
    if (typeof v !== 'number' || !Number.isInteger(v)) {
      this.error(p, `must be an integer, got ${describe(v)}`);
      return undefined;
    }
    if ((opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
      this.error(p, `must be between ${opts.min ?? '-∞'} and ${opts.max ?? '∞'}, got ${v}`);
      return undefined;
    }
    return v;
  }

  bool(o: Obj, key: string, path: string): boolean | undefined {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'boolean') return v;
    this.error(join(path, key), `must be true or false, got ${describe(v)}`);
    return undefined;
  }

  oneOf<T extends string>(o: Obj, key: string, path: string, values: readonly T[]): T | undefined {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as T;
    const near = typeof v === 'string' ? nearest(v, values) : undefined;
    const hint = near ? `; did you mean "${near}"?` : '';
    this.error(join(path, key), `must be one of ${values.join(' | ')}, got ${describe(v)}${hint}`);
    return undefined;
  }

  duration(o: Obj, key: string, path: string, opts: { min?: number } = {}): number | undefined {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    const ms = typeof v === 'string' || typeof v === 'number' ? parseDuration(v) : null;
    if (ms === null) this.error(join(path, key), `must be a duration like "500ms", "5s", "2m", got ${describe(v)}`);
    else if (ms > MAX_TIMER_MS) {
      // Node clamps a longer timer to 1 ms (TimeoutOverflowWarning): "30d" would fire at once.
      this.error(join(path, key), `must be at most 24 days (Node timers), got ${describe(v)}`);
      return undefined;
    } else if (opts.min !== undefined && ms < opts.min) {
      this.error(join(path, key), `must be at least ${opts.min} ms, got ${describe(v)}`);
      return undefined;
    }
    return ms ?? undefined;
  }

  /** A byte size: an integer, or "512", "8k", "32KiB", "1m", "1MiB" (binary units). */
  size(o: Obj, key: string, path: string, opts: { min?: number; max?: number } = {}): number | undefined {
    const v = o[key];
    if (v === undefined || v === null) return undefined;
    const n = typeof v === 'number' || typeof v === 'string' ? parseSize(v) : null;
    const p = join(path, key);
    if (n === null) {
      this.error(p, `must be a size in bytes like 8192, "8k", "32KiB" or "1m", got ${describe(v)}`);
      return undefined;
    }
    if ((opts.min !== undefined && n < opts.min) || (opts.max !== undefined && n > opts.max)) {
      this.error(p, `must be between ${opts.min ?? 0} and ${opts.max ?? '∞'} bytes, got ${n}`);
      return undefined;
    }
    return n;
  }

  hostPort(o: Obj, key: string, path: string, required = false): HostPort | undefined {
    const v = this.str(o, key, path, { required });
    if (v === undefined) return undefined;
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(v);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port > 65535 || port < 1) {
      const example = '(e.g. 127.0.0.1:8443 or [::1]:8443), port 1-65535';
      this.error(join(path, key), `${JSON.stringify(v)} must be host:port ${example}`);
      return undefined;
    }
    const host = m[1] ?? m[2]!;
    const bad = bindHost(host);
    if (bad) {
      this.error(join(path, key), bad);
      return undefined;
    }
    return { host, port };
  }
}

const MAX_TIMER_MS = 2 ** 31 - 1;

const SIZE_UNIT: Record<string, number> = { '': 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3 };

/** Bytes, or null when the text is not a non-negative whole size. */
export function parseSize(v: string | number): number | null {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : null;
  const m = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(v);
  const unit = m ? SIZE_UNIT[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) return null;
  const n = Number(m[1]) * unit;
  return Number.isSafeInteger(n) ? n : null;
}

export function join(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return path ? `${path}.${key}` : key;
}

export function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return v.length > 40 ? `a string of ${v.length} characters` : JSON.stringify(v);
  return String(v);
}
