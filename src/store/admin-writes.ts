// Admin API writes: PUT / DELETE /v1/<collection>/<id> into the config store. One table of
// write routes, so one access check (roles) can wrap every write.
import type { IncomingMessage } from 'node:http';
import type { Handler } from '../admin/server';
import { auditWrite, type AuditLog } from '../primary/audit';
import type { GatewayConfig } from '../config/types';
import { STORED_COLLECTIONS, type StoredCollection } from '../config/load';
import type { EtcdStore } from './etcd-store';
import { ID, publicView, referrers, secretReferrers } from './objects';

/** A JSON body larger than this is refused (an SSL object with a few PEM chains is ~10 KiB). */
const MAX_BODY = 4 * 1024 * 1024; // 4 MiB
/** A built-in secret's value (a PEM chain is a few KiB). */
const MAX_SECRET = 1024 * 1024; // 1 MiB

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
  return { ...routes, ...secretRoutes(t) };
}

/**
 * The built-in secret store: write-only values. GET lists ids and metadata; PUT takes
 * `{"value": "…"}` (Content-Type: application/json) or the value itself as the body (a PEM
 * file: any other type); DELETE refuses while anything references `$secret://local/<id>`.
 * The audit names the secret and hashes its record's metadata, never the value.
 */
function secretRoutes(t: WriteTarget): Record<string, Handler> {
  const meta = (id: string): unknown => t.configStore?.listSecrets().find((s) => s.id === id);
  const write = async (req: IncomingMessage, url: URL, ctx: Parameters<Handler>[2], op: Op): Promise<Reply> => {
    const id = idOf(url);
    const before = meta(id);
    const r = await guarded(t, req, url, 'secrets', op);
    const after = meta(id);
    const body = r.body as { mod_revision?: number; revision?: number; error?: { code?: string } } | undefined;
    const rev = body?.mod_revision ?? body?.revision;
    auditWrite({
      audit: t.audit, req, caller: ctx?.caller ?? null, method: req.method ?? '', collection: 'secrets', id,
      status: r.status, before, after: r.status < 300 ? after : before,
      ...(rev !== undefined ? { revision: rev } : {}),
      ...(body?.error?.code !== undefined ? { error: body.error.code } : {}),
    });
    return r;
  };
  return {
    'GET /v1/secrets': async () => {
      const s = t.configStore;
      return { status: 200, body: { enabled: !!s?.secretsEnabled, secrets: s?.listSecrets() ?? [] } };
    },
    'PUT /v1/secrets/:id': (req, url, ctx) => write(req, url, ctx, putSecret),
    'DELETE /v1/secrets/:id': (req, url, ctx) => write(req, url, ctx, delSecret),
    'POST /v1/secrets/rewrap': async (req, _url, ctx) => {
      req.resume();
      const s = t.configStore;
      const r: Reply = !s?.secretsEnabled
        ? notEnabled(t)
        : await s.rewrap().then(
            (x) => ({ status: x.failed.length ? 207 : 200, body: x }),
            (err: Error) => fail(503, 'TLSGATE_E_STORE_UNAVAILABLE', `the config store did not answer: ${err.message}`),
          );
      auditWrite({ audit: t.audit, req, caller: ctx?.caller ?? null, method: 'POST', collection: 'secrets',
        id: 'rewrap', status: r.status });
      return r;
    },
  };
}

function notEnabled(t: WriteTarget): Reply {
  return fail(409, 'TLSGATE_E_SECRET_LOCAL', `the built-in secret store is off: set config_store.etcd.secrets ` +
    `(keys and active) in ${t.configPath} (README "Built-in secret store")`);
}

const putSecret: Op = async (s, t, req, _c, id) => {
  if (!s.secretsEnabled) {
    req.resume();
    return notEnabled(t);
  }
  const json = /^application\/json\b/i.test(req.headers['content-type'] ?? '');
  const raw = await readBody(req);
  if ('error' in raw) return fail(raw.status, 'TLSGATE_E_CONFIG_INVALID', raw.error);
  let value: unknown = raw.text;
  if (json) {
    try {
      value = (JSON.parse(raw.text) as { value?: unknown } | null)?.value;
    } catch (err) {
      return fail(400, 'TLSGATE_E_CONFIG_INVALID', `the body is not JSON (${(err as Error).message})`);
    }
  }
  if (typeof value !== 'string' || value.length === 0)
    return fail(400, 'TLSGATE_E_CONFIG_INVALID', json
      ? 'the body must be {"value": "<non-empty string>"}'
      : 'the body (the value itself) is empty', [{ path: 'value', message: 'must be a non-empty string' }]);
  // Sealed and base64-encoded it grows by a third: etcd refuses requests over 1.5 MiB by default.
  if (Buffer.byteLength(value) > MAX_SECRET)
    return fail(413, 'TLSGATE_E_CONFIG_INVALID', `a secret value is at most ${MAX_SECRET} bytes`);
  return s.putSecret(id, value, ifMatch(req));
};

const delSecret: Op = async (s, t, req, _c, id) => {
  req.resume();
  const refs = t.config ? secretReferrers(t.config, id) : [];
  if (refs.length) {
    const names = refs.map((r) => `${r.collection}/${r.id}.${r.path}`).join(', ');
    return {
      status: 409,
      body: {
        error: {
          code: 'TLSGATE_E_STORE_REFERENCED',
          message: `secrets/${id} is referenced by ${names}: change those first`,
          referrers: refs,
        },
      },
    };
  }
  const r = await s.deleteSecret(id, ifMatch(req));
  if (r === 'missing') return fail(404, 'TLSGATE_E_STORE_NOT_FOUND', `no secret "${id}" in the built-in secret store`);
  return r;
};

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

type Op = (
  s: EtcdStore, t: WriteTarget, req: IncomingMessage, c: StoredCollection | 'secrets', id: string,
) => Promise<Reply>;

async function guarded(
  t: WriteTarget, req: IncomingMessage, url: URL, c: StoredCollection | 'secrets', op: Op,
): Promise<Reply> {
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

const put: Op = async (s, _t, req, c0, id) => {
  const c = c0 as StoredCollection;
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

const del: Op = async (s, t, req, c0, id) => {
  const c = c0 as StoredCollection;
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
  const b = await readBody(req);
  if ('error' in b) return b;
  try {
    return { value: JSON.parse(b.text) };
  } catch (err) {
    return { status: 400, error: `the body is not JSON (${(err as Error).message})` };
  }
}

async function readBody(req: IncomingMessage): Promise<{ text: string } | { status: number; error: string }> {
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
  return { text: Buffer.concat(chunks).toString('utf8') };
}

function fail(status: number, code: string, message: string, issues?: Array<{ path: string; message: string }>): Reply {
  return { status, body: { error: { code, message, ...(issues ? { issues } : {}) } } };
}
