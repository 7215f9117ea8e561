// HashiCorp Vault KV (v1 or v2) as a SecretProvider.
// `$secret://vault/<id>/<path…>/<field>` reads GET /v1/<mount>/data/<path> (v2) or
// /v1/<mount>/<path> (v1) and returns the field. Fetches of one path that overlap
// share one request, so a cert and its key stored side by side are read together.
import { EventEmitter } from 'node:events';
import { SecretError, type ErrorCode } from '../errors';
import type { SecretRef } from './reference';
import type { SecretProvider } from './resolve';
import { VaultAuth, type VaultAuthEvents, type VaultAuthOptions } from './vault-auth';
import { VaultHttp, type VaultTls } from './vault-http';

export type { VaultAuthOptions, TokenInfo } from './vault-auth';
export type { VaultTls } from './vault-http';

export interface VaultOptions {
  id: string;
  /** http(s)://host:port, optionally with a path prefix. */
  address: string;
  kvVersion: 1 | 2;
  /** KV mount path, e.g. "secret" or "teams/edge/kv". */
  mount: string;
  /** Sent as X-Vault-Namespace (Vault Enterprise / HCP). */
  namespace?: string;
  auth: VaultAuthOptions;
  tls?: VaultTls;
  connectTimeoutMs?: number;
  readTimeoutMs?: number;
}

export const VAULT_DEFAULTS = {
  connectTimeoutMs: 5_000, // 5 seconds
  readTimeoutMs: 10_000, // 10 seconds
} as const;

type VaultRef = Extract<SecretRef, { kind: 'vault' }>;
type Data = Record<string, unknown>;

export class VaultProvider extends EventEmitter<VaultAuthEvents> implements SecretProvider {
  readonly id: string;
  readonly type = 'vault' as const;
  private readonly http: VaultHttp;
  private readonly auth: VaultAuth;
  private readonly kvVersion: 1 | 2;
  private readonly mount: string;
  private readonly inflight = new Map<string, Promise<Data>>();

  constructor(o: VaultOptions) {
    super();
    this.id = o.id;
    this.kvVersion = o.kvVersion;
    this.mount = o.mount.replace(/^\/+|\/+$/g, '');
    this.http = new VaultHttp({
      address: o.address,
      ...(o.namespace ? { namespace: o.namespace } : {}),
      ...(o.tls ? { tls: o.tls } : {}),
      connectTimeoutMs: o.connectTimeoutMs ?? VAULT_DEFAULTS.connectTimeoutMs,
      readTimeoutMs: o.readTimeoutMs ?? VAULT_DEFAULTS.readTimeoutMs,
    });
    this.auth = new VaultAuth(o.id, o.auth, this.http);
    this.auth.on('token', (info) => this.emit('token', info));
    this.auth.on('auth-error', (err) => this.emit('auth-error', err));
  }

  /** Log in now (AppRole) instead of on the first fetch; a no-op with a static token. */
  async login(): Promise<void> {
    await this.auth.login(`vault:${this.id}`);
  }

  async fetch(ref: Extract<SecretRef, { kind: 'vault' | 'aws' }>): Promise<string> {
    if (ref.kind !== 'vault') {
      throw new SecretError(
        'TLSGATE_E_SECRET_PROVIDER',
        ref.text,
        `${ref.text}: provider "${this.id}" is a vault provider`,
      );
    }
    const apiPath = this.apiPath(ref.path);
    let pending = this.inflight.get(apiPath);
    if (!pending) {
      pending = this.read(ref, apiPath).finally(() => this.inflight.delete(apiPath));
      this.inflight.set(apiPath, pending);
    }
    const data = await pending.catch((err: unknown) => {
      // Errors of a shared read name the reference that started it; restate for this one.
      throw err instanceof SecretError && err.reference !== ref.text
        ? new SecretError(err.code, ref.text, err.message.replace(err.reference, ref.text))
        : err;
    });
    const value = data[ref.field];
    if (typeof value === 'string') return value;
    throw new SecretError(
      'TLSGATE_E_SECRET_FORMAT',
      ref.text,
      value === undefined || value === null
        ? `${ref.text}: vault path ${apiPath} has no field "${ref.field}"`
        : `${ref.text}: field "${ref.field}" at vault path ${apiPath} is a ${Array.isArray(value) ? 'list' : typeof value}, not a string`,
    );
  }

  private apiPath(path: string): string {
    const p = path.split('/').map(encodeURIComponent).join('/');
    return this.kvVersion === 2 ? `/v1/${this.mount}/data/${p}` : `/v1/${this.mount}/${p}`;
  }

  private async read(ref: VaultRef, apiPath: string): Promise<Data> {
    let token = await this.auth.current(ref.text);
    let answer = await this.http.call('GET', apiPath, token);
    if (!answer.ok && answer.status === 403 && this.auth.usesAppRole) {
      // The token may have been revoked or expired early: one fresh login, one retry.
      this.auth.invalidate();
      token = await this.auth.login(ref.text);
      answer = await this.http.call('GET', apiPath, token);
    }
    if (!answer.ok) {
      throw new SecretError(
        codeFor(answer.status),
        ref.text,
        `${ref.text}: vault provider "${this.id}" ${describe(answer.status, answer.reason)} for GET ${apiPath}`,
      );
    }
    const body = answer.body as { data?: { data?: unknown } | null } | null;
    const data = this.kvVersion === 2 ? body?.data?.data : body?.data;
    if (!data || typeof data !== 'object' || Array.isArray(data)) {
      // KV v2 answers a deleted or destroyed version with data: null.
      throw new SecretError(
        'TLSGATE_E_SECRET_UNRESOLVED',
        ref.text,
        `${ref.text}: vault provider "${this.id}" returned no secret data for GET ${apiPath} (deleted ` +
          `version, or kv_version ${this.kvVersion} does not match the mount?)`,
      );
    }
    return data as Data;
  }

  async close(): Promise<void> {
    this.auth.close();
    await this.http.close();
  }
}

function codeFor(status: number): ErrorCode {
  if (status === 0 || status === 429 || status >= 500) return 'TLSGATE_E_SECRET_PROVIDER_DOWN';
  if (status === 401 || status === 403) return 'TLSGATE_E_SECRET_DENIED';
  if (status >= 200 && status < 300) return 'TLSGATE_E_SECRET_FORMAT';
  return 'TLSGATE_E_SECRET_UNRESOLVED';
}

function describe(status: number, reason: string): string {
  if (status === 0) return `is unreachable (${reason})`;
  if (status === 404) return 'answered HTTP 404 (not found)';
  if (status === 403) return 'answered HTTP 403 (forbidden: check the token, its policies and the namespace)';
  return `answered ${reason}`;
}
