// A small HashiCorp Vault over HTTPS, faithful to the parts of the HTTP API tlsgate uses:
// KV v1 (GET /v1/<mount>/<path>) and v2 (GET /v1/<mount>/data/<path>, answer
// {data:{data,metadata}}), X-Vault-Token, X-Vault-Namespace (tokens live in one
// namespace), AppRole login (POST /v1/auth/<mount>/login), token renewal
// (POST /v1/auth/token/renew-self, capped by max_ttl), ACL-style path prefixes, and
// Vault's error bodies: 403 {"errors":["permission denied"]}, 404 {"errors":[]}.
// Tests set secrets, count requests, and take it down (connections reset) or seal it (503).
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { Socket } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { serverTls, type ServerTls } from './tls';

export interface VaultRequestRecord {
  method: string;
  /** Path without /v1/, e.g. "secret/data/certs/a" or "auth/approle/login". */
  path: string;
  namespace: string;
  hasToken: boolean;
  status: number;
}

interface Token {
  namespace: string;
  policies: string[];
  renewable: boolean;
  /** Seconds; 0: never expires. */
  ttl: number;
  maxTtl: number;
  createdAt: number;
  expiresAt: number;
}

interface AppRole {
  namespace: string;
  mount: string;
  secretId: string;
  ttl: number;
  maxTtl: number;
  renewable: boolean;
  policies: string[];
}

interface Kv {
  version: 1 | 2;
  /** v1: the data; v2: all versions, latest last (null data = deleted). */
  entries: Map<string, Array<{ data: Record<string, unknown> | null; created: string; deleted: string }>>;
}

export interface TokenOptions {
  namespace?: string;
  /** Path prefixes without /v1/ ("secret/data/certs/"), or "*" for all. */
  policies?: string[];
  ttlSeconds?: number;
  maxTtlSeconds?: number;
  renewable?: boolean;
}

export interface FakeVaultOptions {
  /** Names in the server certificate; default localhost + 127.0.0.1. */
  dns?: string[];
  ips?: string[];
  /** Require a client certificate signed by this CA (PEM). */
  clientCa?: string;
}

export class FakeVault extends EventEmitter<{ request: [VaultRequestRecord] }> {
  readonly requests: VaultRequestRecord[] = [];
  readonly tls: ServerTls;
  address = '';
  mode: 'up' | 'down' | 'sealed' = 'up';
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly mounts = new Map<string, Kv>(); // key: namespace + "|" + mount
  private readonly tokens = new Map<string, Token>();
  private readonly roles = new Map<string, AppRole>(); // key: role_id

