// Who may do what on the admin API. Each `admin.api_keys` entry has a role; the
// decision is made from the method and path alone, before any route runs, so a route
// added later (PUT /v1/<collection>/<id>, …) is covered by the rule of its shape:
//   viewer  GET / HEAD, outside the secrets area
//   editor  viewer + PUT / POST / PATCH / DELETE under /v1/{ssls,upstreams,routes}/
//   admin   everything: reload, /v1/secrets, /v1/secret_providers, anything else that mutates
// The secrets area is admin-only for reads too: a provider's address and credentials decide
// where the gateway sends its Vault token, so who may change them, or map them, is an admin.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AdminConfig } from '../config/types';

export const ROLES = ['viewer', 'editor', 'admin'] as const;
export type Role = (typeof ROLES)[number];

const RANK: Record<Role, number> = { viewer: 0, editor: 1, admin: 2 };

/** Collections an editor may write. */
export const EDITOR_COLLECTIONS: ReadonlySet<string> = new Set(['ssls', 'upstreams', 'routes']);
/** Admin-only for every method. */
export const SECRET_AREAS: ReadonlySet<string> = new Set(['secrets', 'secret_providers']);
const WRITE_METHODS: ReadonlySet<string> = new Set(['PUT', 'POST', 'PATCH', 'DELETE']);

/** A resolved key: its id (what the audit log and the log name) and role; the value stays here. */
export interface ApiKey {
  id: string;
  role: Role;
  key: string;
}

/** The authenticated caller as routes see it: never the key. */
export interface Principal {
  id: string;
  role: Role;
}

/** Role needed for `method` on `path` (a URL pathname, trailing slashes dropped). */
export function requiredRole(method: string, path: string): Role {
  // Empty segments are skipped so `/v1//secrets` is judged as `/v1/secrets` (it matches no
  // route either way; a stricter answer costs nothing).
  const [v1, collection] = path.split('/').filter((s) => s !== '');
  const area = v1 === 'v1' ? collection : undefined;
  if (area !== undefined && SECRET_AREAS.has(area)) return 'admin';
  if (method === 'GET' || method === 'HEAD') return 'viewer';
  if (area !== undefined && EDITOR_COLLECTIONS.has(area) && WRITE_METHODS.has(method)) return 'editor';
  return 'admin';
}

export function allows(role: Role, needed: Role): boolean {
  return RANK[role] >= RANK[needed];
}

/**
 * A key's id for logs and audit: its own `id`, or `sha256:` and 8 hex digits of the key's
 * SHA-256 (32 bits: names a random key without helping to guess it; give weak keys an id).
 */
export function derivedKeyId(key: string): string {
  return `sha256:${createHash('sha256').update(key).digest('hex').slice(0, 8)}`;
}

/** Config path of an entry's value: `admin.api_keys[0]` (plain string) or `admin.api_keys[0].key`. */
export function apiKeyPath(entry: AdminConfig['api_keys'][number], i: number): string {
  return typeof entry === 'string' ? `admin.api_keys[${i}]` : `admin.api_keys[${i}].key`;
}

/** The entries of `admin.api_keys` with their resolved values (`values`: config path → value). */
export function apiKeysOf(admin: AdminConfig | undefined, values: ReadonlyMap<string, string>): ApiKey[] {
  return (admin?.api_keys ?? []).map((entry, i) => {
    const key = values.get(apiKeyPath(entry, i)) ?? '';
    if (typeof entry === 'string') return { id: derivedKeyId(key), role: 'admin', key };
    return { id: entry.id ?? derivedKeyId(key), role: entry.role, key };
  });
}

interface Held {
  principal: Principal;
  digest: Buffer;
}

/** The accepted keys, as digests. Replaced whole on a reload: an old key stops working at once. */
export class KeyTable {
  private readonly held: Held[];

  constructor(keys: readonly ApiKey[]) {
    this.held = keys
      .filter((k) => k.key.length > 0)
      .map((k) => ({ principal: { id: k.id, role: k.role }, digest: digest(k.key) }));
  }

  /**
   * The caller of `given`, or undefined. Digests are compared in constant time, against
   * every entry (no early exit); a key listed twice gets its least privileged role.
   */
  match(given: unknown): Principal | undefined {
    if (typeof given !== 'string' || given.length === 0) return undefined;
    const d = digest(given);
    let found: Principal | undefined;
    for (const h of this.held) {
      const hit = timingSafeEqual(d, h.digest);
      if (hit && (found === undefined || RANK[h.principal.role] < RANK[found.role])) found = h.principal;
    }
    return found;
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

const CALLERS = new WeakMap<IncomingMessage, Principal>();

/** Set by the admin server once a request is authenticated. */
export function setCaller(req: IncomingMessage, p: Principal): void {
  CALLERS.set(req, p);
}

/** The key that authenticated `req` (undefined on the open routes). */
export function callerOf(req: IncomingMessage): Principal | undefined {
  return CALLERS.get(req);
}
