// `secret_providers[]` entries: schema check, defaults, and construction of the provider
// objects. Credential fields (token, role_id, secret_id, TLS key, AWS keys) may be
// literals or `$env://` / `$file://` references, resolved here just before the provider
// is made; a `$secret://` reference there would need a provider to build a provider.
import { SecretError, type ConfigIssue, type ErrorCode } from '../errors';
import { parseDuration } from '../config/duration';
import { AwsProvider, type AwsOptions } from './aws';
import { isReference, parseValue } from './reference';
import { resolveRef } from './resolve';
import { VaultProvider, type VaultOptions } from './vault';

export const PROVIDER_DEFAULTS = {
  refresh_interval: 60_000, // 60 seconds
  min_refresh_interval: 1_000, // 1 second: faster polling only loads the secret manager
  kv_version: 2,
  mount: 'secret',
  approle_mount: 'approle',
  connect_timeout: 5_000, // 5 seconds
  read_timeout: 10_000, // 10 seconds
  max_attempts: 3, // aws SDK attempts per fetch, retries included
} as const;

interface ProviderCommon {
  id: string;
  /** Milliseconds. */
  refresh_interval: number;
  /** Milliseconds. */
  timeout: { connect: number; read: number };
}

export type VaultAuthConfig = { token: string } | { role_id: string; secret_id: string; mount: string };

export interface VaultProviderConfig extends ProviderCommon {
  type: 'vault';
  address: string;
  kv_version: 1 | 2;
  mount: string;
  namespace?: string;
  auth: VaultAuthConfig;
  tls?: { ca?: string; cert?: string; key?: string; server_name?: string };
}

export interface AwsProviderConfig extends ProviderCommon {
  type: 'aws';
  region: string;
  endpoint?: string;
  access_key_id?: string;
  secret_access_key?: string;
  session_token?: string;
  version_stage?: string;
  max_attempts: number;
  tls?: { ca?: string };
}

/** A validated `secret_providers[]` entry; credential fields still hold their references. */
export type ProviderConfig = VaultProviderConfig | AwsProviderConfig;

export type ProviderInstance = VaultProvider | AwsProvider;

export interface ProviderContext {
  /** Directory of the config file: `$file://` paths are relative to it. */
  baseDir: string;
  env: NodeJS.ProcessEnv;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const PATH_SEGMENT = /^[A-Za-z0-9._~@+=:-]+$/;
const REGION = /^[a-z]{2}(-[a-z0-9]+)+$/;
const STAGE = /^[A-Za-z0-9._-]{1,256}$/;
// Credentials that should not sit in the config file as literals.
const SENSITIVE = new Set(['auth.token', 'auth.secret_id', 'tls.key', 'secret_access_key', 'session_token']);

const KEYS = {
  common: ['id', 'type', 'refresh_interval', 'timeout'],
  vault: ['address', 'kv_version', 'mount', 'namespace', 'auth', 'tls'],
  aws: ['region', 'endpoint', 'access_key_id', 'secret_access_key', 'session_token', 'version_stage', 'max_attempts', 'tls'],
} as const;

class Checker {
  readonly issues: ConfigIssue[] = [];
  constructor(readonly base: string) {}

  error(field: string, message: string, code: ErrorCode = 'TLSGATE_E_CONFIG_INVALID'): void {
    this.issues.push({ path: this.at(field), code, message, severity: 'error' });
  }
  warn(field: string, message: string, code: ErrorCode = 'TLSGATE_E_CONFIG_INVALID'): void {
    this.issues.push({ path: this.at(field), code, message, severity: 'warning' });
  }
  at(field: string): string {
    return field ? `${this.base}.${field}` : this.base;
  }

