// Turns every reference of a validated config into its value. Primary only.
import { ConfigError, SecretError, type ConfigIssue } from '../errors';
import { parseValue, type SecretRef } from '../secrets/reference';
import { resolveRef, type ResolveContext } from '../secrets/resolve';
import type { GatewayConfig } from './types';

/** Where a value came from, as the admin API may show it: the reference text, or "literal". */
export type Source = string;

export interface ResolvedConfig {
  config: GatewayConfig;
  /** value of each secret-bearing field, by its config path (`ssls[0].key`). */
  values: Map<string, string>;
  /** source of each secret-bearing field, by path. */
  sources: Map<string, Source>;
  /** every reference used, by path (for refresh and reference checks). */
  refs: Map<string, SecretRef>;
}

/** Each secret-bearing field of a config with its path. */
export function secretFields(c: GatewayConfig): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  c.admin?.api_keys.forEach((k, i) => out.push([`admin.api_keys[${i}]`, k]));
  if (c.admin?.tls) out.push(['admin.tls.cert', c.admin.tls.cert], ['admin.tls.key', c.admin.tls.key]);
  c.ssls.forEach((s, i) => {
    out.push([`ssls[${i}].cert`, s.cert], [`ssls[${i}].key`, s.key]);
    s.certs.forEach((v, j) => out.push([`ssls[${i}].certs[${j}]`, v]));
    s.keys.forEach((v, j) => out.push([`ssls[${i}].keys[${j}]`, v]));
    if (s.client) out.push([`ssls[${i}].client.ca`, s.client.ca]);
  });
  c.upstreams.forEach((u, i) => {
    if (u.tls?.ca) out.push([`upstreams[${i}].tls.ca`, u.tls.ca]);
  });
  return out;
}

/**
 * Resolves every reference; a reference used twice is fetched once. Throws a
 * ConfigError naming each failing path and reference (never a value).
 */
export async function resolveConfig(config: GatewayConfig, ctx: ResolveContext): Promise<ResolvedConfig> {
  const values = new Map<string, string>();
  const sources = new Map<string, Source>();
  const refs = new Map<string, SecretRef>();
  const pending = new Map<string, Promise<string>>();
  const issues: ConfigIssue[] = [];
  await Promise.all(
    secretFields(config).map(async ([path, raw]) => {
      const parsed = parseValue(raw);
      if (!parsed.ok) {
        issues.push({ path, code: 'TLSGATE_E_SECRET_REF', message: parsed.message, severity: 'error' });
        return;
      }
      if (parsed.ref === null) {
        values.set(path, raw);
        sources.set(path, 'literal');
        return;
      }
      const ref = parsed.ref;
      refs.set(path, ref);
      sources.set(path, ref.text);
      let p = pending.get(ref.text);
      if (!p) pending.set(ref.text, (p = resolveRef(ref, ctx)));
      try {
        values.set(path, await p);
      } catch (err) {
        const e = err instanceof SecretError ? err : new SecretError('TLSGATE_E_SECRET_UNRESOLVED', ref.text, `${ref.text}: ${(err as Error).message}`);
        issues.push({ path, code: e.code, message: e.message, severity: 'error' });
      }
    }),
  );
  if (issues.length) throw new ConfigError(issues.sort((a, b) => a.path.localeCompare(b.path)));
  return { config, values, sources, refs };
}
