// ResolvedConfig → Snapshot: validate every certificate (in the pool), check SNI
// coverage, and lay out what workers need. Refuses with every problem at once.
import { createSecureContext } from 'node:tls';
import { ConfigError, type ConfigIssue } from '../errors';
import type { ResolvedConfig } from '../config/resolve';
import type { SslConfig } from '../config/types';
import { defaults } from '../config/defaults';
import type { CertValidator } from '../certs/pool';
import { createHash, X509Certificate } from 'node:crypto';
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
  /** The rotation path: `snapshot.ssls` is `from` with only these indices replaced (O(change) diff and digest). */
  sslPatch?: SslPatch;
}

export interface SslPatch {
  from: readonly SslSnapshot[];
  indices: readonly number[];
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
  /** sslTableDigest's last input and chunk digests. */
  digest: { refs: readonly SslSnapshot[]; status: readonly string[]; chunks: string[] } | undefined;
  /** The last successful compile: a rotation (ResolvedConfig.changedFrom) patches it. */
  last: LastCompile | undefined;
}

interface LastCompile {
  rc: ResolvedConfig;
  context: string;
  out: Compiled;
  /** Issues before the SSL objects' (unresolved, upstream CAs) and after them (listeners). */
  head: ConfigIssue[];
  tail: ConfigIssue[];
  /** Each SSL object's issues (warnings), by index; objects without any are absent. */
  sslIssues: Map<number, ConfigIssue[]>;
}

const SSL_PATH = /^ssls\[(\d+)\]\./;

/** The indices of the SSL objects these value paths belong to; undefined if one is not an SSL object's. */
function sslIndices(paths: readonly string[]): number[] | undefined {
  const out = new Set<number>();
  for (const p of paths) {
    const m = SSL_PATH.exec(p);
    if (!m) return undefined;
    out.add(Number(m[1]));
  }
  return [...out];
}

const DIGEST_CHUNK = 256;

/**
 * Digest of the SSL table (each object's id, type, status, SNIs and material hash, in
 * order) for the primary's "did anything change?" hash. Chunks of 256 objects are hashed
 * and the chunk digests hashed again; a chunk whose objects are the same (identity) as in
 * the last call keeps its digest, so one changed object re-hashes 256 lines, not 10k (the
 * full pass was 5-7 ms of each rotation at 10k objects, profiled).
 */
export function sslTableDigest(
  cache: CompileCache,
  ssls: readonly SslSnapshot[],
  status: readonly string[],
  patch?: SslPatch,
): string {
  const prev = cache.digest;
  const final = (chunks: string[]): string =>
    createHash('sha256').update(`${ssls.length}\n${chunks.join('\n')}`).digest('hex');
  // The last digest was of `patch.from` (a rotation): only the chunks of the patched
  // objects, not an identity pass over every object (5-50 ms at 100k objects, profiled).
  if (prev && patch && prev.refs === patch.from && prev.status === status && ssls.length === patch.from.length) {
    const chunks = prev.chunks.slice();
    for (const c of new Set(patch.indices.map((i) => Math.floor(i / DIGEST_CHUNK)))) {
      chunks[c] = chunkDigest(ssls, status, c);
    }
    cache.digest = { refs: ssls, status, chunks };
    return final(chunks);
  }
  const chunks: string[] = [];
  for (let c = 0; c * DIGEST_CHUNK < ssls.length; c++) {
    const from = c * DIGEST_CHUNK;
    const to = Math.min(ssls.length, from + DIGEST_CHUNK);
    const sameEnd = prev !== undefined && Math.min(prev.refs.length, from + DIGEST_CHUNK) === to;
    let same = sameEnd && prev!.chunks[c] !== undefined;
    for (let i = from; same && i < to; i++) same = prev!.refs[i] === ssls[i] && prev!.status[i] === status[i];
    if (same) {
      chunks.push(prev!.chunks[c]!);
      continue;
    }
    chunks.push(chunkDigest(ssls, status, c));
  }
  // Kept, not copied: a compile makes a new array and nothing writes into it afterwards.
  cache.digest = { refs: ssls, status, chunks };
  return final(chunks);
}

function chunkDigest(ssls: readonly SslSnapshot[], status: readonly string[], c: number): string {
  const h = createHash('sha256');
  for (let i = c * DIGEST_CHUNK; i < Math.min(ssls.length, (c + 1) * DIGEST_CHUNK); i++) {
    const x = ssls[i]!;
    h.update(`${x.id}\0${x.type}\0${status[i]}\0${x.snis.join(',')}\0${x.hash}\n`);
  }
  return h.digest('hex');
}

