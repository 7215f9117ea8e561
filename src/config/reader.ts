// Records problems with their path instead of throwing, so a config is checked whole and
// every problem is reported at once. Field checks are in decl.ts (the one declaration).
import type { ConfigIssue, ErrorCode } from '../errors';
import { nearest } from './formats';

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
}

const SIZE_UNIT: Record<string, number> = {
  '': 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
};

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
