// ResolvedConfig → Snapshot: validate every certificate (in the pool), check SNI
// coverage, and lay out what workers need. Refuses with every problem at once.
import { createSecureContext } from 'node:tls';
import { ConfigError, type ConfigIssue } from '../errors';
import type { ResolvedConfig } from '../config/resolve';
import type { SslConfig } from '../config/types';
import { defaults } from '../config/defaults';
import type { CertValidator } from '../certs/pool';
import { X509Certificate } from 'node:crypto';
import { materialHash, splitPem, type CertInfo, type ValidateInput } from '../certs/validate';
import type { Snapshot, SslSnapshot, UpstreamSnapshot } from './types';

export interface SslDetails {
  id: string;
  type: 'server' | 'client';
  status: 'enabled' | 'disabled';
  snis: string[];
  certs: CertInfo[];
  mtls: boolean;
  client_ca?: { subject: string; fingerprint_sha256: string; count: number };
  sources: Record<string, string>;
  not_after: number;
}

export interface Compiled {
  snapshot: Omit<Snapshot, 'version' | 'createdAt'>;
  details: SslDetails[];
  warnings: ConfigIssue[];
  /** SSL objects validated by this compile (the others came from the cache). */
  recompiled: number;
}

/** Why OpenSSL would not load a client CRL bundle, or undefined. */
function crlProblem(pem: string): string | undefined {
  const crls = pem.match(/-----BEGIN X509 CRL-----[\s\S]+?-----END X509 CRL-----/g) ?? [];
  if (crls.length === 0) return 'holds no PEM CRL (-----BEGIN X509 CRL-----)';
  try {
    createSecureContext({ crl: crls });
    return undefined;
  } catch (err) {
    return `OpenSSL cannot load it: ${(err as Error).message}`;
  }
}

/**
 * Per SSL object: its compiled form, keyed by id, reused while the object's config and
 * resolved values are the same (values compared by identity first: the secret store hands
 * back the same string for a value it did not re-read). So a change re-validates and
 * re-hashes only the objects whose inputs changed, and unchanged objects keep their
 * SslSnapshot identity, which is how the primary's diff finds them in O(1) each.
 */
export class CompileCache {
  readonly ssls = new Map<string, CachedSsl>();
}

interface CachedSsl {
  cfg: SslConfig;
  cfgJson: string;
  values: Array<string | undefined>;
  /** Settings outside the object that change its result (warn_days, the day, uws listeners). */
  context: string;
  index: number;
  ssl: SslSnapshot;
  detail: SslDetails;
  /** Warnings (errors are never cached), with paths of `index`. */
  issues: ConfigIssue[];
}

function sslPaths(s: SslConfig, i: number): string[] {
  const p = `ssls[${i}]`;
  return [
    `${p}.cert`,
    `${p}.key`,
    ...s.certs.map((_, j) => `${p}.certs[${j}]`),
    ...s.keys.map((_, j) => `${p}.keys[${j}]`),
    ...(s.client ? [`${p}.client.ca`] : []),
    ...(s.client?.crl !== undefined ? [`${p}.client.crl`] : []),
  ];
}

/** Where each secret field of object i came from (reference text or "literal"), by field path. */
function sourcesOf(rc: ResolvedConfig, paths: string[], i: number): Record<string, string> {
  const out: Record<string, string> = {};
  const prefix = `ssls[${i}].`.length;
  for (const p of paths) {
    const src = rc.sources.get(p);
    if (src !== undefined) out[p.slice(prefix)] = src;
  }
  return out;
}

