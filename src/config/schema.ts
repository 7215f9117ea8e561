// `validate`: the field checks come from the one declaration (declaration.ts); what stays
// here is the small pass over relations between objects (references, SNI conflicts,
// mTLS loss, engine restrictions, provider references).
import { dirname } from 'node:path';
import type { ConfigIssue } from '../errors';
import { parseValue } from '../secrets/reference';
import { readSome, type Infer } from './decl';
import { CONFIG } from './declaration';
import { mtlsLoss } from './mtls-loss';
import { secretFields } from './secret-fields';
import { isDirId } from './ssl-dirs';
import { nearest } from './formats';
import { Reader, type Obj } from './reader';
import type { GatewayConfig } from './types';

export interface SchemaResult {
  config?: GatewayConfig;
  issues: ConfigIssue[];
}

export function validateConfig(raw: unknown, file: string): SchemaResult {
  const r = new Reader();
  const root = raw === null || raw === undefined ? {} : r.obj(raw, '(root)');
  if (!root) return { issues: r.issues };
  const { out } = readSome(r, CONFIG.fields!, root, '') as { out: Partial<Declared> };
  const top = {
    limits: out.limits ?? defaultsOf.limits(),
    timeouts: out.timeouts ?? defaultsOf.timeouts(),
    max_connections: out.max_connections ?? defaultsOf.max_connections(),
  };
  const config: GatewayConfig = {
    ...(out as Declared),
    file,
    baseDir: dirname(file),
    ...top,
    listeners: (out.listeners ?? []).map((l) => ({
      ...l,
      limits: { ...top.limits, ...l.limits },
      timeouts: { ...top.timeouts, ...l.timeouts },
      max_connections: l.max_connections ?? top.max_connections,
    })),
    secret_providers: out.secret_providers ?? [],
    ssls: out.ssls ?? [],
    upstreams: out.upstreams ?? [],
    routes: out.routes ?? [],
  };
  crossChecks(r, root, config);
  providerRefs(r, config);
  const ok = !r.issues.some((i) => i.severity === 'error');
  return ok ? { config, issues: r.issues } : { issues: r.issues };
}

type Declared = Infer<typeof CONFIG>;
const defaultsOf = {
  limits: CONFIG.fields!.limits!.fallback as () => Declared['limits'],
  timeouts: CONFIG.fields!.timeouts!.fallback as () => Declared['timeouts'],
  max_connections: CONFIG.fields!.max_connections!.fallback as () => number,
};

