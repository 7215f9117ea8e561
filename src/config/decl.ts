// Field builders for the one config declaration (src/config/declaration.ts). Each field
// carries its check, its default and its documentation; the TypeScript types (Infer),
// `validate`'s field checks (read), the defaults and the README table (rows) all come
// from the same object. Why not TypeBox + ajv: the messages users rely on (did-you-mean,
// expected shape, values quoted as JSON, never a secret echoed) and our value formats
// ("8KiB", "1m30s", "$file://…") would each need a translation layer over ajv's errors
// and coercion; a table of ~15 builders is smaller than that layer.
import type { ErrorCode } from '../errors';
import { parseValue } from '../secrets/reference';
import { parseDuration } from './duration';
import { bindHost, nearest } from './formats';
import { describe, join, parseSize, type Obj, type Reader } from './reader';
import type { HostPort } from './types';

/** A format check: null when valid, else a message (and optionally a stable code). */
export type Format = (v: string) => string | { message: string; code: ErrorCode } | null;

export interface Field<T, Opt extends boolean = boolean> {
  /** README: type or format. */
  readonly type: string;
  /** README: meaning. */
  readonly doc: string;
  /** README: the default as a user writes it ('' when none). */
  readonly defDoc: string;
  readonly required: boolean;
  /** Filled in when the field is absent. */
  readonly fallback?: () => T;
  /** `null` is a value of this field (e.g. `max_body_size: null` = unlimited), not an absent one. */
  readonly nullable?: boolean;
  /** Checks a present value; records problems at `path`; undefined when refused. */
  readonly read: (r: Reader, v: unknown, path: string) => T | undefined;
  /** Sub-fields (mapping) or item (list), for the README table. */
  readonly fields?: Readonly<Record<string, Field<unknown>>>;
  readonly item?: Field<unknown>;
  /** Lists: what they hold, for "must be a list of …" and "is required: a list of …". */
  readonly shape?: string;
  /** Phantom: true when the field may be absent from the checked value. */
  readonly _opt?: Opt;
}

export type Infer<F> = F extends Field<infer T, boolean> ? T : never;
type OptKeys<S> = { [K in keyof S]: S[K] extends Field<unknown, true> ? K : never }[keyof S];
type ReqKeys<S> = Exclude<keyof S, OptKeys<S>>;
type Flat<T> = { [K in keyof T]: T[K] };
export type Shape = Record<string, Field<unknown>>;
export type ObjOf<S> = Flat<{ [K in ReqKeys<S>]: Infer<S[K]> } & { [K in OptKeys<S>]?: Infer<S[K]> }>;

interface Common<T> {
  doc: string;
  required?: boolean;
  default?: T;
  /** README text for the default when it is computed or not obvious from the value. */
  defDoc?: string;
  /** A default computed when needed (e.g. one worker per core). */
  compute?: () => T;
}
type OptOf<O> = O extends { required: true } | { default: unknown } | { compute: unknown } ? false : true;

function field<T, O extends Common<T>>(o: O, type: string, read: Field<T>['read'], extra: Partial<Field<T>> = {}) {
  const d = o.default;
  return {
    type,
    doc: o.doc,
    defDoc: o.defDoc ?? (d === undefined ? '' : showDefault(d)),
    required: o.required === true,
    // Primitives as they are; a list or mapping copied, so no config shares (and mutates) a default.
    ...(d === undefined ? {} : { fallback: typeof d === 'object' && d !== null ? () => structuredClone(d) : () => d }),
    ...(o.compute ? { fallback: o.compute } : {}),
    read,
    ...extra,
  } as Field<T, OptOf<O>>;
}

function showDefault(d: unknown): string {
  if (typeof d === 'string') return d;
  if (Array.isArray(d)) return d.length === 0 ? '[]' : `[${d.join(', ')}]`;
  return JSON.stringify(d);
}

// ---- scalars -------------------------------------------------------------------------

export function int<O extends Common<number> & { min?: number; max?: number }>(o: O) {
  return field<number, O>(o, `integer ${range(o.min, o.max)}`, (r, v, p) => {
    if (typeof v !== 'number' || !Number.isInteger(v)) return void r.error(p, `must be an integer, got ${describe(v)}`);
    if ((o.min !== undefined && v < o.min) || (o.max !== undefined && v > o.max)) {
      return void r.error(p, `must be between ${o.min ?? '-∞'} and ${o.max ?? '∞'}, got ${v}`);
    }
    return v;
  });
}