  object(v: unknown, field: string): Record<string, unknown> | undefined {
    if (v && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
    this.error(field, 'must be an object');
    return undefined;
  }
  onlyKeys(o: Record<string, unknown>, field: string, allowed: readonly string[]): void {
    for (const k of Object.keys(o)) {
      if (!allowed.includes(k)) this.error(field ? `${field}.${k}` : k, `unknown field (allowed: ${allowed.join(', ')})`);
    }
  }
  string(v: unknown, field: string, re?: RegExp, what?: string): string | undefined {
    if (typeof v !== 'string' || v === '') {
      this.error(field, 'must be a non-empty string');
      return undefined;
    }
    if (re && !re.test(v)) {
      this.error(field, `"${v}" is not ${what ?? 'valid'}`);
      return undefined;
    }
    return v;
  }
  url(v: unknown, field: string): string | undefined {
    const s = this.string(v, field);
    if (s === undefined) return undefined;
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      this.error(field, 'must be an http(s) URL');
      return undefined;
    }
    if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.username || u.password || u.search || u.hash) {
      this.error(field, 'must be an http(s) URL without credentials, query or fragment');
      return undefined;
    }
    return s.replace(/\/+$/, '');
  }
  duration(v: unknown, field: string, fallback: number, min = 1): number {
    if (v === undefined) return fallback;
    const ms = typeof v === 'string' || typeof v === 'number' ? parseDuration(v) : null;
    if (ms === null) {
      this.error(field, `must be a duration such as "500ms", "5s" or "1m"`);
      return fallback;
    }
    if (ms < min) {
      this.error(field, `must be at least ${min}ms`);
      return fallback;
    }
    return ms;
  }
  path(v: unknown, field: string): string | undefined {
    const s = this.string(v, field);
    if (s === undefined) return undefined;
    const trimmed = s.replace(/^\/+|\/+$/g, '');
    const segments = trimmed.split('/');
    if (trimmed === '' || segments.some((p) => !PATH_SEGMENT.test(p) || p === '.' || p === '..')) {
      this.error(field, `"${s}" is not a valid path (segments of letters, digits and ._~@+=:-)`);
      return undefined;
    }
    return trimmed;
  }
  /** A literal, `$env://` or `$file://`; never `$secret://`. */
  credential(v: unknown, field: string): string | undefined {
    const s = this.string(v, field);
    if (s === undefined) return undefined;
    if (!isReference(s)) {
      if (SENSITIVE.has(field)) this.warn(field, 'is a literal in the config; prefer a $env:// or $file:// reference');
      return s;
    }
    const parsed = parseValue(s);
    if (!parsed.ok) {
      this.error(field, parsed.message, 'TLSGATE_E_SECRET_REF');
      return undefined;
    }
    if (parsed.ref && (parsed.ref.kind === 'vault' || parsed.ref.kind === 'aws')) {
      this.error(field, `"${s}": provider settings accept only $env:// or $file:// references`, 'TLSGATE_E_SECRET_REF');
      return undefined;
    }
    return s;
  }
}

/** Check one `secret_providers[]` entry; `path` is its config path, e.g. `secret_providers[0]`. */
export function validateProviderConfig(raw: unknown, path: string): { provider?: ProviderConfig; issues: ConfigIssue[] } {
  const c = new Checker(path);
  const o = c.object(raw, '');
  if (!o) return { issues: c.issues };
  const id = c.string(o.id, 'id', ID, 'a valid id (letters, digits, ".", "_", "-"; at most 64)');
  const type = o.type;
  if (type !== 'vault' && type !== 'aws') {
    c.error('type', 'must be "vault" or "aws"');
    return { issues: c.issues };
  }
  c.onlyKeys(o, '', [...KEYS.common, ...KEYS[type]]);
  const refresh_interval = c.duration(o.refresh_interval, 'refresh_interval', PROVIDER_DEFAULTS.refresh_interval, PROVIDER_DEFAULTS.min_refresh_interval);
  const timeout = { connect: PROVIDER_DEFAULTS.connect_timeout as number, read: PROVIDER_DEFAULTS.read_timeout as number };
  if (o.timeout !== undefined) {
    const t = c.object(o.timeout, 'timeout');
    if (t) {
      c.onlyKeys(t, 'timeout', ['connect', 'read']);
      timeout.connect = c.duration(t.connect, 'timeout.connect', timeout.connect);
      timeout.read = c.duration(t.read, 'timeout.read', timeout.read);
    }
  }
  const common = { id: id ?? '', refresh_interval, timeout };
  const provider = type === 'vault' ? vault(c, o, common) : aws(c, o, common);
  const failed = c.issues.some((i) => i.severity === 'error');
  return failed || !provider || id === undefined ? { issues: c.issues } : { provider, issues: c.issues };
}

function vault(c: Checker, o: Record<string, unknown>, common: ProviderCommon): VaultProviderConfig | undefined {
  const address = c.url(o.address, 'address');
  let kv_version: 1 | 2 = PROVIDER_DEFAULTS.kv_version;
  if (o.kv_version !== undefined) {
    if (o.kv_version === 1 || o.kv_version === 2) kv_version = o.kv_version;
    else c.error('kv_version', 'must be 1 or 2');
  }
  const mount = o.mount === undefined ? PROVIDER_DEFAULTS.mount : c.path(o.mount, 'mount');
  const namespace = o.namespace === undefined ? undefined : c.path(o.namespace, 'namespace');
  const auth = vaultAuth(c, o.auth);
  const tls = tlsBlock(c, o.tls, ['ca', 'cert', 'key', 'server_name']);
  if (address?.startsWith('http://')) {
    c.warn('address', 'is plain http: the Vault token and the secrets cross the network unencrypted');
    if (o.tls !== undefined) c.warn('tls', 'is ignored with an http:// address');
  }
  if (tls && (tls.cert === undefined) !== (tls.key === undefined)) c.error(tls.cert === undefined ? 'tls.cert' : 'tls.key', 'tls.cert and tls.key go together');
  if (address === undefined || mount === undefined || auth === undefined) return undefined;
  return {
    ...common,
    type: 'vault',
    address,
    kv_version,
    mount,
    ...(namespace ? { namespace } : {}),
    auth,
    ...(tls ? { tls } : {}),
  };
}

