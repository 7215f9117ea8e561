// Turns every reference of a validated config into its value. Primary only.
import { ConfigError, type ConfigIssue } from '../errors';
import { parseValue, type SecretRef } from '../secrets/reference';
import type { SecretStore } from '../secrets/store';
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
): Promise<ResolvedConfig> {
  const values = new Map<string, string>();
  const sources = new Map<string, Source>();
  const refs = new Map<string, SecretRef>();
  const issues: ConfigIssue[] = [];
  const fields = secretFields(config);
  for (const [path, raw] of fields) {
    const parsed = parseValue(raw);
    if (!parsed.ok) issues.push({ path, code: 'TLSGATE_E_SECRET_REF', message: parsed.message, severity: 'error' });
    else if (parsed.ref === null) {
      values.set(path, raw);
      sources.set(path, 'literal');
    } else {
      refs.set(path, parsed.ref);
      sources.set(path, parsed.ref.text);
    }
  }
  if (issues.length) throw new ConfigError(issues);
  const applied = await store.apply({
    providers: config.secret_providers,
    references: [...refs.values()].map((r) => r.text),
    fileMaxSize: config.file_max_size,
    fileRefreshInterval: config.file_refresh_interval,
    ...(reread ? { reread } : {}),
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
