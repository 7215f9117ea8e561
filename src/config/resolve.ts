// Turns every reference of a validated config into its value. Primary only.
import { ConfigError, type ConfigIssue } from '../errors';
import { parseValue, type SecretRef } from '../secrets/reference';
import type { SecretStore } from '../secrets/store';
import type { LocalSecrets } from '../secrets/resolve';
import { secretFields } from './secret-fields';
import type { GatewayConfig } from './types';

/** Where a value came from, as the admin API may show it: the reference text, or "literal". */
export type Source = string;

export interface ResolvedConfig {
  config: GatewayConfig;
  /** value of each secret-bearing field, by its config path (`ssls[0].key`). */
  values: ReadonlyMap<string, string>;
  /** source of each secret-bearing field, by path. */
  sources: Map<string, Source>;
  /** every reference used, by path. */
  refs: Map<string, SecretRef>;
  /**
   * References that did not resolve (their paths are absent from `values`). Not thrown here:
   * compileSnapshot still validates every object whose values resolved and throws with both,
   * so one missing file does not hide the certificate errors of other objects.
   */
  unresolved?: ConfigIssue[];
  /**
   * Set by resolveChangedFiles: this resolution is `base` with only the values at `paths`
   * read again (same config object). compileSnapshot then compiles those objects only.
   */
  changedFrom?: { base: ResolvedConfig; paths: readonly string[] };
}

/**
 * `reread`: which local references to read again (the others keep the store's value);
 * absent: all of them. Resolves every reference through the store (which fetches each one once and keeps
 * refreshing it). Failing references are listed in `unresolved` (path and reference, never a
 * value); compileSnapshot refuses a config that has any.
 */
export async function resolveConfig(
  config: GatewayConfig,
  store: SecretStore,
  reread?: (ref: SecretRef) => boolean,
  /** `$secret://local/<id>` values for this resolve only (a check of a changed built-in secret). */
  local?: LocalSecrets,
): Promise<ResolvedConfig> {
  const fields = fieldsOf(config);
  const values = new Map(fields.literals);
  const { sources, refs } = fields;
  const issues: ConfigIssue[] = [];
  const applied = await store.apply({
    providers: config.secret_providers,
    references: fields.texts,
    fileMaxSize: config.file_max_size,
    fileRefreshInterval: config.file_refresh_interval,
    ...(reread ? { reread } : {}),
    ...(local ? { local } : {}),
  });
  if (!applied.ok) {
    const byRef = new Map<string, string[]>();
    for (const [p, r] of refs) byRef.set(r.text, [...(byRef.get(r.text) ?? []), p]);
    for (const e of applied.errors) {
      const paths = byRef.get(e.reference) ?? [e.reference];
      for (const path of paths) issues.push({ path, code: e.code, message: e.message, severity: 'error' });
    }
    issues.sort((a, b) => a.path.localeCompare(b.path));
  }
  const got = applied.ok ? applied.values : applied.partial;
  for (const [path, ref] of refs) {
    const v = got.get(ref.text);
    if (v !== undefined) values.set(path, v);
  }
  return { config, values, sources, refs, unresolved: issues };
}

interface Fields {
  literals: ReadonlyMap<string, string>;
  sources: Map<string, Source>;
  refs: Map<string, SecretRef>;
  texts: string[];
}

/**
 * The secret fields of a config, parsed once per config object: a rotation (a file or a
 * secret changed, the config file not) resolves the same parse again, and walking 20k
 * fields of a 10k-object config each time was most of the resolve step (profiled).
 * Never mutated by a caller: ResolvedConfig's maps are read only.
 */
const parsedFields = new WeakMap<GatewayConfig, Fields>();

function fieldsOf(config: GatewayConfig): Fields {
  const hit = parsedFields.get(config);
  if (hit) return hit;
  const literals = new Map<string, string>();
  const sources = new Map<string, Source>();
  const refs = new Map<string, SecretRef>();
  const issues: ConfigIssue[] = [];
  for (const [path, raw] of secretFields(config)) {
    const parsed = parseValue(raw, config.secret_providers);
    if (!parsed.ok) {
      issues.push({ path, code: parsed.code ?? 'TLSGATE_E_SECRET_REF', message: parsed.message, severity: 'error' });
    } else if (parsed.ref === null) {
      literals.set(path, raw);
      sources.set(path, config.sslDirSources?.[path] ?? 'literal');
    } else {
      refs.set(path, parsed.ref);
      sources.set(path, parsed.ref.text);
    }
  }
  if (issues.length) throw new ConfigError(issues);
  const fields = { literals, sources, refs, texts: [...refs.values()].map((r) => r.text) };
  parsedFields.set(config, fields);
  return fields;
}