function vaultAuth(c: Checker, raw: unknown): VaultAuthConfig | undefined {
  if (raw === undefined) {
    c.error('auth', 'is required: { token } or { role_id, secret_id }');
    return undefined;
  }
  const a = c.object(raw, 'auth');
  if (!a) return undefined;
  c.onlyKeys(a, 'auth', ['token', 'role_id', 'secret_id', 'mount']);
  const hasToken = a.token !== undefined;
  const hasRole = a.role_id !== undefined || a.secret_id !== undefined;
  if (hasToken && hasRole) {
    c.error('auth', 'use either token or role_id + secret_id (AppRole), not both');
    return undefined;
  }
  if (hasToken) {
    if (a.mount !== undefined) c.error('auth.mount', 'applies to AppRole only');
    const token = c.credential(a.token, 'auth.token');
    return token === undefined ? undefined : { token };
  }
  if (!hasRole) {
    c.error('auth', 'needs token, or role_id and secret_id (AppRole)');
    return undefined;
  }
  const role_id = c.credential(a.role_id, 'auth.role_id');
  const secret_id = c.credential(a.secret_id, 'auth.secret_id');
  const mount = a.mount === undefined ? PROVIDER_DEFAULTS.approle_mount : c.path(a.mount, 'auth.mount');
  return role_id === undefined || secret_id === undefined || mount === undefined ? undefined : { role_id, secret_id, mount };
}

function tlsBlock<K extends string>(c: Checker, raw: unknown, keys: readonly K[]): Partial<Record<K, string>> | undefined {
  if (raw === undefined) return undefined;
  const t = c.object(raw, 'tls');
  if (!t) return undefined;
  c.onlyKeys(t, 'tls', keys);
  const out: Partial<Record<K, string>> = {};
  for (const k of keys) {
    if (t[k] === undefined) continue;
    const v = k === 'server_name' ? c.string(t[k], `tls.${k}`, /^[A-Za-z0-9.-]{1,253}$/, 'a host name') : c.credential(t[k], `tls.${k}`);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

function aws(c: Checker, o: Record<string, unknown>, common: ProviderCommon): AwsProviderConfig | undefined {
  const region = c.string(o.region, 'region', REGION, 'an AWS region such as eu-west-1');
  const endpoint = o.endpoint === undefined ? undefined : c.url(o.endpoint, 'endpoint');
  const access_key_id = o.access_key_id === undefined ? undefined : c.credential(o.access_key_id, 'access_key_id');
  const secret_access_key = o.secret_access_key === undefined ? undefined : c.credential(o.secret_access_key, 'secret_access_key');
  const session_token = o.session_token === undefined ? undefined : c.credential(o.session_token, 'session_token');
  if ((o.access_key_id === undefined) !== (o.secret_access_key === undefined)) {
    c.error(o.access_key_id === undefined ? 'access_key_id' : 'secret_access_key', 'access_key_id and secret_access_key go together (or omit both for the default credential chain)');
  }
  if (o.session_token !== undefined && (o.access_key_id === undefined || o.secret_access_key === undefined)) c.error('session_token', 'needs access_key_id and secret_access_key');
  const version_stage = o.version_stage === undefined ? undefined : c.string(o.version_stage, 'version_stage', STAGE, 'a staging label');
  let max_attempts: number = PROVIDER_DEFAULTS.max_attempts;
  if (o.max_attempts !== undefined) {
    if (Number.isInteger(o.max_attempts) && (o.max_attempts as number) >= 1 && (o.max_attempts as number) <= 10) max_attempts = o.max_attempts as number;
    else c.error('max_attempts', 'must be an integer from 1 to 10');
  }
  const tls = tlsBlock(c, o.tls, ['ca']);
  if (region === undefined) return undefined;
  return {
    ...common,
    type: 'aws',
    region,
    ...(endpoint ? { endpoint } : {}),
    ...(access_key_id ? { access_key_id } : {}),
    ...(secret_access_key ? { secret_access_key } : {}),
    ...(session_token ? { session_token } : {}),
    ...(version_stage ? { version_stage } : {}),
    max_attempts,
    ...(tls ? { tls } : {}),
  };
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
    const tls = { ...(ca ? { ca } : {}), ...(cert ? { cert } : {}), ...(key ? { key } : {}), ...(cfg.tls?.server_name ? { serverName: cfg.tls.server_name } : {}) };
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
      ? { credentials: { accessKeyId: accessKeyId.trim(), secretAccessKey: secretAccessKey.trim(), ...(sessionToken ? { sessionToken: sessionToken.trim() } : {}) } }
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
    const auth: VaultAuthConfig = 'token' in cfg.auth ? { token: hide(cfg.auth.token)! } : { ...cfg.auth, secret_id: hide(cfg.auth.secret_id)! };
    return { ...cfg, auth, ...(cfg.tls ? { tls: { ...cfg.tls, ...(cfg.tls.key ? { key: hide(cfg.tls.key)! } : {}) } } : {}) };
  }
  return {
    ...cfg,
    ...(cfg.secret_access_key ? { secret_access_key: hide(cfg.secret_access_key)! } : {}),
    ...(cfg.session_token ? { session_token: hide(cfg.session_token)! } : {}),
  };
}
