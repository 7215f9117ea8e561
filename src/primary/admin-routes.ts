// Admin endpoints over the primary's state. Nothing here reads a key: SSL objects
// are shown from the validation details (subject, fingerprint, …) and the source
// of each value (reference text or "literal"), never the value.
import type { Denied, Handler } from '../admin/server';
import { SniMap } from '../routing/sni-map';
import { publicProviderConfig } from '../secrets/providers';
import type { SslDetails } from '../snapshot/compile';
import { labelKeyProblem, labelValueProblem } from '../config/declaration';
import { auditWrite } from './audit';
import type { Primary } from './primary';
import { writeRoutes } from '../store/admin-writes';

export function adminRoutes(p: Primary): {
  routes: Record<string, Handler>;
  open: Record<string, Handler>;
  onDenied: (d: Denied) => void;
  writes: Record<string, Handler>;
} {
  let sniCache: { version: number; map: SniMap } | undefined;
  const sniMap = (): SniMap => {
    const cur = p.current!;
    if (sniCache?.version !== cur.snapshot.version)
      sniCache = { version: cur.snapshot.version, map: new SniMap(cur.snapshot.ssls, cur.snapshot.sni) };
    return sniCache.map;
  };
  const view = (d: SslDetails): SslView => sslView(p, d);

  return {
    // A write refused by role is audited like any other write attempt; a refused read is only logged.
    onDenied: (d) => {
      if (d.method === 'GET') return;
      const [, collection = d.path, id] = d.path.split('/').filter((x) => x !== '').slice(0, 3);
      auditWrite({ audit: p.audit, caller: d.caller, method: d.method, collection, status: 403,
        ...(id !== undefined ? { id: safeDecode(id) } : {}), error: 'TLSGATE_E_ADMIN_FORBIDDEN' });
    },
    // PUT / DELETE /v1/<collection>/:id into the config store (src/store/admin-writes.ts).
    writes: writeRoutes(p),
    open: {
      'GET /healthz': async () => ({ status: 200, body: { ok: true, version: p.status().version } }),
    },
    routes: {
      'GET /v1/status': async () => ({ status: 200, body: p.status() }),
      'POST /v1/reload': async (_req, _url, { caller }) => {
        // The actor is the key's id (its own, or a digest prefix), never the key.
        // The config's content hash before and after (equal: nothing changed, or refused).
        const hash = (): string | null => (p.current ? `sha256:${p.current.contentHash}` : null);
        const beforeHash = hash();
        // Answers once every worker serves the new version, or with the reason one could not.
        const r = await p.reload('admin', `admin-api:${caller?.id ?? 'anonymous'}`);
        const status = r.ok ? 200 : 422;
        const version = r.version;
        auditWrite({ audit: p.audit, caller, method: 'POST', collection: 'reload', status, version, beforeHash,
          afterHash: hash() });
        return { status, body: r };
      },
      'GET /v1/ssls': async (_req, url) => {
        const f = labelFilter(url);
        if ('error' in f) return f.error;
        const cfg = p.current!.resolved.config.ssls;
        const ssls = p.current!.details.filter((_, i) => f.match(cfg[i]?.labels)).map(view);
        return { status: 200, body: { version: p.current!.snapshot.version, ssls } };
      },
      'GET /v1/ssls/:id': async (_req, url) => {
        const id = decodeURIComponent(url.pathname.split('/').pop() ?? '');
        const d = p.current!.details.find((x) => x.id === id);
        return d
          ? { status: 200, body: view(d) }
          : { status: 404, body: { error: { code: 'TLSGATE_E_REF_UNKNOWN', message: `no SSL object "${id}"` } } };
      },
      'GET /v1/sni': async (_req, url) => {
        const name = url.searchParams.get('name');
        if (!name)
          return {
            status: 400,
            body: { error: { code: 'TLSGATE_E_CONFIG_INVALID', message: 'query parameter name is required' } },
          };
        const map = sniMap();
        const listeners = p.current!.snapshot.listeners.map((l) => {
          const r = map.lookup(name, l.defaultSsl);
          return { listener: l.name, ssl: r.ssl?.id ?? null, match: r.match, mtls: !!r.ssl?.clientCa };
        });
        return { status: 200, body: { name, listeners } };
      },
      'GET /v1/upstreams': async (_req, url) => {
        const f = labelFilter(url);
        if ('error' in f) return f.error;
        const stats = await p.collectStats();
        const snap = p.current!.snapshot;
        const meta = new Map(p.current!.resolved.config.upstreams.map((u) => [u.id, u]));
        const upstreams = snap.upstreams.filter((u) => f.match(meta.get(u.id)?.labels)).map((u) => {
          const probes = p.checks.view(u.id);
          const balance = u.balance ?? { type: 'roundrobin' as const };
          return {
            id: u.id,
            ...metaView(meta.get(u.id)),
            scheme: u.scheme,
            type: balance.type,
            ...(balance.type === 'chash' ? { hash_on: balance.hashOn, key: balance.key } : {}),
            active_checks: probes !== undefined,
            nodes: u.nodes.map((n) => {
              // A node is healthy when no worker has it in back-off and active checks (if any) pass.
              const seen = stats.flatMap((s) =>
                s.upstreams
                  .filter((h) => h.id === u.id)
                  .flatMap((h) => h.nodes.filter((x) => x.host === n.host && x.port === n.port)),
              );
              const active = probes?.get(`${n.host}:${n.port}`);
              return {
                host: n.host,
                port: n.port,
                weight: n.weight,
                healthy: seen.every((x) => x.healthy) && active?.healthy !== false,
                failures: seen.reduce((a, x) => a + x.failures, 0),
                retry_at: seen.reduce<number | null>(
                  (a, x) => (x.retryAt !== null && (a === null || x.retryAt > a) ? x.retryAt : a),
                  null,
                ),
                // Requests in flight, summed over workers (counted for least_conn and chash upstreams).
                in_flight: seen.reduce((a, x) => a + (x.inflight ?? 0), 0),
                active: active === undefined ? null : {
                  state: active.healthy ? 'healthy' : 'unhealthy',
                  successes: active.successes,
                  http_failures: active.http_failures,
                  tcp_failures: active.tcp_failures,
                  timeouts: active.timeouts,
                  probes: active.probes,
                  last: active.last,
                },
              };
            }),
          };
        });
        return { status: 200, body: { version: snap.version, workers: stats.length, upstreams } };
      },
      'GET /v1/routes': async (_req, url) => {
        const f = labelFilter(url);
        if ('error' in f) return f.error;
        const routes = p.current!.resolved.config.routes.filter((r) => f.match(r.labels)).map((r) => ({
          ...r,
          ...metaView(r),
        }));
        return { status: 200, body: { version: p.current!.snapshot.version, routes } };
      },
      'GET /v1/secret_providers': async () => {
        const cur = p.current!;
        const stale = p.status().stale_secrets;
        const providers = cur.resolved.config.secret_providers.map((cfg) => ({
          // Credentials show as their reference text, or "<redacted>" when literal.
          ...publicProviderConfig(cfg),
          // The reference list: which fields use this provider (deleting it is refused while any does).
          referenced_by: [...cur.resolved.refs]
            .filter(([, r]) => (r.kind === 'vault' || r.kind === 'aws') && r.provider === cfg.id)
            .map(([path, r]) => ({ path, reference: r.text })),
          stale: stale.filter((e) => e.provider === cfg.id),
        }));
        return { status: 200, body: { version: cur.snapshot.version, providers } };
      },
      'GET /metrics': async () => ({ status: 200, body: await p.metricsText(), type: p.metrics.contentType }),
    },
  };
}

