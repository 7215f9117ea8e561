// ResolvedConfig → Snapshot: validate every certificate (in the pool), check SNI
// coverage, and lay out what workers need. Refuses with every problem at once.
import { createSecureContext } from 'node:tls';
import { ConfigError, type ConfigIssue } from '../errors';
import type { ResolvedConfig } from '../config/resolve';
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

export async function compileSnapshot(
  rc: ResolvedConfig,
  validator: CertValidator,
  now = Date.now(),
): Promise<Compiled> {
  const { config: c, values } = rc;
  const val = (p: string): string => values.get(p)!;
  // An SSL object with an unresolved value is skipped here (its path is in rc.unresolved);
  // every other object is still validated, and both sets of errors are reported together.
  const resolved = (i: number): boolean => {
    const s = c.ssls[i]!;
    const paths = [`ssls[${i}].cert`, `ssls[${i}].key`, ...s.certs.map((_, j) => `ssls[${i}].certs[${j}]`)];
    paths.push(...s.keys.map((_, j) => `ssls[${i}].keys[${j}]`), ...(s.client ? [`ssls[${i}].client.ca`] : []));
    return paths.every((p) => values.has(p));
  };
  const complete = c.ssls.map((_, i) => resolved(i));
  const all: ValidateInput[] = c.ssls.map((s, i) => ({
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
  }));
  const checked = await validator.validate(all.filter((_, i) => complete[i]));
  const unresolved = rc.unresolved ?? [];
  const issues = [...unresolved, ...checked.flatMap((r) => r.issues), ...upstreamCaIssues(rc)];
  c.ssls.forEach((s, i) => {
    const crl = s.client?.crl === undefined ? undefined : values.get(`ssls[${i}].client.crl`);
    if (crl === undefined) return;
    const problem = crlProblem(crl);
    if (problem) {
      issues.push({ path: `ssls[${i}].client.crl`, code: 'TLSGATE_E_CERT_PARSE', severity: 'error', message: problem });
    }
  });
  if (issues.some((i) => i.severity === 'error')) throw new ConfigError(issues);
  const inputs = all;
  const results = checked;

  const ssls: SslSnapshot[] = c.ssls.map((s, i) => {
    // Preferred pair first: ECDSA (cheaper handshakes, every current client has it).
    const kinds = results[i]!.certs.map((ci) => ci.key_type);
    const pairs = inputs[i]!.pairs.map((p, j) => ({ cert: p.cert, key: p.key, ec: kinds[j] === 'ec' }))
      .sort((a, b) => Number(b.ec) - Number(a.ec))
      .map(({ cert, key }) => ({ cert, key }));
    if (pairs.length > 1 && s.type === 'server' && c.listeners.some((l) => l.engine === 'uws')) {
      issues.push({
        path: `ssls[${i}].certs`,
        code: 'TLSGATE_E_DUAL_CERT_SNI',
        severity: 'warning',
        message:
          `"${s.id}" has ${pairs.length} pairs; a uws listener (one pair per uWS context) presents only the ` +
          `${kinds.includes('ec') ? 'ECDSA' : 'first'} pair, with or without SNI. node listeners present every pair ` +
          "(OpenSSL picks by the client's signature algorithms).",
      });
    }
    const clientCa = inputs[i]!.clientCa?.pem;
    const clientCrl = s.client?.crl !== undefined ? val(`ssls[${i}].client.crl`) : undefined;
    return {
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
  });
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
      timeout: { connectMs: u.timeout.connect, readMs: u.timeout.read },
      ...(u.client_identity_headers ? { clientIdentityHeaders: u.client_identity_headers } : {}),
    };
    const clientSsl = tls?.clientSsl ? ssls.find((s) => s.id === tls.clientSsl)?.hash : undefined;
    return { ...body, hash: materialHash([JSON.stringify(body), clientSsl]) };
  });

  // Sources by SSL index in one pass (paths look like `ssls[12].key`).
  const sourcesOf = new Map<number, Record<string, string>>();
  for (const [p, src] of rc.sources) {
    const m = /^ssls\[(\d+)\]\.(.+)$/.exec(p);
    if (!m) continue;
    const i = Number(m[1]);
    if (!sourcesOf.has(i)) sourcesOf.set(i, {});
    sourcesOf.get(i)![m[2]!] = src;
  }
  const details: SslDetails[] = c.ssls.map((s, i) => {
    const sources = sourcesOf.get(i) ?? {};
    const r = results[i]!;
    return {
      id: s.id,
      type: s.type,
      status: s.status,
      snis: s.snis,
      certs: r.certs,
      mtls: !!s.client,
      ...(r.clientCa ? { client_ca: r.clientCa } : {}),
      sources,
      not_after: r.notAfter,
    };
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
