// Vault token lifecycle. A static token is used as given. AppRole logs in
// (POST /v1/auth/<mount>/login), renews the token at 2/3 of its lease
// (POST /v1/auth/token/renew-self) and logs in again when renewal is refused or
// the lease stops growing (max_ttl reached). A fetch never waits for a timer:
// an expired or missing token makes it log in first (one login in flight at a time).
import { EventEmitter } from 'node:events';
import { SecretError } from '../errors';
import type { VaultHttp } from './vault-http';

export type VaultAuthOptions =
  { token: string } | { roleId: string; secretId: string; /** AppRole mount, default "approle". */ mount?: string };

export interface TokenInfo {
  source: 'login' | 'renew';
  /** 0: the token does not expire. */
  leaseMs: number;
  renewable: boolean;
}

export interface VaultAuthEvents {
  token: [TokenInfo];
  /** A background renewal or login failed; the current token is kept until it expires. */
  'auth-error': [SecretError];
}

// Renew when 2/3 of the lease is spent; treat a token as expired this long before Vault does.
const RENEW_AT = 2 / 3;
const EXPIRY_SKEW_MS = 250;

interface AuthBody {
  auth?: { client_token?: unknown; lease_duration?: unknown; renewable?: unknown };
}

export class VaultAuth extends EventEmitter<VaultAuthEvents> {
  private token: string | undefined;
  private expiresAt = 0;
  private renewable = false;
  private loginLeaseMs = 0;
  private lastLeaseMs = 0;
  private timer: NodeJS.Timeout | undefined;
  private loggingIn: Promise<string> | undefined;
  private closed = false;

  constructor(
    private readonly providerId: string,
    private readonly opts: VaultAuthOptions,
    private readonly http: VaultHttp,
  ) {
    super();
  }

  get usesAppRole(): boolean {
    return !('token' in this.opts);
  }

  /** A token valid now; logs in when needed. `reference` names what the caller was fetching. */
  async current(reference: string): Promise<string> {
    if ('token' in this.opts) return this.opts.token;
    if (this.token !== undefined && (this.expiresAt === Infinity || Date.now() < this.expiresAt - EXPIRY_SKEW_MS)) {
      return this.token;
    }
    return this.login(reference);
  }

  /** Forget the token (Vault answered 403 with it: revoked or expired early). */
  invalidate(): void {
    if (this.usesAppRole) this.token = undefined;
  }

  login(reference: string): Promise<string> {
    if ('token' in this.opts) return Promise.resolve(this.opts.token);
    this.loggingIn ??= this.doLogin(reference, this.opts).finally(() => {
      this.loggingIn = undefined;
    });
    return this.loggingIn;
  }

  private async doLogin(reference: string, o: { roleId: string; secretId: string; mount?: string }): Promise<string> {
    const mount = o.mount ?? 'approle';
    const answer = await this.http.call('POST', `/v1/auth/${mount}/login`, undefined, {
      role_id: o.roleId,
      secret_id: o.secretId,
    });
    const auth = answer.ok ? (answer.body as AuthBody | null)?.auth : undefined;
    if (!answer.ok || typeof auth?.client_token !== 'string') {
      throw new SecretError(
        answer.status === 0 ? 'TLSGATE_E_SECRET_PROVIDER_DOWN' : 'TLSGATE_E_SECRET_AUTH',
        reference,
        `${reference}: vault provider "${this.providerId}" AppRole login at ${this.http.address} failed ` +
          `(${answer.ok ? 'no auth.client_token in the answer' : answer.reason})`,
      );
    }
    const leaseMs = leaseOf(auth);
    this.loginLeaseMs = leaseMs;
    this.accept(auth.client_token, leaseMs, auth.renewable === true, 'login');
    return auth.client_token;
  }

  private accept(token: string, leaseMs: number, renewable: boolean, source: TokenInfo['source']): void {
    this.token = token;
    this.renewable = renewable;
    this.lastLeaseMs = leaseMs;
    this.expiresAt = leaseMs === 0 ? Infinity : Date.now() + leaseMs;
    this.schedule(leaseMs === 0 ? undefined : Math.max(50, leaseMs * RENEW_AT));
    this.emit('token', { source, leaseMs, renewable });
  }

  private schedule(delayMs: number | undefined): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (delayMs === undefined || this.closed) return;
    this.timer = setTimeout(() => void this.onTimer(), delayMs);
    this.timer.unref();
  }

  private async onTimer(): Promise<void> {
    const reference = `vault:${this.providerId}`;
    // A lease that stopped growing (renewal capped by max_ttl) is not worth renewing again.
    const renew = this.renewable && this.token !== undefined && this.lastLeaseMs * 3 >= this.loginLeaseMs;
    if (renew && (await this.renewSelf(reference))) return;
    try {
      await this.login(reference);
    } catch (err) {
      if (this.closed) return;
      this.emit('auth-error', err as SecretError);
      const left = this.expiresAt - Date.now();
      // Retry while the old token still works; once it has expired the next fetch logs in.
      if (left > 0) this.schedule(Math.max(100, Math.min(5000, left / 3)));
    }
  }

  private async renewSelf(reference: string): Promise<boolean> {
    const answer = await this.http.call('POST', '/v1/auth/token/renew-self', this.token, {});
    if (this.closed) return true;
    const auth = answer.ok ? (answer.body as AuthBody | null)?.auth : undefined;
    // lease_duration 0 after a renewal means the token reached its max_ttl, not "never expires".
    if (!answer.ok || !auth || (leaseOf(auth) === 0 && this.loginLeaseMs > 0)) {
      this.emit(
        'auth-error',
        new SecretError(
          answer.status === 0 ? 'TLSGATE_E_SECRET_PROVIDER_DOWN' : 'TLSGATE_E_SECRET_AUTH',
          reference,
          `${reference}: vault provider "${this.providerId}" token renewal failed ` +
            `(${answer.ok ? 'no auth in the answer' : answer.reason}); logging in again`,
        ),
      );
      return false;
    }
    const token = typeof auth.client_token === 'string' ? auth.client_token : this.token!;
    this.accept(token, leaseOf(auth), auth.renewable === true, 'renew');
    return true;
  }

  close(): void {
    this.closed = true;
    this.schedule(undefined);
  }
}

function leaseOf(auth: { lease_duration?: unknown }): number {
  const s = auth.lease_duration;
  return typeof s === 'number' && Number.isFinite(s) && s > 0 ? s * 1000 : 0;
}