type SslView = ReturnType<typeof sslView>;

function sslView(p: Primary, d: SslDetails) {
  const snap = p.current!.snapshot;
  const leaf = d.certs[0];
  const now = Date.now();
  return {
    id: d.id,
    ...metaView(p.current!.resolved.config.ssls.find((s) => s.id === d.id)),
    type: d.type,
    status: d.status,
    snis: d.snis,
    subject: leaf?.subject ?? null,
    issuer: leaf?.issuer ?? null,
    serial: leaf?.serial ?? null,
    not_before: leaf?.not_before ?? null,
    not_after: leaf?.not_after ?? null,
    days_left: leaf ? Math.floor((Date.parse(leaf.not_after) - now) / 86_400_000) : null,
    sans: leaf?.sans ?? [],
    key_type: leaf?.key_type ?? null,
    key_size: leaf?.key_size ?? null,
    fingerprint_sha256: leaf?.fingerprint_sha256 ?? null,
    mtls: d.mtls,
    client_ca: d.client_ca ?? null,
    // Server objects are in every listener's SNI map; client objects are presented to upstreams.
    listeners: d.type === 'server' && d.status === 'enabled' ? snap.listeners.map((l) => l.name) : [],
    default_for: snap.listeners.filter((l) => l.defaultSsl === d.id).map((l) => l.name),
    upstreams: snap.upstreams.filter((u) => u.tls?.clientSsl === d.id).map((u) => u.id),
    sources: d.sources,
    certificates: d.certs.map((c) => ({ ...c, days_left: Math.floor((Date.parse(c.not_after) - now) / 86_400_000) })),
  };
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

/** name, desc, labels of an SSL object, upstream or route: always present in answers (null / {}). */
function metaView(o: { name?: string; desc?: string; labels?: Record<string, string> } | undefined): {
  name: string | null;
  desc: string | null;
  labels: Record<string, string>;
} {
  return { name: o?.name ?? null, desc: o?.desc ?? null, labels: o?.labels ?? {} };
}

type Answer = { status: number; body: unknown };

/**
 * `?label=key:value` (repeatable: all must hold; `?label=key`: the key is set). A list's
 * only parameter: any other, or a malformed label, is a 400, so a typo never reads as
 * "no filter" and returns everything.
 */
function labelFilter(url: URL): { match: (labels?: Record<string, string>) => boolean } | { error: Answer } {
  const bad = (message: string): { error: Answer } => ({
    error: { status: 400, body: { error: { code: 'TLSGATE_E_ADMIN_QUERY', message } } },
  });
  const want: Array<[string, string | undefined]> = [];
  for (const [name, v] of url.searchParams) {
    if (name !== 'label') {
      return bad(`unknown query parameter ${JSON.stringify(name)} (this list takes label=key:value)`);
    }
    const at = v.indexOf(':');
    const [k, val] = at < 0 ? [v, undefined] : [v.slice(0, at), v.slice(at + 1)];
    const problem = labelKeyProblem(k) ?? (val === undefined ? null : labelValueProblem(val));
    if (problem) return bad(`label=${JSON.stringify(v).slice(1, -1)}: ${problem} (expected label=key:value)`);
    want.push([k, val]);
  }
  return {
    match: (labels) =>
      want.every(([k, v]) => labels !== undefined && Object.hasOwn(labels, k) && (v === undefined || labels[k] === v)),
  };
}
