// The one HTTP call shape Vault's API needs: JSON in, JSON out, token and namespace headers.
// Bodies are parsed but never put into an error: Vault error bodies can echo paths, and
// success bodies hold the secrets themselves.
import type { Agent, request as Request } from 'undici';

export interface VaultTls {
  /** PEM CA bundle that signs Vault's certificate (replaces the system store). */
  ca?: string;
  /** PEM client certificate and key, for Vault's TLS certificate auth or an mTLS proxy. */
  cert?: string;
  key?: string;
  /** Name checked against Vault's certificate and sent as SNI (address may be an IP). */
  serverName?: string;
}

export interface VaultHttpOptions {
  address: string;
  namespace?: string;
  tls?: VaultTls;
  connectTimeoutMs: number;
  readTimeoutMs: number;
}

export type VaultAnswer =
  | { ok: true; status: number; body: unknown }
  /** `status` 0: no HTTP answer (connection refused, TLS failure, timeout); `reason` is an error code. */
  | { ok: false; status: number; reason: string };

export class VaultHttp {
  private readonly base: string;
  private readonly agent: Agent;
  private readonly request: typeof Request;
  private readonly namespace: string | undefined;
  private readonly readTimeoutMs: number;

  constructor(o: VaultHttpOptions) {
    this.base = o.address.replace(/\/+$/, '');
    this.namespace = o.namespace;
    this.readTimeoutMs = o.readTimeoutMs;
    // undici is required by the first Vault provider, not at import: the primary of a config
    // without Vault skips its ~0.1-0.2 s load (measured, profile of a 10k start).
    const undici = require('undici') as typeof import('undici');
    this.request = undici.request;
    this.agent = new undici.Agent({
      connect: {
        timeout: o.connectTimeoutMs,
        ...(o.tls?.ca ? { ca: o.tls.ca } : {}),
        ...(o.tls?.cert ? { cert: o.tls.cert } : {}),
        ...(o.tls?.key ? { key: o.tls.key } : {}),
        ...(o.tls?.serverName ? { servername: o.tls.serverName } : {}),
      },
      headersTimeout: o.readTimeoutMs,
      bodyTimeout: o.readTimeoutMs,
    });
  }

  get address(): string {
    return this.base;
  }

  /** `path` starts with `/v1/`. Never throws: transport failures come back as `status: 0`. */
  async call(method: 'GET' | 'POST', path: string, token: string | undefined, body?: object): Promise<VaultAnswer> {
    const headers: Record<string, string> = { accept: 'application/json', 'x-vault-request': 'true' };
    if (token !== undefined) headers['x-vault-token'] = token;
    if (this.namespace) headers['x-vault-namespace'] = this.namespace;
    if (body) headers['content-type'] = 'application/json';
    try {
      const res = await this.request(this.base + path, {
        method,
        headers,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.readTimeoutMs * 2),
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      if (res.statusCode < 200 || res.statusCode >= 300) {
        await res.body.dump();
        return { ok: false, status: res.statusCode, reason: `HTTP ${res.statusCode}` };
      }
      if (res.statusCode === 204) {
        await res.body.dump();
        return { ok: true, status: 204, body: null };
      }
      try {
        return { ok: true, status: res.statusCode, body: await res.body.json() };
      } catch {
        return { ok: false, status: res.statusCode, reason: `HTTP ${res.statusCode} with a body that is not JSON` };
      }
    } catch (err) {
      const e = err as { code?: string; name?: string };
      return { ok: false, status: 0, reason: e.code ?? e.name ?? 'network error' };
    }
  }

  private closing: Promise<void> | undefined;

  /** Graceful (in-flight requests finish), capped at 1 s, then destroy. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<'timeout'>((r) => {
        timer = setTimeout(() => r('timeout'), 1000);
      });
      const closed = await Promise.race([this.agent.close().then(() => 'closed' as const), timeout]);
      clearTimeout(timer);
      if (closed === 'timeout') await this.agent.destroy();
    })();
    return this.closing;
  }
}