function range(min?: number, max?: number): string {
  return min === undefined && max === undefined ? '' : `${min ?? ''}–${max ?? ''}`;
}

export function bool<O extends Common<boolean>>(o: O) {
  return field<boolean, O>(o, 'true | false', (r, v, p) =>
    typeof v === 'boolean' ? v : void r.error(p, `must be true or false, got ${describe(v)}`));
}

export function oneOf<const V extends string, O extends Common<V>>(values: readonly V[], o: O) {
  return field<V, O>(o, values.join(' | '), (r, v, p) => {
    if (typeof v === 'string' && (values as readonly string[]).includes(v)) return v as V;
    const near = typeof v === 'string' ? nearest(v, values) : undefined;
    const hint = near ? `; did you mean "${near}"?` : '';
    return void r.error(p, `must be one of ${values.join(' | ')}, got ${describe(v)}${hint}`);
  });
}

type StrOpts = Common<string> & { pattern?: RegExp; hint?: string; format?: Format; type?: string };

export function str<O extends StrOpts>(o: O) {
  return field<string, O>(o, o.type ?? 'string', (r, v, p) => {
    if (typeof v !== 'string' || v.length === 0) {
      return void r.error(p, `must be a non-empty string, got ${describe(v)}`);
    }
    if (o.pattern && !o.pattern.test(v)) {
      return void r.error(p, `${JSON.stringify(v)} ${o.hint ?? `does not match ${o.pattern}`}`);
    }
    return formatted(r, p, v, o.format);
  });
}

export function formatted<T extends string>(r: Reader, p: string, v: T, format?: Format): T | undefined {
  const bad = format?.(v) ?? null;
  if (bad === null) return v;
  if (typeof bad === 'string') r.error(p, bad);
  else r.error(p, bad.message, bad.code);
  return undefined;
}

/** A literal or a `$env://`, `$file://`, `$secret://` reference. A literal is never echoed. */
export function secret<O extends Common<string>>(o: O) {
  return field<string, O>(o, 'secret (PEM, $env://, $file://, $secret://)', (r, v, p) => {
    if (typeof v !== 'string' || v.length === 0) {
      return void r.error(p, `must be a non-empty string (PEM, $env://, $file:// or $secret://), got ${describe(v)}`);
    }
    const parsed = parseValue(v);
    if (!parsed.ok) return void r.error(p, parsed.message, 'TLSGATE_E_SECRET_REF');
    return v;
  });
}

const MAX_TIMER_MS = 2 ** 31 - 1;

