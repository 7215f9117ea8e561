// Objects of a config store: keys, the overlay the config build reads, which object an issue
// blames, who references an object, and the view of an object the Admin API may show.
import type { ConfigIssue } from '../errors';
import type { GatewayConfig } from '../config/types';
import { STORED_COLLECTIONS, type Overlay, type StoredCollection } from '../config/load';
import { secretFields } from '../config/secret-fields';
import { isReference, parseValue } from '../secrets/reference';

export const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface StoredObject {
  key: string;
  collection: StoredCollection;
  id: string;
  value: Record<string, unknown>;
  modRevision: string;
}

export function isCollection(c: string): c is StoredCollection {
  return (STORED_COLLECTIONS as readonly string[]).includes(c);
}

export function keyOf(prefix: string, collection: StoredCollection, id: string): string {
  return `${prefix}/${collection}/${id}`;
}

/** A value read from etcd: the object, or why it is refused. */
export function parseStored(
  prefix: string,
  key: string,
  text: string,
  modRevision: string,
): { ok: true; obj: StoredObject } | { ok: false; message: string } {
  const rest = key.slice(prefix.length + 1).split('/');
  const [collection, id] = rest;
  if (rest.length !== 2 || collection === undefined || id === undefined || !isCollection(collection))
    return { ok: false, message: `not <prefix>/<${STORED_COLLECTIONS.join('|')}>/<id>` };
  if (!ID.test(id)) return { ok: false, message: `"${id}" is not a valid id (1-64 letters, digits, ".", "_", "-")` };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, message: `the value is not JSON (${(err as Error).message})` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return { ok: false, message: 'the value must be a JSON object' };
  const v = value as Record<string, unknown>;
  if (v.id !== undefined && v.id !== id)
    return { ok: false, message: `id ${JSON.stringify(v.id)} differs from the key's last segment "${id}"` };
  return { ok: true, obj: { key, collection, id, value: { ...v, id }, modRevision } };
}

/** The objects as the config build reads them: each collection in id order (issue paths index into it). */
export function toOverlay(objects: Iterable<StoredObject>, revision: string): Overlay & { keys: string[][] } {
  const by: Record<StoredCollection, StoredObject[]> = { ssls: [], upstreams: [], routes: [], secret_providers: [] };
  for (const o of objects) by[o.collection].push(o);
  const collections = {} as Overlay['collections'];
  const keys: string[][] = [];
  for (const c of STORED_COLLECTIONS) {
    const list = by[c].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    collections[c] = list.map((o) => o.value);
    keys.push(list.map((o) => o.key));
  }
  return { revision, collections, keys };
}

const AT = /^(ssls|upstreams|routes|secret_providers)\[(\d+)\](.*)$/;

/** The store key an issue is about (`ssls[3].cert` → its key), and the path inside that object. */
export function blame(issue: ConfigIssue, overlay: { keys: string[][] }): { key: string; inner: string } | undefined {
  const m = AT.exec(issue.path);
  if (!m) return undefined;
  const key = overlay.keys[STORED_COLLECTIONS.indexOf(m[1] as StoredCollection)]?.[Number(m[2])];
  return key === undefined ? undefined : { key, inner: m[3]!.replace(/^\./, '') };
}

/** `ssls[3].cert` → `ssls/web.cert`: names the object, not a position the user never sees. */
export function readablePath(issue: ConfigIssue, overlay: { keys: string[][] }, prefix: string): string {
  const b = blame(issue, overlay);
  if (!b) return issue.path;
  const name = b.key.slice(prefix.length + 1);
  return b.inner ? `${name}${b.inner.startsWith('[') ? '' : '.'}${b.inner}` : name;
}

/** `… in ssls[0].cert …` inside a message → `… in ssls/web.cert …`. */
export function readableText(text: string, overlay: { keys: string[][] }, prefix: string): string {
  return text.replace(/\b(ssls|upstreams|routes|secret_providers)\[(\d+)\]/g, (all, c: string, n: string) => {
    const key = overlay.keys[STORED_COLLECTIONS.indexOf(c as StoredCollection)]?.[Number(n)];
    return key === undefined ? all : key.slice(prefix.length + 1);
  });
}

export interface Referrer {
  collection: 'listeners' | StoredCollection;
  id: string;
  path: string;
}

/** What references `collection/id` in a config: a delete is refused while anything does. */
export function referrers(c: GatewayConfig, collection: StoredCollection, id: string): Referrer[] {
  const out: Referrer[] = [];
  if (collection === 'ssls') {
    for (const l of c.listeners)
      if (l.default_ssl === id) out.push({ collection: 'listeners', id: l.name, path: 'default_ssl' });
    for (const u of c.upstreams)
      if (u.tls?.client_ssl === id) out.push({ collection: 'upstreams', id: u.id, path: 'tls.client_ssl' });
  }
  if (collection === 'upstreams')
    for (const r of c.routes) if (r.upstream === id) out.push({ collection: 'routes', id: r.id, path: 'upstream' });
  if (collection === 'secret_providers') {
    for (const [path, raw] of secretFields(c)) {
      const p = parseValue(raw);
      if (!p.ok || !p.ref || (p.ref.kind !== 'vault' && p.ref.kind !== 'aws') || p.ref.provider !== id) continue;
      const m = AT.exec(path);
      const obj = m ? (c[m[1] as StoredCollection] as Array<{ id: string }>)[Number(m[2])] : undefined;
      out.push(
        m && obj
          ? { collection: m[1] as StoredCollection, id: obj.id, path: m[3]!.replace(/^\./, '') }
          : { collection: 'listeners', id: '(file)', path },
      );
    }
  }
  return out;
}

/** What references the built-in secret `id` (`$secret://local/<id>`): its delete is refused while anything does. */
export function secretReferrers(c: GatewayConfig, id: string): Referrer[] {
  const out: Referrer[] = [];
  for (const [path, raw] of secretFields(c)) {
    const p = parseValue(raw);
    if (!p.ok || p.ref?.kind !== 'local' || p.ref.id !== id) continue;
    const m = AT.exec(path);
    const obj = m ? (c[m[1] as StoredCollection] as Array<{ id: string }>)[Number(m[2])] : undefined;
    out.push(
      m && obj
        ? { collection: m[1] as StoredCollection, id: obj.id, path: m[3]!.replace(/^\./, '') }
        : { collection: 'listeners', id: '(file)', path },
    );
  }
  return out;
}

const SENSITIVE = new Set(['key', 'keys', 'token', 'secret_id', 'password', 'secret_access_key', 'session_token']);
const PRIVATE_PEM = /-----BEGIN [A-Z ]*PRIVATE KEY-----/;

/** An object as the Admin API shows it: references as text, literal keys and credentials never. */
export function publicView(v: unknown, field = ''): unknown {
  if (typeof v === 'string') {
    if (isReference(v)) return v;
    return SENSITIVE.has(field) || PRIVATE_PEM.test(v) ? '<redacted>' : v;
  }
  if (Array.isArray(v)) return v.map((x) => publicView(x, field));
  if (typeof v === 'object' && v !== null)
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, publicView(x, k)]));
  return v;
}
