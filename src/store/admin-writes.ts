// Admin API writes: PUT / DELETE /v1/<collection>/<id> into the config store. One table of
// write routes, so one access check (roles) can wrap every write.
import type { IncomingMessage } from 'node:http';
import type { Handler } from '../admin/server';
import { auditWrite, type AuditLog } from '../primary/audit';
import type { GatewayConfig } from '../config/types';
import { STORED_COLLECTIONS, type StoredCollection } from '../config/load';
import type { EtcdStore } from './etcd-store';
import { ID, publicView, referrers } from './objects';

/** A JSON body larger than this is refused (an SSL object with a few PEM chains is ~10 KiB). */
const MAX_BODY = 4 * 1024 * 1024; // 4 MiB

export interface WriteTarget {
  readonly configStore: EtcdStore | undefined;
  readonly config: GatewayConfig | undefined;
  readonly configPath: string;
  /** Every write attempt that reached the store is audited (key id, before/after hashes). */
  readonly audit: AuditLog;
}

type Reply = Awaited<ReturnType<Handler>>;

/** `PUT /v1/<collection>/:id` and `DELETE /v1/<collection>/:id` for every stored collection. */
export function writeRoutes(t: WriteTarget): Record<string, Handler> {
  const routes: Record<string, Handler> = {};
  for (const c of STORED_COLLECTIONS) {
    routes[`PUT /v1/${c}/:id`] = (req, url, ctx) => audited(t, req, url, ctx, c, put);
    routes[`DELETE /v1/${c}/:id`] = (req, url, ctx) => audited(t, req, url, ctx, c, del);
  }
  return routes;
}

/**
 * Who wrote what: the object's stored value before and after (as hashes only), the status
 * and the new mod revision. A value may hold a literal key: only its hash is written.
 */
async function audited(
  t: WriteTarget, req: IncomingMessage, url: URL, ctx: Parameters<Handler>[2], c: StoredCollection, op: Op,
): Promise<Reply> {
  const id = idOf(url);
  const before = id !== '' ? t.configStore?.get(c, id)?.value : undefined;
  const r = await guarded(t, req, url, c, op);
  const body = r.body as { mod_revision?: number; error?: { code?: string } } | undefined;
  const after = r.status < 300 && req.method === 'PUT' && id !== '' ? t.configStore?.get(c, id)?.value : undefined;
  auditWrite({
    audit: t.audit, req, caller: ctx?.caller ?? null, method: req.method ?? '', collection: c,
    ...(id !== '' ? { id } : {}), status: r.status, before,
    // A refused write leaves the object as it was.
    after: r.status < 300 ? after : before,
    ...(body?.mod_revision !== undefined ? { revision: body.mod_revision } : {}),
    ...(body?.error?.code !== undefined ? { error: body.error.code } : {}),
  });
  return r;
}

function idOf(url: URL): string {
  try {
    return decodeURIComponent(url.pathname.replace(/\/+$/, '').split('/').pop() ?? '');
  } catch {
    return '';
  }
}

type Op = (s: EtcdStore, t: WriteTarget, req: IncomingMessage, c: StoredCollection, id: string) => Promise<Reply>;

async function guarded(t: WriteTarget, req: IncomingMessage, url: URL, c: StoredCollection, op: Op): Promise<Reply> {
  const s = t.configStore;
  if (!s) {
    req.resume();
    const message =
      `the Admin API is read-only: ${t.configPath} holds the objects. To write through the API, move ` +
      'ssls, upstreams, routes and secret_providers to etcd: set config_store.etcd in the config file and run ' +
      '`tlsgate push --config <old file> --store <new file>` (README "Config store (etcd)")';
    return fail(409, 'TLSGATE_E_STORE_READ_ONLY', message);
  }
  const id = idOf(url);
  const m = ifMatch(req);
  if (m !== undefined && !/^\d{1,19}$/.test(m)) {
    req.resume();
    return fail(400, 'TLSGATE_E_CONFIG_INVALID', 'If-Match must be the ETag of the object (its mod revision, "42")');
  }
  if (!ID.test(id)) {
    req.resume();
    return fail(400, 'TLSGATE_E_CONFIG_INVALID', `"${id}" is not a valid id (1-64 letters, digits, ".", "_", "-")`);
  }
  try {
    return await op(s, t, req, c, id);
  } catch (err) {
    const e = err as Error & { code?: string };
    if (e.code?.startsWith('TLSGATE_E_')) throw err;
    // The txn could not reach etcd: nothing was written (or it is unknown: the watch will tell).
    return fail(503, 'TLSGATE_E_STORE_UNAVAILABLE', `the config store did not answer: ${e.message}`);
  }
}

const put: Op = async (s, _t, req, c, id) => {
  const body = await readJson(req);
  if ('error' in body) return fail(body.status, 'TLSGATE_E_CONFIG_INVALID', body.error);
  const v = body.value;
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    return fail(400, 'TLSGATE_E_CONFIG_INVALID', 'the body must be one JSON object, as in the YAML file');
  const obj = v as Record<string, unknown>;
  if (obj.id !== undefined && obj.id !== id)
    return fail(
      400,
      'TLSGATE_E_CONFIG_INVALID',
      `the body's id ${JSON.stringify(obj.id)} differs from the URL's "${id}"`,
      [{ path: 'id', message: `must be "${id}" (or absent)` }],
    );
  const r = await s.put(c, id, obj, ifMatch(req));
  if (r.status < 300) {
    const b = r.body as { object: unknown };
    return { ...r, body: { ...b, object: publicView(b.object) } };
  }
  return r;
};

const del: Op = async (s, t, req, c, id) => {
  req.resume();
  const refs = t.config ? referrers(t.config, c, id) : [];
  if (refs.length) {
    const names = refs.map((r) => `${r.collection}/${r.id}.${r.path}`).join(', ');
    return {
      status: 409,
      body: {
        error: {
          code: 'TLSGATE_E_STORE_REFERENCED',
          message: `${c}/${id} is referenced by ${names}: change those first`,
          referrers: refs,
        },
      },
    };
  }
  const r = await s.delete(c, id, ifMatch(req));
  if (r === 'missing') return fail(404, 'TLSGATE_E_STORE_NOT_FOUND', `no ${c} object "${id}" in the config store`);
  return r;
};

/** `If-Match: "42"` (an ETag from a PUT) or `If-Match: 42`: the object's mod revision. */
function ifMatch(req: IncomingMessage): string | undefined {
  const h = req.headers['if-match'];
  if (typeof h !== 'string' || h.trim() === '') return undefined;
  return h.trim().replace(/^W\//, '').replace(/^"|"$/g, '');
}

async function readJson(req: IncomingMessage): Promise<{ value: unknown } | { status: number; error: string }> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > MAX_BODY) {
      req.destroy();
      return { status: 413, error: `the body is larger than ${MAX_BODY} bytes` };
    }
    chunks.push(c);
  }
  try {
    return { value: JSON.parse(Buffer.concat(chunks).toString('utf8')) };
  } catch (err) {
    return { status: 400, error: `the body is not JSON (${(err as Error).message})` };
  }
}

function fail(status: number, code: string, message: string, issues?: Array<{ path: string; message: string }>): Reply {
  return { status, body: { error: { code, message, ...(issues ? { issues } : {}) } } };
}