/**
 * `base` with some values replaced, without copying it: a copy of the 20k values of 10k
 * objects took 6-27 ms per rotation here (130-275 ms at 100k). An overlay of an overlay
 * merges into one layer; past OVERLAY_MAX replaced values it is flattened (amortised).
 */
class Overlaid implements ReadonlyMap<string, string> {
  private constructor(
    private readonly base: ReadonlyMap<string, string>,
    private readonly top: ReadonlyMap<string, string>,
  ) {}

  static over(base: ReadonlyMap<string, string>, changed: ReadonlyMap<string, string>): ReadonlyMap<string, string> {
    const [under, top] = base instanceof Overlaid ? [base.base, new Map([...base.top, ...changed])] : [base, changed];
    if (top.size > OVERLAY_MAX) return new Map([...under, ...top]);
    return new Overlaid(under, top);
  }

  get(k: string): string | undefined {
    const v = this.top.get(k);
    return v !== undefined ? v : this.base.get(k);
  }

  has(k: string): boolean {
    return this.top.has(k) || this.base.has(k);
  }

  get size(): number {
    let n = this.base.size;
    for (const k of this.top.keys()) if (!this.base.has(k)) n++;
    return n;
  }

  *entries(): MapIterator<[string, string]> {
    for (const [k, v] of this.base) yield [k, this.top.get(k) ?? v];
    for (const [k, v] of this.top) if (!this.base.has(k)) yield [k, v];
  }

  *keys(): MapIterator<string> {
    for (const [k] of this.entries()) yield k;
  }

  *values(): MapIterator<string> {
    for (const [, v] of this.entries()) yield v;
  }

  forEach(fn: (value: string, key: string, map: ReadonlyMap<string, string>) => void): void {
    for (const [k, v] of this.entries()) fn(v, k, this);
  }

  [Symbol.iterator](): MapIterator<[string, string]> {
    return this.entries();
  }
}

const OVERLAY_MAX = 1024;

/** Per `refs` map (one per parsed config): absolute file → config paths of the `$file://` references to it. */
const pathsByFile = new WeakMap<ReadonlyMap<string, SecretRef>, Map<string, string[]>>();

/**
 * `base` with only the `$file://` values of `files` read again: the rotation path. `base`
 * must be the resolution of this very config object against the store as it is now (the
 * caller checks: same config object, no store change since, nothing unresolved). Costs
 * the files' reads and one copy of the value map, not a walk of every reference through
 * the store (≈ 30 ms of each rotation at 10k objects, profiled). Undefined when a file
 * cannot be read (or is not held): the caller resolves the whole config, which reports why.
 */
export async function resolveChangedFiles(
  base: ResolvedConfig,
  store: SecretStore,
  files: ReadonlySet<string>,
  absolute: (ref: SecretRef) => string,
): Promise<ResolvedConfig | undefined> {
  let index = pathsByFile.get(base.refs);
  if (!index) {
    index = new Map();
    for (const [path, ref] of base.refs) {
      if (ref.kind !== 'file') continue;
      const f = absolute(ref);
      const list = index.get(f);
      if (list) list.push(path);
      else index.set(f, [path]);
    }
    pathsByFile.set(base.refs, index);
  }
  const paths: string[] = [];
  for (const f of files) paths.push(...(index.get(f) ?? []));
  if (paths.length === 0) return base;
  const texts = [...new Set(paths.map((p) => base.refs.get(p)!.text))];
  const read = await store.reread(texts);
  if (!read?.ok) return undefined;
  const changed = new Map<string, string>();
  for (const p of paths) changed.set(p, read.values.get(base.refs.get(p)!.text)!);
  const values = Overlaid.over(base.values, changed);
  const { changedFrom: _, ...rest } = base;
  return { ...rest, values, changedFrom: { base, paths } };
}
