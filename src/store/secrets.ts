// The built-in secret store (`$secret://local/<id>`): values sealed with AES-256-GCM under a
// key-encryption key (KEK) from the node's own config file, stored at `<prefix>/secrets/<id>`
// as `{ v: 1, kek, iv, tag, ct, created, updated }`. The record's version, KEK id and the
// secret's id are the additional authenticated data, so a record copied under another id,
// or relabelled with another KEK id, does not decrypt. Values never leave this module
// except to the secret resolution path (src/secrets/): no log, status or answer holds one.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { SecretError } from '../errors';
import type { Etcd3 } from 'etcd3';
import type { LocalSecrets } from '../secrets/resolve';

export const SECRETS_COLLECTION = 'secrets';

/** Resolved KEKs: id → 32-byte key, and the one new values are sealed with. */
export interface KeyRing {
  keys: ReadonlyMap<string, Buffer>;
  active: string;
}

export interface SealedRecord {
  v: 1;
  kek: string;
  iv: string;
  tag: string;
  ct: string;
  created: string;
  updated: string;
}

/** A KEK value from the config: 64 hex digits or base64 of 32 bytes; a message (never the value) otherwise. */
export function parseKek(text: string): Buffer | string {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) {
    const b = Buffer.from(t, t.includes('-') || t.includes('_') ? 'base64url' : 'base64');
    if (b.length === 32) return b;
    return `is ${b.length} bytes once base64-decoded, expected 32 (base64 or 64 hex digits)`;
  }
  return 'is neither base64 nor hex of 32 bytes (e.g. `openssl rand -base64 32`)';
}

function aad(id: string, kek: string): Buffer {
  return Buffer.from(`tlsgate-secret\0v1\0${kek}\0${id}`);
}

/** Seal `value` as secret `id` under the ring's active KEK; `created` kept from an earlier version. */
export function seal(id: string, value: string, ring: KeyRing, created?: string): string {
  const key = ring.keys.get(ring.active)!;
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad(id, ring.active));
  const ct = Buffer.concat([c.update(value, 'utf8'), c.final()]);
  const now = new Date().toISOString();
  const rec: SealedRecord = {
    v: 1, kek: ring.active, iv: iv.toString('base64'), tag: c.getAuthTag().toString('base64'),
    ct: ct.toString('base64'), created: created ?? now, updated: now,
  };
  return JSON.stringify(rec);
}

/** The record's fields, or why it is not one (never quoting the text). */
export function parseRecord(text: string): SealedRecord | string {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch {
    return 'the stored value is not JSON';
  }
  const o = r as Partial<SealedRecord> | null;
  if (typeof o !== 'object' || o === null || o.v !== 1) return 'the stored value is not a v1 sealed secret record';
  for (const f of ['kek', 'iv', 'tag', 'ct'] as const)
    if (typeof o[f] !== 'string' || o[f] === '') return `the stored record has no "${f}"`;
  return {
    v: 1, kek: o.kek!, iv: o.iv!, tag: o.tag!, ct: o.ct!,
    created: typeof o.created === 'string' ? o.created : '', updated: typeof o.updated === 'string' ? o.updated : '',
  };
}

/** Decrypt secret `id`; throws TLSGATE_E_SECRET_DECRYPT naming the secret and the KEK id. */
export function open(id: string, rec: SealedRecord, ring: KeyRing): string {
  const name = `secrets/${id}`;
  const key = ring.keys.get(rec.kek);
  if (!key) {
    const known = [...ring.keys.keys()].join(', ');
    throw new SecretError('TLSGATE_E_SECRET_DECRYPT', name,
      `${name} is sealed under KEK "${rec.kek}", which config_store.etcd.secrets.keys does not hold (${known})`);
  }
  try {
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(rec.iv, 'base64'));
    d.setAAD(aad(id, rec.kek));
    d.setAuthTag(Buffer.from(rec.tag, 'base64'));
    return Buffer.concat([d.update(Buffer.from(rec.ct, 'base64')), d.final()]).toString('utf8');
  } catch {
    throw new SecretError('TLSGATE_E_SECRET_DECRYPT', name,
      `${name} does not decrypt with KEK "${rec.kek}": the key differs from the one that sealed it, ` +
      'or the record was altered or copied from another id');
  }
}

/** What GET /v1/secrets shows of a secret: never its value; a 12-hex SHA-256 prefix tells versions apart. */
export interface SecretInfo {
  id: string;
  kek: string;
  created: string;
  updated: string;
  mod_revision: number;
  sha256_prefix: string | null;
  /** When the record in etcd is refused: the version this node still serves. */
  served_mod_revision?: number;
  error?: string;
}

export function hashPrefix(value: string): string {
  return createHash('sha256').update(value).digest('hex').slice(0, 12);
}

/** A decrypted secret as this node serves it. */
export interface Opened {
  value: string;
  modRevision: string;
  kek: string;
  created: string;
  updated: string;
}

/** `$secret://local/<id>` against a map of opened secrets. */
export function localView(m: ReadonlyMap<string, Opened>): LocalSecrets {
  return {
    get(id, reference) {
      const s = m.get(id);
      if (s === undefined)
        throw new SecretError('TLSGATE_E_SECRET_LOCAL', reference,
          `${reference}: the built-in secret store has no secret "${id}" (PUT /v1/secrets/${id})`);
      return s.value;
    },
  };
}

const LOCAL_REF = /\$secret:\/\/local\/([A-Za-z0-9][A-Za-z0-9._-]{0,63})(?![A-Za-z0-9._-])/g;

/** Ids of built-in secrets an object's value references. */
export function localRefs(value: unknown): Set<string> {
  const out = new Set<string>();
  const text = JSON.stringify(value);
  if (!text.includes('$secret://local/')) return out;
  for (const m of text.matchAll(LOCAL_REF)) out.add(m[1]!);
  return out;
}

export interface RewrapReport {
  active: string;
  rewrapped: number;
  unchanged: number;
  failed: Array<{ id: string; message: string }>;
  /** etcd revision of the last write (0: none). */
  revision: number;
}

/** Re-seal `<prefix>/secrets/*` under the ring's active KEK (also `tlsgate secrets rewrap`). */
export async function rewrapAll(client: Etcd3, prefix: string, ring: KeyRing): Promise<RewrapReport> {
  const head = `${prefix}/${SECRETS_COLLECTION}/`;
  const res = await client.getAll().prefix(head).exec();
  const out: RewrapReport = { active: ring.active, rewrapped: 0, unchanged: 0, failed: [], revision: 0 };
  for (const kv of res.kvs) {
    const id = kv.key.toString().slice(head.length);
    const rec = parseRecord(kv.value.toString());
    if (typeof rec === 'string') {
      out.failed.push({ id, message: rec });
      continue;
    }
    if (rec.kek === ring.active) {
      out.unchanged++;
      continue;
    }
    let value: string;
    try {
      value = open(id, rec, ring);
    } catch (err) {
      out.failed.push({ id, message: (err as Error).message });
      continue;
    }
    const t = await client
      .if(kv.key.toString(), 'Mod', '==', kv.mod_revision)
      .then(client.put(kv.key.toString()).value(seal(id, value, ring, rec.created || undefined)))
      .commit();
    if (!t.succeeded) out.failed.push({ id, message: 'changed while rewrapping: run rewrap again' });
    else {
      out.rewrapped++;
      out.revision = Number(t.header.revision);
    }
  }
  return out;
}