function showMs(ms: number): string {
  for (const [unit, n] of [['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= n && ms % n === 0) return `${ms / n}${unit}`;
  }
  return `${ms}ms`;
}

/** Milliseconds from "500ms", "5s", "1m30s" (a bare number is seconds). */
export function duration<O extends Common<number> & { min?: number; max?: number }>(o: O) {
  const atLeast = o.min === undefined ? '' : ` ≥ ${showMs(o.min)}`;
  const lim = o.max === undefined ? atLeast : ` ${showMs(o.min ?? 0)}–${showMs(o.max)}`;
  const f = field<number, O>({ ...o, defDoc: o.defDoc ?? (o.default === undefined ? '' : showMs(o.default)) },
    `duration${lim}`, (r, v, p) => {
      const ms = typeof v === 'string' || typeof v === 'number' ? parseDuration(v) : null;
      if (ms === null) return void r.error(p, `must be a duration like "500ms", "5s", "2m", got ${describe(v)}`);
      // Node clamps a longer timer to 1 ms (TimeoutOverflowWarning): "30d" would fire at once.
      if (ms > MAX_TIMER_MS) return void r.error(p, `must be at most 24 days (Node timers), got ${describe(v)}`);
      if (o.max !== undefined && (ms < (o.min ?? 0) || ms > o.max)) {
        return void r.error(p, `must be between ${showMs(o.min ?? 0)} and ${showMs(o.max)}, got ${ms} ms`);
      }
      if (o.min !== undefined && ms < o.min) return void r.error(p, `must be at least ${o.min} ms, got ${describe(v)}`);
      return ms;
    });
  return f;
}

function showSize(n: number): string {
  for (const [unit, k] of [['MiB', 1024 ** 2], ['KiB', 1024]] as const) {
    if (n >= k && n % k === 0) return `${n / k}${unit}`;
  }
  return String(n);
}

/** Bytes from 8192, "8k", "32KiB", "1m", "1MiB"; with `unlimited`, also null / "unlimited" → null. */
export function size<O extends Common<number> & { min?: number; max?: number }>(o: O) {
  const bounded = o.min !== undefined || o.max !== undefined;
  const lim = bounded ? ` ${showSize(o.min ?? 0)}–${o.max ? showSize(o.max) : ''}` : '';
  return field<number, O>({ ...o, defDoc: o.defDoc ?? (o.default === undefined ? '' : showSize(o.default)) },
    `size${lim}`, (r, v, p) => {
      const n = typeof v === 'number' || typeof v === 'string' ? parseSize(v) : null;
      if (n === null) {
        return void r.error(p, `must be a size in bytes like 8192, "8k", "32KiB" or "1m", got ${describe(v)}`);
      }
      if ((o.min !== undefined && n < o.min) || (o.max !== undefined && n > o.max)) {
        return void r.error(p, `must be between ${o.min ?? 0} and ${o.max ?? '∞'} bytes, got ${n}`);
      }
      return n;
    });
}

export function unlimitedSize<O extends Common<number | null>>(o: O) {
  const bytes = size({ doc: '' });
  return field<number | null, O>({ ...o, defDoc: o.defDoc ?? (o.default === null ? 'unlimited' : '') },
    'size | unlimited', (r, v, p) => (v === null || v === 'unlimited' ? null : bytes.read(r, v, p)),
    { nullable: true });
}

const ANY_STRING = str({ doc: '' });

/** `host:port` to listen on: an IP literal or localhost, port 1–65535. */
export function hostPort<O extends Common<HostPort>>(o: O) {
  return field<HostPort, O>(o, 'host:port', (r, v, p) => {
    const s = ANY_STRING.read(r, v, p);
    if (s === undefined) return undefined;
    const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(s);
    const port = m ? Number(m[3]) : NaN;
    if (!m || port > 65535 || port < 1) {
      const example = '(e.g. 127.0.0.1:8443 or [::1]:8443), port 1-65535';
      return void r.error(p, `${JSON.stringify(s)} must be host:port ${example}`);
    }
    const host = m[1] ?? m[2]!;
    const bad = bindHost(host);
    return bad ? void r.error(p, bad) : { host, port };
  });
}

/** A value with its own reading (alternatives such as `auto | integer`); `type` documents it. */
export function custom<T, O extends Common<T> & { type: string; nullable?: boolean; shape?: string }>(
  o: O, read: Field<T>['read'], fields?: Shape,
) {
  return field<T, O>(o, o.type, read, {
    ...(o.nullable ? { nullable: true } : {}),
    ...(o.shape ? { shape: o.shape } : {}),
    ...(fields ? { fields } : {}),
  });
}

/**
 * A provider credential: a literal, `$env://` or `$file://`; never `$secret://` (a provider
 * would be needed to build a provider). A `sensitive` literal warns, without echoing it.
 */
export function credential<O extends Common<string> & { sensitive?: boolean }>(o: O) {
  return field<string, O>(o, 'credential (literal, $env://, $file://)', (r, v, p) => {
    if (typeof v !== 'string' || v.length === 0) {
      return void r.error(p, `must be a non-empty string, got ${describe(v)}`);
    }
    const parsed = parseValue(v);
    if (!parsed.ok) return void r.error(p, parsed.message, 'TLSGATE_E_SECRET_REF');
    if (!parsed.ref) {
      if (o.sensitive) r.warn(p, 'is a literal in the config; prefer a $env:// or $file:// reference');
      return v;
    }
    if (parsed.ref.kind === 'vault' || parsed.ref.kind === 'aws' || parsed.ref.kind === 'local') {
      const msg = `"${v}": provider settings accept only $env:// or $file:// references`;
      return void r.error(p, msg, 'TLSGATE_E_SECRET_REF');
    }
    return v;
  });
}

// ---- structures ----------------------------------------------------------------------

type ObjOpts<T> = {
  doc: string;
  required?: boolean;
  /** Absent mapping: undefined (true) or every field's default (false, the default). */
  optional?: boolean;
  /**
   * Rules between the fields of this one object (cross-object rules live in schema.ts). They
   * run even when a field was refused (every problem at once): `out` holds what was read.
   */
  rule?: (r: Reader, out: Partial<T>, raw: Obj, path: string) => void;
};

// 30k objects are validated in one reload: the key lists are made once per mapping, not per object.
const LISTED = new WeakMap<Shape, { keys: string[]; entries: Array<[string, Field<unknown>]> }>();
function listed(fields: Shape): { keys: string[]; entries: Array<[string, Field<unknown>]> } {
  let l = LISTED.get(fields);
  if (!l) LISTED.set(fields, (l = { keys: Object.keys(fields), entries: Object.entries(fields) }));
  return l;
}

/** Reads every field of a mapping (all problems reported); undefined when a required field failed. */
export function readFields<S extends Shape>(r: Reader, fields: S, o: Obj, path: string): ObjOf<S> | undefined {
  const { out, whole } = readSome(r, fields, o, path);
  return whole ? out : undefined;
}

/** Like readFields, but also the fields that were read when a required one failed. */
export function readSome<S extends Shape>(
  r: Reader, fields: S, o: Obj, path: string,
): { out: ObjOf<S>; whole: boolean } {
  const { keys, entries } = listed(fields);
  r.known(o, path, keys);
  const out: Obj = {};
  let whole = true;
  for (const [k, f] of entries) {
    const v = o[k];
    // `key:` with nothing under it is null: absent for a scalar or list, but a mapping left
    // empty by mistake (`admin:` with its lines commented out) is reported, not skipped.
    const absent = v === undefined || (v === null && !f.nullable && !f.fields);
    if (absent) {
      if (f.required) {
        r.error(join(path, k), requiredMessage(f));
        whole = false;
      } else if (f.fallback) out[k] = f.fallback();
      continue;
    }
    const got = f.read(r, v, join(path, k));
    if (got !== undefined) out[k] = got;
    else if (f.required) whole = false;
    else if (f.fallback) out[k] = f.fallback();
  }
  return { out: out as ObjOf<S>, whole };
}

function requiredMessage(f: Field<unknown>): string {
  if (!f.shape) return 'is required';
  return f.item ? `is required: a list of ${f.shape}` : `is required: ${f.shape}`;
}

export function obj<S extends Shape, O extends ObjOpts<ObjOf<S>>>(fields: S, o: O) {
  const keys = Object.keys(fields);
  const f = {
    type: 'mapping',
    doc: o.doc,
    defDoc: '',
    required: o.required === true,
    fields,
    read: (r: Reader, v: unknown, p: string) => {
      const raw = r.obj(v, p || '(root)', keys);
      if (!raw) return undefined;
      const { out, whole } = readSome(r, fields, raw, p);
      o.rule?.(r, out, raw, p);
      return whole ? out : undefined;
    },
  } as Field<ObjOf<S>, O extends { optional: true } ? true : false>;
  if (o.optional) return f;
  return { ...f, fallback: () => f.read(new NullReader() as unknown as Reader, {}, '')! };
}

/** Swallows issues: computing defaults from an empty mapping reports nothing. */
class NullReader {
  error(): void {}
  warn(): void {}
  obj(v: unknown): Obj | undefined {
    return v as Obj;
  }
  known(): void {}
}

type ListOpts<T> = {
  doc: string;
  required?: boolean;
  default?: T[];
  defDoc?: string;
  /** What the list holds, for "must be a list of …". */
  shape?: string;
  /** Message when the list is empty; absent: an empty list is fine. */
  nonEmpty?: string;
  /** Repeated items: dropped silently, or refused with this message (`%s` = the item). */
  repeat?: 'drop' | { message: string; code: ErrorCode };
  /** A mapping accepted in place of the list: each entry becomes the item to read (APISIX `nodes`). */
  fromMapping?: (key: string, value: unknown) => unknown;
};

export function list<T, O extends ListOpts<T>>(item: Field<T>, o: O) {
  return {
    type: `list of ${o.shape ?? item.type}`,
    doc: o.doc,
    defDoc: o.defDoc ?? (o.default === undefined ? '' : showDefault(o.default)),
    required: o.required === true,
    item,
    shape: o.shape,
    ...(o.default === undefined ? {} : { fallback: () => [...o.default!] }),
    read: (r: Reader, v: unknown, p: string) => {
      let at = (i: number): string => `${p}[${i}]`;
      if (o.fromMapping && v !== null && typeof v === 'object' && !Array.isArray(v)) {
        const entries = Object.entries(v);
        v = entries.map(([k, x]) => o.fromMapping!(k, x));
        at = (i) => `${p}[${JSON.stringify(entries[i]![0])}]`;
      }
      if (!Array.isArray(v)) {
        return void r.error(p, `must be a list${o.shape ? ` of ${o.shape}` : ''}, got ${describe(v)}`);
      }
      if (v.length === 0 && o.nonEmpty) r.error(p, o.nonEmpty);
      const out: T[] = [];
      v.forEach((x, i) => {
        const got = item.read(r, x, at(i));
        if (got === undefined) return;
        if (o.repeat && out.includes(got)) {
          if (o.repeat !== 'drop') r.error(at(i), o.repeat.message.replace('%s', String(got)), o.repeat.code);
          return;
        }
        out.push(got);
      });
      return out;
    },
  } as Field<T[], OptOf<O>>;
}

type Tagged<C extends Shape, K extends string, V extends Record<string, Shape>> = {
  [T in keyof V & string]: Flat<ObjOf<C> & { [k in K]: T } & ObjOf<V[T]>>;
}[keyof V & string];

type TaggedOpts<C extends Shape, K extends string, V extends Record<string, Shape>> = {
  doc: string;
  /** Rules between the fields of one variant; they run even when a field was refused. */
  rule?: (r: Reader, out: Partial<Tagged<C, K, V>>, raw: Obj, path: string) => void;
};

/**
 * A mapping whose `tag` field picks its other fields (`type: vault` → address, auth, …).
 * Refused as a whole (undefined) when any of its fields is.
 */
export function tagged<C extends Shape, K extends string, V extends Record<string, Shape>>(
  tag: K, common: C, variants: V, o: TaggedOpts<C, K, V>,
): Field<Tagged<C, K, V>, true> {
  const names = Object.keys(variants);
  const tagField = oneOf(names, { required: true, doc: 'which kind; it decides the other fields' });
  const fields: Shape = { ...common, [tag]: tagField };
  const owners = new Map<string, string[]>();
  for (const [name, v] of Object.entries(variants)) {
    for (const k of Object.keys(v)) owners.set(k, [...(owners.get(k) ?? []), name]);
  }
  for (const [k, by] of owners) {
    const f = variants[by[0]!]![k]!;
    fields[k] = { ...f, doc: `(${by.join(', ')}) ${f.doc}` };
  }
  const shapes: Record<string, Shape> = {};
  for (const name of names) shapes[name] = { ...common, [tag]: tagField, ...variants[name] };
  return {
    type: 'mapping', doc: o.doc, defDoc: '', required: false, fields,
    read: (r, v, p) => {
      const raw = r.obj(v, p, [Object.keys(common)[0] ?? tag, tag, '…']);
      if (!raw) return undefined;
      const t = raw[tag] == null ? void r.error(join(p, tag), 'is required') : tagField.read(r, raw[tag], join(p, tag));
      if (t === undefined) return undefined;
      const errors = r.issues.filter((i) => i.severity === 'error').length;
      const { out, whole } = readSome(r, shapes[t]!, raw, p);
      o.rule?.(r, out as Partial<Tagged<C, K, V>>, raw, p);
      const refused = !whole || r.issues.filter((i) => i.severity === 'error').length > errors;
      return refused ? undefined : (out as Tagged<C, K, V>);
    },
  };
}

/** The same mapping with no defaults: a listener's `limits` override the top-level ones field by field. */
export function overrides<S extends Shape>(base: Field<ObjOf<S>>, doc: string, defDoc: string) {
  const fields: Shape = {};
  for (const [k, f] of Object.entries(base.fields ?? {})) {
    const { fallback: _drop, ...rest } = f;
    fields[k] = { ...rest, defDoc };
  }
  return obj(fields, { doc, optional: true }) as unknown as Field<Partial<ObjOf<S>>, true>;
}

// ---- README table --------------------------------------------------------------------

export interface Row {
  path: string;
  type: string;
  default: string;
  required: boolean;
  doc: string;
}

/** One row per field, depth first, in declaration order. */
export function rows(f: Field<unknown>, path = ''): Row[] {
  const out: Row[] = [];
  if (path) out.push({ path, type: f.type, default: f.defDoc, required: f.required, doc: f.doc });
  if (f.fields) for (const [k, sub] of Object.entries(f.fields)) out.push(...rows(sub, join(path, k)));
  if (f.item?.fields) {
    out.push(...rows({ ...f.item, type: '', doc: '' }, `${path}[]`).filter((x) => x.path !== `${path}[]`));
  }
  return out;
}