  private constructor(o: FakeVaultOptions) {
    super();
    this.tls = serverTls({ ...(o.dns ? { dns: o.dns } : {}), ...(o.ips ? { ips: o.ips } : {}) });
    this.server = createServer(
      { cert: this.tls.cert, key: this.tls.key, ...(o.clientCa ? { ca: o.clientCa, requestCert: true, rejectUnauthorized: true } : {}) },
      (req, res) => this.handle(req, res),
    );
    this.server.on('connection', (s: Socket) => {
      if (this.mode === 'down') {
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('tlsClientError', () => undefined);
  }

  static async start(o: FakeVaultOptions = {}): Promise<FakeVault> {
    const v = new FakeVault(o);
    await new Promise<void>((resolve) => v.server.listen(0, '127.0.0.1', resolve));
    const port = (v.server.address() as { port: number }).port;
    v.address = `https://127.0.0.1:${port}`;
    return v;
  }

  get ca(): string {
    return this.tls.ca;
  }

  enableKv(mount: string, version: 1 | 2, namespace = ''): void {
    this.mounts.set(`${namespace}|${mount}`, { version, entries: new Map() });
  }

  /** Write a secret (v2: a new version). */
  put(mount: string, path: string, data: Record<string, unknown>, namespace = ''): void {
    const kv = this.kv(mount, namespace);
    const versions = kv.entries.get(path) ?? [];
    const entry = { data: { ...data }, created: new Date().toISOString(), deleted: '' };
    if (kv.version === 1) versions.splice(0, versions.length, entry);
    else versions.push(entry);
    kv.entries.set(path, versions);
  }

  /** v2: soft-delete the latest version; v1: remove. */
  delete(mount: string, path: string, namespace = ''): void {
    const kv = this.kv(mount, namespace);
    const versions = kv.entries.get(path);
    if (!versions) return;
    if (kv.version === 1) kv.entries.delete(path);
    else versions[versions.length - 1]!.deleted = new Date().toISOString();
  }

  addToken(token: string, o: TokenOptions = {}): void {
    const ttl = o.ttlSeconds ?? 0;
    const now = Date.now();
    this.tokens.set(token, {
      namespace: o.namespace ?? '',
      policies: o.policies ?? ['*'],
      renewable: o.renewable ?? ttl > 0,
      ttl,
      maxTtl: o.maxTtlSeconds ?? 0,
      createdAt: now,
      expiresAt: ttl > 0 ? now + ttl * 1000 : Infinity,
    });
  }

  revokeToken(token: string): void {
    this.tokens.delete(token);
  }

  /** Revoke every token AppRole has issued (e.g. to force a re-login). */
  revokeAppRoleTokens(): void {
    for (const [t, info] of this.tokens) if (info.policies.includes('approle-issued')) this.tokens.delete(t);
  }

  addAppRole(roleId: string, secretId: string, o: TokenOptions & { mount?: string } = {}): void {
    this.roles.set(roleId, {
      namespace: o.namespace ?? '',
      mount: o.mount ?? 'approle',
      secretId,
      ttl: o.ttlSeconds ?? 3600,
      maxTtl: o.maxTtlSeconds ?? 0,
      renewable: o.renewable ?? true,
      policies: o.policies ?? ['*'],
    });
  }

  count(filter: (r: VaultRequestRecord) => boolean = () => true): number {
    return this.requests.filter(filter).length;
  }

  /** Connections are reset (as if the process died); `up()` restores. */
  down(): void {
    this.mode = 'down';
    for (const s of this.sockets) s.destroy();
  }

  up(): void {
    this.mode = 'up';
  }

  /** Vault answers 503 {"errors":["Vault is sealed"]} to everything. */
  seal(): void {
    this.mode = 'sealed';
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private kv(mount: string, namespace: string): Kv {
    const kv = this.mounts.get(`${namespace}|${mount}`);
    if (!kv) throw new Error(`fake vault: no KV mount ${namespace}/${mount}; call enableKv first`);
    return kv;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'https://vault');
      const path = url.pathname.replace(/^\/v1\//, '');
      const namespace = String(req.headers['x-vault-namespace'] ?? '').replace(/^\/+|\/+$/g, '');
      const tokenHeader = req.headers['x-vault-token'];
      const token = typeof tokenHeader === 'string' ? tokenHeader : undefined;
      const send = (status: number, body: unknown): void => {
        const record = { method: req.method ?? '', path, namespace, hasToken: token !== undefined, status };
        this.requests.push(record);
        res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
        res.end(JSON.stringify(body));
        this.emit('request', record);
      };
      if (this.mode === 'sealed') return send(503, { errors: ['Vault is sealed'] });
      if (!url.pathname.startsWith('/v1/')) return send(404, { errors: [] });
      let body: Record<string, unknown> = {};
      if (chunks.length > 0) {
        try {
          body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        } catch {
          return send(400, { errors: ['failed to parse JSON input'] });
        }
      }
      const login = /^auth\/(.+)\/login$/.exec(path);
      if (req.method === 'POST' && login) return this.login(login[1]!, namespace, body, send);
      const auth = token !== undefined ? this.validToken(token, namespace) : undefined;
      if (!auth) return send(403, { errors: ['permission denied'] });
      if (req.method === 'POST' && path === 'auth/token/renew-self') return this.renew(token!, auth, send);
      if (req.method !== 'GET') return send(405, { errors: [] });
      if (!auth.policies.includes('*') && !auth.policies.some((p) => path.startsWith(p))) return send(403, { errors: ['permission denied'] });
      return this.read(path, namespace, send);
    });
  }

  private validToken(token: string, namespace: string): Token | undefined {
    const t = this.tokens.get(token);
    if (!t || t.namespace !== namespace) return undefined;
    if (Date.now() >= t.expiresAt) {
      this.tokens.delete(token);
      return undefined;
    }
    return t;
  }

  private login(mount: string, namespace: string, body: Record<string, unknown>, send: (s: number, b: unknown) => void): void {
    const role = typeof body.role_id === 'string' ? this.roles.get(body.role_id) : undefined;
    if (!role || role.mount !== mount || role.namespace !== namespace) return send(400, { errors: ['invalid role ID'] });
    if (body.secret_id !== role.secretId) return send(400, { errors: ['invalid secret id'] });
    const token = `hvs.${randomBytes(18).toString('base64url')}`;
    const now = Date.now();
    this.tokens.set(token, {
      namespace,
      policies: [...role.policies, 'approle-issued'],
      renewable: role.renewable,
      ttl: role.ttl,
      maxTtl: role.maxTtl,
      createdAt: now,
      expiresAt: role.ttl > 0 ? now + role.ttl * 1000 : Infinity,
    });
    send(200, this.authAnswer(token, role.ttl, role.renewable, role.policies));
  }

  private renew(token: string, t: Token, send: (s: number, b: unknown) => void): void {
    if (!t.renewable) return send(400, { errors: ['lease is not renewable'] });
    const now = Date.now();
    let ttl = t.ttl;
    if (t.maxTtl > 0) ttl = Math.max(0, Math.min(ttl, Math.floor((t.createdAt + t.maxTtl * 1000 - now) / 1000)));
    t.expiresAt = now + ttl * 1000;
    send(200, this.authAnswer(token, ttl, t.renewable, t.policies.filter((p) => p !== 'approle-issued')));
  }

  private authAnswer(token: string, ttl: number, renewable: boolean, policies: string[]): unknown {
    return {
      request_id: randomBytes(8).toString('hex'),
      lease_id: '',
      renewable: false,
      lease_duration: 0,
      data: null,
      wrap_info: null,
      warnings: null,
      auth: {
        client_token: token,
        accessor: randomBytes(12).toString('base64url'),
        policies: ['default', ...policies],
        token_policies: ['default', ...policies],
        metadata: {},
        lease_duration: ttl,
        renewable,
        entity_id: '',
        token_type: 'service',
        orphan: true,
      },
    };
  }

  private read(path: string, namespace: string, send: (s: number, b: unknown) => void): void {
    let mountName: string | undefined;
    for (const key of this.mounts.keys()) {
      const [ns, m] = key.split('|') as [string, string];
      if (ns === namespace && (path === m || path.startsWith(m + '/')) && (!mountName || m.length > mountName.length)) mountName = m;
    }
    if (!mountName) return send(404, { errors: [`no handler for route "${path}". route entry not found.`] });
    const kv = this.mounts.get(`${namespace}|${mountName}`)!;
    const rest = path.slice(mountName.length + 1);
    const envelope = (data: unknown): unknown => ({
      request_id: randomBytes(8).toString('hex'),
      lease_id: '',
      renewable: false,
      lease_duration: kv.version === 1 ? 2764800 : 0,
      data,
      wrap_info: null,
      warnings: null,
      auth: null,
    });
    if (kv.version === 1) {
      const entry = kv.entries.get(rest)?.[0];
      return entry?.data ? send(200, envelope(entry.data)) : send(404, { errors: [] });
    }
    if (!rest.startsWith('data/')) return send(404, { errors: [] });
    const versions = kv.entries.get(rest.slice(5));
    const latest = versions?.[versions.length - 1];
    if (!versions || !latest) return send(404, { errors: [] });
    const metadata = { created_time: latest.created, custom_metadata: null, deletion_time: latest.deleted, destroyed: false, version: versions.length };
    // Vault answers a deleted version with 404 and the metadata, data: null.
    if (latest.deleted) return send(404, envelope({ data: null, metadata }));
    return send(200, envelope({ data: latest.data, metadata }));
  }
}
