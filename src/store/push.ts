// One-shot store operations of the CLI: list the objects (validate), copy a file's objects
// into etcd (push).
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { ConfigError, type ConfigIssue } from '../errors';
import { STORED_COLLECTIONS, type Overlay } from '../config/load';
import { createClient, diagnoseTls } from './etcd-client';
import { keyOf, parseStored, toOverlay, type StoredObject } from './objects';
import type { EtcdSettings } from './settings';

/** etcd's default --max-txn-ops is 128: a push writes in transactions of this many puts. */
const TXN_OPS = 100;

/** Every object under the prefix; an invalid one is a ConfigIssue at its key. */
export async function listOnce(s: EtcdSettings): Promise<{ overlay: Overlay; issues: ConfigIssue[] }> {
  const client = createClient(s);
  try {
    const res = await client.getAll().prefix(`${s.prefix}/`).exec();
    const objects: StoredObject[] = [];
    const issues: ConfigIssue[] = [];
    for (const kv of res.kvs) {
      const key = kv.key.toString();
      const p = parseStored(s.prefix, key, kv.value.toString(), kv.mod_revision);
      if (p.ok) objects.push(p.obj);
      else issues.push({ path: key, code: 'TLSGATE_E_STORE_OBJECT', message: p.message, severity: 'error' });
    }
    return { overlay: toOverlay(objects, `list:${res.header.revision}`), issues };
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

async function unavailable(s: EtcdSettings, err: unknown): Promise<ConfigError> {
  const secure = !!s.tls || s.endpoints.some((e) => e.startsWith('https://'));
  const cause = secure ? await diagnoseTls(s.endpoints[0]!, s).catch(() => null) : null;
  const message = cause ?? `etcd did not answer: ${(err as Error).message}`;
  return new ConfigError([
    { path: 'config_store.etcd', code: 'TLSGATE_E_STORE_UNAVAILABLE', message, severity: 'error' },
  ]);
}
