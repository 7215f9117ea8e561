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
  values: Map<string, string>;
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