interface CachedSsl {
  cfg: SslConfig;
  /** JSON of `cfg`, made only when a compile meets an equal object that is not the same one. */
  cfgJson?: string;
  values: Array<string | undefined>;
  /** Settings outside the object that change its result (warn_days, the day, uws listeners). */
  context: string;
  index: number;
  /** sslPaths(cfg, index): the strings are made once, not on every compile (10k × 4 per change). */
  paths: string[];
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
  // The rotation path: the same config as the last compile with only some SSL objects'
  // values changed (resolveChangedFiles): those objects are compiled, everything else is
  // the last result's (same objects), so a change costs O(changed), not a pass over 10k.
  const last = cache.last?.context === context ? cache.last : undefined;
  if (last?.rc === rc) return { ...last.out, recompiled: 0 };
  const from = rc.changedFrom;
  const only =
    last && from && from.base === last.rc && from.base.config === c && !rc.unresolved?.length
      ? sslIndices(from.paths)
      : undefined;
  const fast = only ? last : undefined;
  const ssls: SslSnapshot[] = fast ? fast.out.snapshot.ssls.slice() : new Array(c.ssls.length);
  const details: SslDetails[] = fast ? fast.out.details.slice() : new Array(c.ssls.length);
  const head = fast ? fast.head : [...(rc.unresolved ?? []), ...upstreamCaIssues(rc)];
  const sslIssues = fast ? new Map(fast.sslIssues) : new Map<number, ConfigIssue[]>();
  const setIssues = (i: number, list: ConfigIssue[]): void => {
    if (list.length) sslIssues.set(i, list);
    else sslIssues.delete(i);
  };
  const todo: Array<{ i: number; paths: string[]; vals: Array<string | undefined>; input: ValidateInput }> = [];
  const seen = new Set<string>();
  const visit = (s: SslConfig, i: number): void => {
    seen.add(s.id);
    const hit = cache.ssls.get(s.id);
    const paths = hit && hit.index === i && hit.cfg === s ? hit.paths : sslPaths(s, i);
    const vals = paths.map((p) => values.get(p));
    if (
      hit &&
      hit.context === context &&
      sameValues(hit.values, vals) &&
      (hit.cfg === s || (hit.cfgJson ??= JSON.stringify(hit.cfg)) === JSON.stringify(s))
    ) {
      if (hit.index !== i) {
        hit.issues = reindex(hit.issues, i);
        hit.index = i;
        hit.paths = paths;
      }
      hit.cfg = s;
      ssls[i] = hit.ssl;
      details[i] = hit.detail;
      setIssues(i, hit.issues);
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
  };
  if (only && fast) for (const i of only) visit(c.ssls[i]!, i);
  else {
    c.ssls.forEach(visit);
    for (const id of [...cache.ssls.keys()]) if (!seen.has(id)) cache.ssls.delete(id);
  }
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
      ...(clientCa && s.client?.skip_mtls_paths ? { skipMtls: s.client.skip_mtls_paths } : {}),
      protocols: s.ssl_protocols,
      ciphers: s.ssl_ciphers,
      hash: materialHash([
        ...pairs.flatMap((p) => [p.cert, p.key]),
        clientCa,
        clientCrl,
        String(s.client?.depth),
        // Optional verification is another TLS server (requestCert without rejectUnauthorized).
        ...(s.client?.skip_mtls_paths ? ['skip', ...s.client.skip_mtls_paths] : []),
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
    setIssues(i, own);
    if (own.some((x) => x.severity === 'error')) cache.ssls.delete(s.id);
    else {
      const entry = {
        cfg: s,
        values: t.vals,
        context,
        index: i,
        paths: t.paths,
        ssl,
        detail,
        issues: own,
      };
      cache.ssls.set(s.id, entry);
    }
  });
  const issues = [...head];
  for (const i of [...sslIssues.keys()].sort((a, b) => a - b)) issues.push(...sslIssues.get(i)!);
  if (issues.some((i) => i.severity === 'error')) throw new ConfigError(issues);
  if (fast) {
    // Upstreams name client SSL objects by id and carry their hash: redone if one changed.
    const changedIds = new Set(only!.map((i) => c.ssls[i]!.id));
    const o = fast.out.snapshot;
    const upstreams = c.upstreams.some((u) => u.tls?.client_ssl !== undefined && changedIds.has(u.tls.client_ssl))
      ? upstreamSnapshots(c, values, ssls)
      : o.upstreams;
    const out: Compiled = {
      snapshot: { ...o, ssls, upstreams },
      details,
      warnings: [...issues, ...fast.tail],
      recompiled: todo.length,
      sslPatch: { from: o.ssls, indices: only! },
    };
    cache.last = { ...fast, rc, out, sslIssues };
    return out;
  }
  const tail: ConfigIssue[] = [];
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
      tail.push({
        path: `listeners[${i}].timeouts`,
        code: 'TLSGATE_E_ENGINE_UNSUPPORTED',
        severity: 'warning',
        message: `uws applies its compiled-in idle timeout (≈ 10 s), not ${changed.join(', ')}: use engine: node for them`,
      });
    }
    if (l.max_connections !== defaults.maxConnections) {
      tail.push({
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

  const upstreams = upstreamSnapshots(c, values, ssls);
  const out: Compiled = {
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
    warnings: [...issues, ...tail],
    recompiled: todo.length,
  };
  cache.last = { rc, context, out, head, tail, sslIssues };
  return out;
}

function upstreamSnapshots(
  c: ResolvedConfig['config'],
  values: ReadonlyMap<string, string>,
  ssls: readonly SslSnapshot[],
): UpstreamSnapshot[] {
  const sslById = new Map(ssls.map((x) => [x.id, x]));
  return c.upstreams.map((u, i) => {
    const ca = u.tls?.ca ? values.get(`upstreams[${i}].tls.ca`) : undefined;
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
      // roundrobin is left out: the hash (and the pools) of an upstream without `type` stay as they were.
      ...(u.type === 'roundrobin' ? {} : {
        balance: u.type === 'chash'
          ? { type: u.type, hashOn: u.hash_on, key: u.key ?? 'remote_addr' }
          : { type: u.type },
      }),
    };
    const clientSsl = tls?.clientSsl ? sslById.get(tls.clientSsl)?.hash : undefined;
    return { ...body, hash: materialHash([JSON.stringify(body), clientSsl]) };
  });
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