function crossChecks(r: Reader, root: Obj, c: GatewayConfig): void {
  const ids: Array<[string, string, string[]]> = [
    ['listeners', 'name', c.listeners.map((l) => l.name)],
    ['ssls', 'id', c.ssls.map((x) => x.id)],
    ['upstreams', 'id', c.upstreams.map((u) => u.id)],
    ['routes', 'id', c.routes.map((x) => x.id)],
    ['secret_providers', 'id', c.secret_providers.map((x) => x.id)],
  ];
  for (const [kind, field, list] of ids) unique(r, list, kind, field, root);
  const addrs = new Map<string, string>();
  c.listeners.forEach((l, i) => {
    const a = `${l.listen.host}:${l.listen.port}`;
    const other = addrs.get(a);
    if (other) r.error(`listeners[${i}].listen`, `${a} is also the address of listener "${other}"`);
    addrs.set(a, l.name);
  });
  const ssls = new Map(c.ssls.map((s) => [s.id, s]));
  // Ids of objects that were declared but refused: their own errors are reported, and a
  // referrer saying "not the id of …" on top would point the reader at the wrong object.
  const refusedSsls = declaredIds(root, 'ssls', ssls);
  const refusedUpstreams = declaredIds(root, 'upstreams', new Set(c.upstreams.map((u) => u.id)));
  c.listeners.forEach((l, i) => {
    // `dir:…` ids name objects of ssl_dirs, checked once the directories are read (ssl-dirs.ts).
    if (l.default_ssl === undefined || refusedSsls.has(l.default_ssl) || isDirId(l.default_ssl)) return;
    const s = ssls.get(l.default_ssl);
    const name = JSON.stringify(l.default_ssl);
    const msg = `${name} is not the id of an SSL object${didYouMean(l.default_ssl, [...ssls.keys()])}`;
    if (!s) r.error(`listeners[${i}].default_ssl`, msg, 'TLSGATE_E_REF_UNKNOWN');
    else if (s.type !== 'server')
      r.error(
        `listeners[${i}].default_ssl`,
        `"${l.default_ssl}" is an SSL object of type ${s.type}, not server`,
        'TLSGATE_E_REF_UNKNOWN',
      );
  });
  // Two SSL objects claiming one SNI: an error naming both ids.
  const owner = new Map<string, string>();
  c.ssls.forEach((s, i) => {
    if (s.type !== 'server' || s.status !== 'enabled') return;
    s.snis.forEach((n, j) => {
      const prev = owner.get(n);
      if (prev !== undefined)
        r.error(
          `ssls[${i}].snis[${j}]`,
          `"${n}" is claimed by SSL objects "${prev}" and "${s.id}"`,
          'TLSGATE_E_SNI_CONFLICT',
        );
      else owner.set(n, s.id);
    });
  });
  const upstreams = new Set(c.upstreams.map((u) => u.id));
  c.routes.forEach((rt, i) => {
    if (rt.upstream !== undefined && !upstreams.has(rt.upstream) && !refusedUpstreams.has(rt.upstream)) {
      const name = JSON.stringify(rt.upstream);
      const hint = didYouMean(rt.upstream, [...upstreams]);
      r.error(`routes[${i}].upstream`, `${name} is not the id of an upstream${hint}`, 'TLSGATE_E_REF_UNKNOWN');
    }
  });
  c.upstreams.forEach((u, i) => {
    const cs = u.tls?.client_ssl;
    if (cs === undefined || refusedSsls.has(cs) || isDirId(cs)) return;
    const s = ssls.get(cs);
    const name = JSON.stringify(cs);
    const p = `upstreams[${i}].tls.client_ssl`;
    const hint = didYouMean(cs, [...ssls.keys()]);
    if (!s) r.error(p, `${name} is not the id of an SSL object${hint}`, 'TLSGATE_E_REF_UNKNOWN');
    else if (s.type !== 'client')
      r.error(
        `upstreams[${i}].tls.client_ssl`,
        `"${cs}" is an SSL object of type ${s.type}; upstream client certificates need type: client`,
        'TLSGATE_E_REF_UNKNOWN',
      );
  });
  const sslAt = new Map(c.ssls.map((s, i) => [s.id, i]));
  for (const loss of mtlsLoss(undefined, c)) {
    r.warn(
      `ssls[${sslAt.get(loss.from)}].status`,
      `"${loss.sni}" of the disabled mTLS SSL object "${loss.from}" is served by "${loss.to}" ` +
        'without client certificate verification',
      'TLSGATE_E_MTLS_LOSS',
    );
  }
  const mtls = c.ssls.filter((s) => s.type === 'server' && s.status === 'enabled' && s.client);
  c.listeners.forEach((l, i) => {
    if (l.engine !== 'uws') return;
    for (const s of mtls) {
      r.error(
        `listeners[${i}].engine`,
        `uws cannot enforce mTLS (it lets a client with no certificate through and does not apply a ` +
          `per-SNI CA), but SSL object "${s.id}" has client.ca: use engine: node for this listener`,
        'TLSGATE_E_ENGINE_UNSUPPORTED',
      );
      if (s.client?.skip_mtls_paths === undefined) continue;
      r.error(
        `ssls[${sslAt.get(s.id)}].client.skip_mtls_paths`,
        `listener "${l.name}" has engine uws, which cannot serve mTLS exemptions: uWS 20.30 gives a request ` +
          'no access to the client certificate, so a verified request cannot be told from one without a ' +
          'certificate; use engine: node for this listener',
        'TLSGATE_E_ENGINE_UNSUPPORTED',
      );
    }
    // uWS exposes no protocol bounds per context: BoringSSL serves TLSv1.2 and TLSv1.3 on every one.
    for (const s of c.ssls) {
      if (s.type !== 'server' || s.status !== 'enabled' || s.ssl_protocols.length === 2) continue;
      r.error(
        `listeners[${i}].engine`,
        `uws cannot restrict ssl_protocols per SSL object (it serves TLSv1.2 and TLSv1.3 on every ` +
          `context), but SSL object "${s.id}" allows only ${s.ssl_protocols.join(', ')}: use engine: node for this listener`,
        'TLSGATE_E_ENGINE_UNSUPPORTED',
      );
    }
  });
}

/**
 * Every `$secret://` reference must name a configured provider of its type, or (short form)
 * have a default provider of its type. Removing or retyping a provider that is still
 * referenced is refused here, once per referencing field. At most one default per type.
 */
function providerRefs(r: Reader, c: GatewayConfig): void {
  const firstDefault = new Map<string, number>();
  c.secret_providers.forEach((p, i) => {
    if (!p.default) return;
    const first = firstDefault.get(p.type);
    if (first === undefined) firstDefault.set(p.type, i);
    else {
      const other = c.secret_providers[first]!.id;
      r.error(`secret_providers[${i}].default`, `"${p.id}" and "${other}" (secret_providers[${first}]) are both ` +
        `default ${p.type} providers; at most one per type`, 'TLSGATE_E_SECRET_DEFAULT');
    }
  });
  for (const [path, raw] of secretFields(c)) {
    const parsed = parseValue(raw, c.secret_providers);
    if (!parsed.ok && parsed.code !== undefined) r.error(path, parsed.message, parsed.code);
  }
}

function didYouMean(v: string, known: readonly string[]): string {
  const near = nearest(v, known);
  return near ? ` (did you mean "${near}"?)` : '';
}

/** `id`s present in the raw `kind` list whose object did not validate. */
function declaredIds(root: Obj, kind: string, valid: { has(id: string): boolean }): Set<string> {
  const out = new Set<string>();
  for (const v of Array.isArray(root[kind]) ? (root[kind] as unknown[]) : []) {
    const id = typeof v === 'object' && v !== null ? (v as Obj).id : undefined;
    if (typeof id === 'string' && !valid.has(id)) out.add(id);
  }
  return out;
}

function unique(r: Reader, ids: string[], kind: string, field: string, root: Obj): void {
  const raw = Array.isArray(root[kind]) ? (root[kind] as unknown[]) : [];
  const valid = new Set(ids);
  const seen = new Map<string, number>();
  raw.forEach((v, i) => {
    const id = typeof v === 'object' && v !== null ? (v as Obj)[field] : undefined;
    if (typeof id !== 'string' || !valid.has(id)) return;
    const first = seen.get(id);
    if (first !== undefined)
      r.error(`${kind}[${i}].${field}`, `"${id}" is also the ${field} of ${kind}[${first}]`, 'TLSGATE_E_DUPLICATE_ID');
    else seen.set(id, i);
  });
}
