// `secret_providers[]` entries: construction of the provider objects (their fields are
// declared and checked with the rest of the config, src/config/declaration.ts). Credential
// fields (token, role_id, secret_id, TLS key, AWS keys) may be literals or `$env://` /
// `$file://` references, resolved here just before the provider is made; a `$secret://`
// reference there would need a provider to build a provider.
import { readProvider, type ProviderConfig } from '../config/declaration';
import { Reader } from '../config/reader';
import { SecretError, type ConfigIssue } from '../errors';
import { AwsProvider, type AwsOptions } from './aws';
import { isReference, parseValue } from './reference';
import { resolveRef } from './resolve';
import { VaultProvider, type VaultOptions } from './vault';

export type { ProviderConfig };
export type VaultProviderConfig = Extract<ProviderConfig, { type: 'vault' }>;
export type AwsProviderConfig = Extract<ProviderConfig, { type: 'aws' }>;
export type VaultAuthConfig = VaultProviderConfig['auth'];

export type ProviderInstance = VaultProvider | AwsProvider;

export interface ProviderContext {
  /** Directory of the config file: `$file://` paths are relative to it. */
  baseDir: string;
  env: NodeJS.ProcessEnv;
}

/**
 * Check one `secret_providers[]` entry; `path` is its config path, e.g. `secret_providers[0]`.
 * The fields, defaults and formats are declared with the rest of the config
 * (src/config/declaration.ts); this wrapper keeps the standalone entry point.
 */
export function validateProviderConfig(
  raw: unknown,
  path: string,
): { provider?: ProviderConfig; issues: ConfigIssue[] } {
  const r = new Reader();
  const provider = readProvider(r, raw, path);
  return provider ? { provider, issues: r.issues } : { issues: r.issues };
}

/** Resolve a credential field (literal, `$env://`, `$file://`); errors name the field and reference only. */
async function credential(value: string, field: string, ctx: ProviderContext): Promise<string> {
  const parsed = parseValue(value);
  if (!parsed.ok) throw new SecretError('TLSGATE_E_SECRET_REF', field, `${field}: ${parsed.message}`);
  if (!parsed.ref) return value;
  try {
    return await resolveRef(parsed.ref, { ...ctx, providers: new Map() });
  } catch (err) {
    const e = err as SecretError;
    throw new SecretError(e.code ?? 'TLSGATE_E_SECRET_UNRESOLVED', value, `${field}: ${e.message}`);
  }
}

async function optional(value: string | undefined, field: string, ctx: ProviderContext): Promise<string | undefined> {
  return value === undefined ? undefined : credential(value, field, ctx);
}

/** Resolve the credential fields of `cfg` and make its provider. Nothing is fetched yet. */
export async function createProvider(cfg: ProviderConfig, ctx: ProviderContext): Promise<ProviderInstance> {
  const at = `secret_providers[${cfg.id}]`;
  if (cfg.type === 'vault') {
    const a = cfg.auth;
    const auth: VaultOptions['auth'] =
      'token' in a
        ? { token: (await credential(a.token, `${at}.auth.token`, ctx)).trim() }
        : {
            roleId: (await credential(a.role_id, `${at}.auth.role_id`, ctx)).trim(),
            secretId: (await credential(a.secret_id, `${at}.auth.secret_id`, ctx)).trim(),
            mount: a.mount,
          };
    const ca = await optional(cfg.tls?.ca, `${at}.tls.ca`, ctx);
    const cert = await optional(cfg.tls?.cert, `${at}.tls.cert`, ctx);
    const key = await optional(cfg.tls?.key, `${at}.tls.key`, ctx);
    const tls = {
      ...(ca ? { ca } : {}),
      ...(cert ? { cert } : {}),
      ...(key ? { key } : {}),
      ...(cfg.tls?.server_name ? { serverName: cfg.tls.server_name } : {}),
    };
    return new VaultProvider({
      id: cfg.id,
      address: cfg.address,
      kvVersion: cfg.kv_version,
      mount: cfg.mount,
      ...(cfg.namespace ? { namespace: cfg.namespace } : {}),
      auth,
      tls,
      connectTimeoutMs: cfg.timeout.connect,
      readTimeoutMs: cfg.timeout.read,
    });
  }
  const accessKeyId = await optional(cfg.access_key_id, `${at}.access_key_id`, ctx);
  const secretAccessKey = await optional(cfg.secret_access_key, `${at}.secret_access_key`, ctx);
  const sessionToken = await optional(cfg.session_token, `${at}.session_token`, ctx);
  const ca = await optional(cfg.tls?.ca, `${at}.tls.ca`, ctx);
  const options: AwsOptions = {
    id: cfg.id,
    region: cfg.region,
    ...(cfg.endpoint ? { endpoint: cfg.endpoint } : {}),
    ...(accessKeyId && secretAccessKey
      ? {
          credentials: {
            accessKeyId: accessKeyId.trim(),
            secretAccessKey: secretAccessKey.trim(),
            ...(sessionToken ? { sessionToken: sessionToken.trim() } : {}),
          },
        }
      : {}),
    ...(ca ? { ca } : {}),
    ...(cfg.version_stage ? { versionStage: cfg.version_stage } : {}),
    connectTimeoutMs: cfg.timeout.connect,
    readTimeoutMs: cfg.timeout.read,
    maxAttempts: cfg.max_attempts,
  };
  return new AwsProvider(options);
}

/** The config as the admin API may show it: references kept, literal credentials replaced. */
export function publicProviderConfig(cfg: ProviderConfig): ProviderConfig {
  const hide = (v: string | undefined): string | undefined => (v === undefined || isReference(v) ? v : '<redacted>');
  if (cfg.type === 'vault') {
    const auth: VaultAuthConfig =
      'token' in cfg.auth ? { token: hide(cfg.auth.token)! } : { ...cfg.auth, secret_id: hide(cfg.auth.secret_id)! };
    return {
      ...cfg,
      auth,
      ...(cfg.tls ? { tls: { ...cfg.tls, ...(cfg.tls.key ? { key: hide(cfg.tls.key)! } : {}) } } : {}),
    };
  }
  return {
    ...cfg,
    ...(cfg.secret_access_key ? { secret_access_key: hide(cfg.secret_access_key)! } : {}),
    ...(cfg.session_token ? { session_token: hide(cfg.session_token)! } : {}),
  };
}
