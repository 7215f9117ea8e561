// One-shot store operations of the CLI: list the objects (validate), copy a file's objects
// into etcd (push).
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { ConfigError, type ConfigIssue } from '../errors';
import { STORED_COLLECTIONS, type Overlay } from '../config/load';
import { createClient, diagnoseTls } from './etcd-client';
import { keyOf, parseStored, toOverlay, type StoredObject } from './objects';
import type { EtcdSettings } from './settings';
import type { LocalSecrets } from '../secrets/resolve';
import { SECRETS_COLLECTION, localView, open, parseRecord, rewrapAll, type Opened, type RewrapReport } from './secrets';

/** etcd's default --max-txn-ops is 128: a push writes in transactions of this many puts. */
const TXN_OPS = 100;

/** Every object under the prefix; an invalid one is a ConfigIssue at its key. */
export async function listOnce(
  s: EtcdSettings,
): Promise<{ overlay: Overlay; issues: ConfigIssue[]; local: LocalSecrets }> {
  const client = createClient(s);
  try {
    const res = await client.getAll().prefix(`${s.prefix}/`).exec();
    const objects: StoredObject[] = [];
    const issues: ConfigIssue[] = [];
    const opened = new Map<string, Opened>();
    const secretsAt = `${s.prefix}/${SECRETS_COLLECTION}/`;
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      if (key.startsWith(secretsAt)) {
        const o = openOnce(key.slice(secretsAt.length), kv.value.toString(), kv.mod_revision, s);
        if (typeof o === 'string')
          issues.push({ path: key, code: 'TLSGATE_E_SECRET_DECRYPT', message: o, severity: 'error' });
        else opened.set(key.slice(secretsAt.length), o);
        continue;
      }
      const p = parseStored(s.prefix, key, kv.value.toString(), kv.mod_revision);
      if (p.ok) objects.push(p.obj);
      else issues.push({ path: key, code: 'TLSGATE_E_STORE_OBJECT', message: p.message, severity: 'error' });
    }
    return { overlay: toOverlay(objects, `list:${res.header.revision}`), issues, local: localView(opened) };
  } catch (err) {
    throw await unavailable(s, err);
  } finally {
    client.close();
  }
}

/** Copy the stored collections of the YAML file at `file` into etcd; returns the count per collection. */
export async function pushFile(file: string, s: EtcdSettings): Promise<Record<string, number>> {
  const raw = parseDocument(await readFile(file, 'utf8')).toJS({ maxAliasCount: 100 }) as Record<string, unknown>;
  const puts: Array<[string, string]> = [];
  const counts: Record<string, number> = {};
  for (const c of STORED_COLLECTIONS) {
    const list = Array.isArray(raw[c]) ? (raw[c] as Array<Record<string, unknown>>) : [];
    counts[c] = list.length;
    for (const o of list) puts.push([keyOf(s.prefix, c, String(o.id)), JSON.stringify(o)]);
  }
  const client = createClient(s);
  try {
    for (let i = 0; i < puts.length; i += TXN_OPS) {
      // Always true (a version is never negative): the puts of one batch apply together.
      const txn = client.if(`${s.prefix}/`, 'Version', '>', -1);
      txn.then(...puts.slice(i, i + TXN_OPS).map(([k, v]) => client.put(k).value(v)));
      await txn.commit();
    }
  } catch (err) {
    throw await unavailable(s, err);
  } finally {
    client.close();
  }
  return counts;
}

function openOnce(id: string, text: string, modRevision: string, s: EtcdSettings): Opened | string {
  if (!s.secrets) return `secrets/${id} cannot be decrypted: config_store.etcd.secrets is not set`;
  const rec = parseRecord(text);
  if (typeof rec === 'string') return `secrets/${id}: ${rec}`;
  try {
    return { value: open(id, rec, s.secrets), modRevision, kek: rec.kek, created: rec.created, updated: rec.updated };
  } catch (err) {
    return (err as Error).message;
  }
}

/** `tlsgate secrets rewrap`: every secret re-sealed under the active KEK. */
export async function rewrapOnce(s: EtcdSettings): Promise<RewrapReport> {
  const client = createClient(s);
  try {
    return await rewrapAll(client, s.prefix, s.secrets!);
  } catch (err) {
    throw await unavailable(s, err);
  } finally {
    client.close();
  }
}

async function unavailable(s: EtcdSettings, err: unknown): Promise<ConfigError> {
  const secure = !!s.tls || s.endpoints.some((e) => e.startsWith('https://'));
  const cause = secure ? await diagnoseTls(s.endpoints[0]!, s).catch(() => null) : null;
  const message = cause ?? `etcd did not answer: ${(err as Error).message}`;
  return new ConfigError([
    { path: 'config_store.etcd', code: 'TLSGATE_E_STORE_UNAVAILABLE', message, severity: 'error' },
  ]);
}