function sameValues(a: Array<string | undefined>, b: Array<string | undefined>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function reindex(issues: ConfigIssue[], i: number): ConfigIssue[] {
  return issues.map((x) => ({ ...x, path: x.path.replace(/^ssls\[\d+\]/, `ssls[${i}]`) }));
}

export async function compileSnapshot(
  rc: ResolvedConfig,
  validator: CertValidator,
  now = Date.now(),
  cache = new CompileCache(),
): Promise<Compiled> {
  const { config: c, values } = rc;
  const val = (p: string): string => values.get(p)!;
  const uws = c.listeners.some((l) => l.engine === 'uws');
  const context = `${c.warn_days}|${Math.floor(now / 86_400_000)}|${uws}`;
  const ssls: SslSnapshot[] = new Array(c.ssls.length);
  const details: SslDetails[] = new Array(c.ssls.length);
  const issues: ConfigIssue[] = [...(rc.unresolved ?? []), ...upstreamCaIssues(rc)];
  const todo: Array<{ i: number; paths: string[]; vals: Array<string | undefined>; input: ValidateInput }> = [];
  const seen = new Set<string>();
  c.ssls.forEach((s, i) => {
    seen.add(s.id);
    const paths = sslPaths(s, i);
    const vals = paths.map((p) => values.get(p));
    const hit = cache.ssls.get(s.id);
    if (
      hit &&
      hit.context === context &&
      sameValues(hit.values, vals) &&
      (hit.cfg === s || hit.cfgJson === JSON.stringify(s))
    ) {
      if (hit.index !== i) {
        hit.issues = reindex(hit.issues, i);
        hit.index = i;
      }
      hit.cfg = s;
      ssls[i] = hit.ssl;
      details[i] = hit.detail;
      issues.push(...hit.issues);
      return;
    }
    // An SSL object with an unresolved value is skipped here (its path is in rc.unresolved);
    // every other object is still validated, and both sets of errors are reported together.
    if (vals.some((v) => v === undefined)) return;
    todo.push({
      i,
      paths,
      vals,
      input: {
        path: `ssls[${i}]`,
        id: s.id,
        type: s.type,
        snis: s.snis,
        pairs: [
          {
            certPath: `ssls[${i}].cert`,
            cert: val(`ssls[${i}].cert`),
            keyPath: `ssls[${i}].key`,
            key: val(`ssls[${i}].key`),
          },
          ...s.certs.map((_, j) => ({
            certPath: `ssls[${i}].certs[${j}]`,
            cert: val(`ssls[${i}].certs[${j}]`),
            keyPath: `ssls[${i}].keys[${j}]`,
            key: val(`ssls[${i}].keys[${j}]`),
          })),
        ],
        ...(s.client ? { clientCa: { path: `ssls[${i}].client.ca`, pem: val(`ssls[${i}].client.ca`) } } : {}),
        warnDays: c.warn_days,
        now,
      },
    });
  });
  for (const id of [...cache.ssls.keys()]) if (!seen.has(id)) cache.ssls.delete(id);
  // Only the objects that changed: in parallel on the pool (every core at start).
  const checked = await validator.validate(todo.map((t) => t.input));
  todo.forEach((t, k) => {
    const { i, input } = t;
    const s = c.ssls[i]!;
    const r = checked[k]!;
    const own: ConfigIssue[] = [...r.issues];
    const crl = s.client?.crl === undefined ? undefined : values.get(`ssls[${i}].client.crl`);
    if (crl !== undefined) {
      const problem = crlProblem(crl);
      if (problem)
        own.push({ path: `ssls[${i}].client.crl`, code: 'TLSGATE_E_CERT_PARSE', severity: 'error', message: problem });
    }
    // Preferred pair first: ECDSA (cheaper handshakes, every current client has it).
    const kinds = r.certs.map((ci) => ci.key_type);
    const pairs = input.pairs
      .map((p, j) => ({ cert: p.cert, key: p.key, ec: kinds[j] === 'ec' }))
      .sort((a, b) => Number(b.ec) - Number(a.ec))
      .map(({ cert, key }) => ({ cert, key }));
    if (pairs.length > 1 && s.type === 'server' && uws) {
      own.push({
        path: `ssls[${i}].certs`,
        code: 'TLSGATE_E_DUAL_CERT_SNI',
        severity: 'warning',
        message:
          `"${s.id}" has ${pairs.length} pairs; a uws listener (one pair per uWS context) presents only the ` +
          `${kinds.includes('ec') ? 'ECDSA' : 'first'} pair, with or without SNI. node listeners present every pair ` +
          "(OpenSSL picks by the client's signature algorithms).",
      });
    }
    const clientCa = input.clientCa?.pem;
    const clientCrl = clientCa ? crl : undefined;
    const ssl: SslSnapshot = {
      id: s.id,
      type: s.type,
      snis: s.snis,
      pairs,
      ...(clientCa ? { clientCa } : {}),
      ...(clientCa && clientCrl ? { clientCrl } : {}),
      clientDepth: s.client?.depth ?? 0,
      protocols: s.ssl_protocols,
      ciphers: s.ssl_ciphers,
      hash: materialHash([
        ...pairs.flatMap((p) => [p.cert, p.key]),
        clientCa,
        clientCrl,
        String(s.client?.depth),
        s.ssl_protocols.join(','),
        s.ssl_ciphers,
      ]),
    };
    const detail: SslDetails = {
      id: s.id,
      type: s.type,
      status: s.status,
      snis: s.snis,
      certs: r.certs,
      mtls: !!s.client,
      ...(r.clientCa ? { client_ca: r.clientCa } : {}),
      sources: sourcesOf(rc, t.paths, i),
      not_after: r.notAfter,
    };
    ssls[i] = ssl;
    details[i] = detail;
    issues.push(...own);
    if (own.some((x) => x.severity === 'error')) cache.ssls.delete(s.id);
    else {
      const entry = { cfg: s, cfgJson: JSON.stringify(s), values: t.vals, context, index: i, ssl, detail, issues: own };
      cache.ssls.set(s.id, entry);
    }
  });
  if (issues.some((i) => i.severity === 'error')) throw new ConfigError(issues);
  // uWS 20.30 has a compiled-in idle timeout (≈ 10 s, also during the handshake) and no
  // accept hook: values it cannot apply are said, never silently ignored.
  c.listeners.forEach((l, i) => {
    if (l.engine !== 'uws') return;
    const t = defaults.timeouts;
    const changed = [
      ...(l.timeouts.handshake !== t.handshake ? ['handshake'] : []),
      ...(l.timeouts.request_header !== t.requestHeader ? ['request_header'] : []),
      ...(l.timeouts.keepalive !== t.keepAlive ? ['keepalive'] : []),
    ];
    if (changed.length) {
      issues.push({
        path: `listeners[${i}].timeouts`,
        code: 'TLSGATE_E_ENGINE_UNSUPPORTED',
        severity: 'warning',
        message: `uws applies its compiled-in idle timeout (≈ 10 s), not ${changed.join(', ')}: use engine: node for them`,
      });
    }
    if (l.max_connections !== defaults.maxConnections) {
      issues.push({
        path: `listeners[${i}].max_connections`,
        code: 'TLSGATE_E_ENGINE_UNSUPPORTED',
        severity: 'warning',
        message: 'uws has no accept hook: max_connections is not enforced on this listener (use engine: node)',
      });
    }
  });
  const sni: Array<[string, string]> = [];
  for (const s of c.ssls)
    if (s.type === 'server' && s.status === 'enabled') for (const n of s.snis) sni.push([n, s.id]);

  const sslById = new Map(ssls.map((x) => [x.id, x]));
  const upstreams: UpstreamSnapshot[] = c.upstreams.map((u, i) => {
    const ca = u.tls?.ca ? val(`upstreams[${i}].tls.ca`) : undefined;
    const tls = u.tls
      ? {
          verify: u.tls.verify,
          ...(ca ? { ca } : {}),
          ...(u.tls.client_ssl ? { clientSsl: u.tls.client_ssl } : {}),
          ...(u.tls.sni ? { sni: u.tls.sni } : {}),
        }
      : u.scheme === 'https'
        ? { verify: true }
        : undefined;
    const body = {
      id: u.id,
      scheme: u.scheme,
      nodes: u.nodes,
      ...(u.host ? { host: u.host } : {}),
      ...(tls ? { tls } : {}),
      timeout: { connectMs: u.timeout.connect, readMs: u.timeout.read, sendMs: u.timeout.send },
      keepalive: {
        ...(u.keepalive.size !== undefined ? { size: u.keepalive.size } : {}),
        idleMs: u.keepalive.idle_timeout,
      },
      ...(u.retries !== undefined ? { retries: u.retries } : {}),
      ...(u.retry_timeout > 0 ? { retryTimeoutMs: u.retry_timeout } : {}),
      ...(u.client_identity_headers ? { clientIdentityHeaders: u.client_identity_headers } : {}),
    };
    const clientSsl = tls?.clientSsl ? sslById.get(tls.clientSsl)?.hash : undefined;
    return { ...body, hash: materialHash([JSON.stringify(body), clientSsl]) };
  });

  return {
    snapshot: {
      listeners: c.listeners.map((l) => ({
        name: l.name,
        host: l.listen.host,
        port: l.listen.port,
        engine: l.engine,
        sessionTickets: l.session_tickets,
        ...(l.default_ssl ? { defaultSsl: l.default_ssl } : {}),
        limits: {
          maxHeaderCount: l.limits.max_header_count,
          maxHeaderBytes: l.limits.max_header_bytes,
          maxRequestLine: l.limits.max_request_line,
          maxBodySize: l.limits.max_body_size,
        },
        timeouts: {
          handshakeMs: l.timeouts.handshake,
          requestHeaderMs: l.timeouts.request_header,
          keepAliveMs: l.timeouts.keepalive,
        },
        maxConnections: l.max_connections,
        ...(l.http2 && l.engine === 'node'
          ? {
            h2: {
              maxConcurrentStreams: l.limits.h2_max_concurrent_streams,
              maxResets: l.limits.h2_max_resets,
              streamIdleMs: l.timeouts.h2_stream_idle,
            },
          }
          : {}),
      })),
      ssls,
      sni,
      // name, desc, labels: admin metadata, never sent to a worker.
      routes: c.routes.map(({ max_body_size, name: _n, desc: _d, labels: _l, ...r }) => ({
        ...r,
        ...(max_body_size !== undefined ? { maxBodySize: max_body_size } : {}),
      })),
      upstreams,
    },
    details,
    warnings: issues,
    recompiled: todo.length,
  };
}

/** A CA bundle that does not parse would only show as a 502 on every request to the upstream. */
function upstreamCaIssues(rc: ResolvedConfig): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  rc.config.upstreams.forEach((u, i) => {
    const path = `upstreams[${i}].tls.ca`;
    const pem = u.tls?.ca ? rc.values.get(path) : undefined;
    if (pem === undefined) return;
    const blocks = splitPem(pem);
    try {
      if (blocks.length === 0) throw new Error('no "BEGIN CERTIFICATE" block');
      for (const b of blocks) new X509Certificate(b);
    } catch (e) {
      const message = `not a valid PEM CA bundle: ${(e as Error).message}`;
      out.push({ path, code: 'TLSGATE_E_CA_PARSE', severity: 'error', message });
    }
  });
  return out;
}
