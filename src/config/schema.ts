// The one schema: raw YAML value → GatewayConfig, or every problem with its path.
import { dirname } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { ConfigIssue } from '../errors';
import { normalizePattern } from '../routing/names';
import { validateProviderConfig } from '../secrets/providers';
import { parseValue } from '../secrets/reference';
import { mtlsLoss } from './mtls-loss';
import { secretFields } from './secret-fields';
import type { TlsProtocol } from '../snapshot/types';
import { defaults } from './defaults';
import {
  connectHost, FRAMING_HEADERS, headerName, headerValue, hostHeader, nearest, sniName, wildcardOverPublicSuffix,
} from './formats';
import { join, Reader, type Obj } from './reader';
import type {
  GatewayConfig, LimitsConfig, ListenerConfig, RouteConfig, SslConfig, TimeoutsConfig, UpstreamConfig,
} from './types';

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ID_HINT = 'must be 1-64 characters: letters, digits, ".", "_", "-"';
const TOP = [
  'workers', 'log', 'warn_days', 'drain_timeout', 'limits', 'timeouts', 'max_connections', 'file_max_size',
  'file_refresh_interval', 'admin', 'audit', 'listeners', 'secret_providers', 'ssls', 'upstreams', 'routes',
] as const;
const LIMIT_KEYS = ['max_header_count', 'max_header_bytes', 'max_request_line', 'max_body_size'] as const;
const TIMEOUT_KEYS = ['handshake', 'request_header', 'keepalive'] as const;
const LOG_KEYS = ['level', 'file'] as const;
const ADMIN_KEYS = ['listen', 'api_keys', 'tls'] as const;
const PAIR_KEYS = ['cert', 'key'] as const;
const LISTENER_KEYS = [
  'name', 'listen', 'engine', 'default_ssl', 'session_tickets', 'limits', 'timeouts', 'max_connections',
] as const;
const SSL_KEYS = [
  'id', 'type', 'snis', 'cert', 'key', 'certs', 'keys', 'client', 'ssl_protocols', 'ssl_ciphers', 'status',
] as const;
const CLIENT_KEYS = ['ca', 'depth', 'crl'] as const;
const UPSTREAM_KEYS = ['id', 'scheme', 'nodes', 'host', 'tls', 'timeout', 'client_identity_headers'] as const;
const UPSTREAM_TLS_KEYS = ['verify', 'ca', 'client_ssl', 'sni'] as const;
const IDENTITY_KEYS = ['subject', 'fingerprint', 'verify'] as const;
const ROUTE_KEYS = ['id', 'hosts', 'paths', 'upstream', 'respond', 'methods', 'max_body_size'] as const;
const RESPOND_KEYS = ['status', 'body', 'headers'] as const;
const NO_CONTENT = new Set([204, 205, 304]); // RFC 9110 §15.3.5, §15.3.6, §15.4.5
const METHOD = /^[A-Z][A-Z0-9!#$%&'*+.^_`|~-]{0,31}$/;

interface EdgeDefaults {
  limits: LimitsConfig;
  timeouts: TimeoutsConfig;
  max_connections: number;
}

/** `limits` / `timeouts` / `max_connections` at `path` (top level or a listener), over `base`. */
function edge(r: Reader, o: Obj, path: string, base: EdgeDefaults): EdgeDefaults {
  const limits = { ...base.limits };
  if (o.limits !== undefined) {
    const p = join(path, 'limits');
    const l = r.obj(o.limits, p, LIMIT_KEYS);
    if (l) {
      r.known(l, p, LIMIT_KEYS);
      limits.max_header_count = r.int(l, 'max_header_count', p, { min: 1, max: 1000 }) ?? limits.max_header_count;
      limits.max_header_bytes = r.size(l, 'max_header_bytes', p, { min: 1024, max: 1024 ** 2 }) ?? limits.max_header_bytes;
      limits.max_request_line = r.size(l, 'max_request_line', p, { min: 256, max: 1024 ** 2 }) ?? limits.max_request_line;
      if (l.max_body_size === null || l.max_body_size === 'unlimited') limits.max_body_size = null;
      else limits.max_body_size = r.size(l, 'max_body_size', p) ?? limits.max_body_size;
    }
  }
  const timeouts = { ...base.timeouts };
  if (o.timeouts !== undefined) {
    const p = join(path, 'timeouts');
    const t = r.obj(o.timeouts, p, TIMEOUT_KEYS);
    if (t) {
      r.known(t, p, TIMEOUT_KEYS);
      for (const k of TIMEOUT_KEYS) {
        const ms = r.duration(t, k, p);
        if (ms === undefined) continue;
        if (ms < 100 || ms > 3_600_000) r.error(join(p, k), `must be between 100ms and 1h, got ${ms} ms`);
        else timeouts[k] = ms;
      }
    }
  }
  const max_connections = r.int(o, 'max_connections', path, { min: 1, max: 1_000_000 }) ?? base.max_connections;
  return { limits, timeouts, max_connections };
}

export interface SchemaResult {
  config?: GatewayConfig;
  issues: ConfigIssue[];
}

export function validateConfig(raw: unknown, file: string): SchemaResult {
  const r = new Reader();
  const root = raw === null || raw === undefined ? {} : r.obj(raw, '(root)');
  if (!root) return { issues: r.issues };
  r.known(root, '', TOP);
  const d = defaults;
  const edgeDefaults = edge(r, root, '', {
    limits: {
      max_header_count: d.limits.maxHeaderCount,
      max_header_bytes: d.limits.maxHeaderBytes,
      max_request_line: d.limits.maxRequestLine,
      max_body_size: d.limits.maxBodySize,
    },
    timeouts: { handshake: d.timeouts.handshake, request_header: d.timeouts.requestHeader, keepalive: d.timeouts.keepAlive },
    max_connections: d.maxConnections,
  });

  let workers = defaults.workers();
  if (root.workers !== undefined && root.workers !== 'auto') workers = r.int(root, 'workers', '', { min: 1, max: 256 }) ?? workers;

  const logObj = root.log === undefined ? {} : r.obj(root.log, 'log', LOG_KEYS) ?? {};
  r.known(logObj, 'log', LOG_KEYS);
  const log = {
    level: r.oneOf(logObj, 'level', 'log', ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const) ?? defaults.logLevel,
    ...optional('file', r.str(logObj, 'file', 'log')),
  };

  const config: GatewayConfig = {
    file,
    baseDir: dirname(file),
    workers,
    log,
    warn_days: r.int(root, 'warn_days', '', { min: 0, max: 3650 }) ?? defaults.warnDays,
    drain_timeout: r.duration(root, 'drain_timeout', '') ?? defaults.drainTimeout,
    file_max_size: r.size(root, 'file_max_size', '', { min: 1024, max: 64 * 1024 ** 2 }) ?? defaults.fileMaxSize,
    file_refresh_interval: r.duration(root, 'file_refresh_interval', '') ?? defaults.fileRefreshInterval,
    listeners: [],
    secret_providers: [],
    ssls: [],
    upstreams: [],
    routes: [],
  };

  if (root.admin !== undefined) {
    const a = r.obj(root.admin, 'admin', ADMIN_KEYS);
    if (a) {
      r.known(a, 'admin', ADMIN_KEYS);
      const listen = r.hostPort(a, 'listen', 'admin', true);
      const keys = (r.list(a, 'api_keys', 'admin', true) ?? []).map((k, i) => r.secretAt(k, `admin.api_keys[${i}]`));
      if (a.api_keys !== undefined && keys.length === 0) r.error('admin.api_keys', 'must hold at least one key');
      let tls: { cert: string; key: string } | undefined;
      if (a.tls !== undefined) {
        const t = r.obj(a.tls, 'admin.tls', PAIR_KEYS);
        if (t) {
          r.known(t, 'admin.tls', PAIR_KEYS);
          const cert = r.secret(t, 'cert', 'admin.tls', true);
          const key = r.secret(t, 'key', 'admin.tls', true);
          if (cert && key) tls = { cert, key };
        }
      }
      if (listen) config.admin = { listen, api_keys: keys.filter((k): k is string => k !== undefined), ...optional('tls', tls) };
    }
  }

  if (root.audit !== undefined) {
    const a = r.obj(root.audit, 'audit', ['path']);
    if (a) {
      r.known(a, 'audit', ['path']);
      const path = r.str(a, 'path', 'audit', { required: true });
      if (path) config.audit = { path };
    }
  }

  (r.list(root, 'listeners', '', true, `{${LISTENER_KEYS.slice(0, 4).join(', ')}, …}`) ?? []).forEach((v, i) => {
    const l = listener(r, v, `listeners[${i}]`, edgeDefaults);
    if (l) config.listeners.push(l);
  });
  if (Array.isArray(root.listeners) && root.listeners.length === 0) r.error('listeners', 'must hold at least one listener');

  (r.list(root, 'secret_providers', '', false, '{id, type, …}') ?? []).forEach((v, i) => {
    const { provider, issues } = validateProviderConfig(v, `secret_providers[${i}]`);
    r.issues.push(...issues);
    if (provider) config.secret_providers.push(provider);
  });

  (r.list(root, 'ssls', '', false, `{${SSL_KEYS.slice(0, 5).join(', ')}, …}`) ?? []).forEach((v, i) => {
    const s = ssl(r, v, `ssls[${i}]`);
    if (s) config.ssls.push(s);
  });
  (r.list(root, 'upstreams', '', false, `{${UPSTREAM_KEYS.slice(0, 4).join(', ')}, …}`) ?? []).forEach((v, i) => {
    const u = upstream(r, v, `upstreams[${i}]`);
    if (u) config.upstreams.push(u);
  });
  (r.list(root, 'routes', '', false, '{id, hosts, paths, upstream | respond, …}') ?? []).forEach((v, i) => {
    const rt = route(r, v, `routes[${i}]`);
    if (rt) config.routes.push(rt);
  });

  crossChecks(r, root, config);
  providerRefs(r, config);
  const ok = !r.issues.some((i) => i.severity === 'error');
  return ok ? { config, issues: r.issues } : { issues: r.issues };
}

function listener(r: Reader, v: unknown, path: string, base: EdgeDefaults): ListenerConfig | undefined {
  const o = r.obj(v, path, LISTENER_KEYS);
  if (!o) return undefined;
  r.known(o, path, LISTENER_KEYS);
  const e = edge(r, o, path, base);
  const name = r.str(o, 'name', path, { required: true, pattern: ID, hint: ID_HINT });
  const listen = r.hostPort(o, 'listen', path, true);
  const engine = r.oneOf(o, 'engine', path, ['node', 'uws'] as const) ?? defaults.engine;
  const default_ssl = r.str(o, 'default_ssl', path);
  const session_tickets = r.bool(o, 'session_tickets', path) ?? true;
  if (engine === 'uws' && !session_tickets) r.error(join(path, 'session_tickets'), 'uws cannot turn session tickets off: use engine: node', 'TLSGATE_E_ENGINE_UNSUPPORTED');
  if (!name || !listen) return undefined;
  return { name, listen, engine, session_tickets, ...optional('default_ssl', default_ssl), ...e };
}

function ssl(r: Reader, v: unknown, path: string): SslConfig | undefined {
  const o = r.obj(v, path, SSL_KEYS);
  if (!o) return undefined;
  r.known(o, path, SSL_KEYS);
  const id = r.str(o, 'id', path, { required: true, pattern: ID, hint: ID_HINT });
  const type = r.oneOf(o, 'type', path, ['server', 'client'] as const) ?? defaults.sslType;
  const snis: string[] = [];
  (r.list(o, 'snis', path, type === 'server', 'host names or "*." patterns') ?? []).forEach((s, j) => {
    const p = `${path}.snis[${j}]`;
    const n = typeof s === 'string' ? normalizePattern(s) : null;
    const suffix = n === null ? null : wildcardOverPublicSuffix(n);
    if (n === null) r.error(p, `${JSON.stringify(s)} is not a valid SNI (a host name, or "*." and a host name; ≤ 253 bytes)`, 'TLSGATE_E_SNI_INVALID');
    else if (suffix) {
      const msg = `"${n}" is a wildcard over the public suffix "${suffix}": it would claim every site under it`;
      r.error(p, msg, 'TLSGATE_E_WILDCARD_PUBLIC_SUFFIX');
    }
    else if (snis.includes(n)) r.error(p, `"${n}" is listed twice`, 'TLSGATE_E_SNI_CONFLICT');
    else snis.push(n);
  });
  if (type === 'server' && Array.isArray(o.snis) && o.snis.length === 0) r.error(join(path, 'snis'), 'a server SSL object needs at least one SNI');
  const cert = r.secret(o, 'cert', path, true);
  const key = r.secret(o, 'key', path, true);
  const certs = (r.list(o, 'certs', path, false, 'PEM certificates or references') ?? [])
    .map((c, j) => r.secretAt(c, `${path}.certs[${j}]`));
  const keys = (r.list(o, 'keys', path, false, 'PEM keys or references') ?? [])
    .map((c, j) => r.secretAt(c, `${path}.keys[${j}]`));
  if (certs.length !== keys.length) r.error(join(path, 'keys'), `has ${keys.length} key(s) for ${certs.length} extra certificate(s) in certs; they pair by index`);
  let client: SslConfig['client'];
  if (o.client !== undefined) {
    const c = r.obj(o.client, join(path, 'client'), CLIENT_KEYS);
    if (c) {
      r.known(c, join(path, 'client'), CLIENT_KEYS);
      const ca = r.secret(c, 'ca', join(path, 'client'), true);
      const depth = r.int(c, 'depth', join(path, 'client'), { min: 0, max: 10 }) ?? defaults.clientDepth;
      const crl = r.secret(c, 'crl', join(path, 'client'));
      if (ca) client = { ca, depth, ...optional('crl', crl) };
    }
    if (type === 'client') r.error(join(path, 'client'), 'client CA (mTLS) applies to server SSL objects only');
  }
  const protocols: TlsProtocol[] = [];
  const rawProtocols = r.list(o, 'ssl_protocols', path, false, 'TLSv1.2 | TLSv1.3');
  (rawProtocols ?? [...defaults.sslProtocols]).forEach((p, j) => {
    if (p === 'TLSv1.2' || p === 'TLSv1.3') protocols.includes(p) || protocols.push(p);
    else r.error(`${path}.ssl_protocols[${j}]`, `must be TLSv1.2 or TLSv1.3, got ${JSON.stringify(p)}`);
  });
  if (rawProtocols && rawProtocols.length === 0) r.error(join(path, 'ssl_protocols'), 'must hold at least one protocol');
  const ssl_ciphers = r.str(o, 'ssl_ciphers', path) ?? defaults.sslCiphers;
  if (o.ssl_ciphers !== undefined && !knownCiphers(ssl_ciphers)) {
    r.error(
      join(path, 'ssl_ciphers'),
      `${JSON.stringify(ssl_ciphers)}: OpenSSL knows none of these ciphers ` +
        '(an OpenSSL cipher list, e.g. "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")',
    );
  }
  const status = r.oneOf(o, 'status', path, ['enabled', 'disabled'] as const) ?? defaults.sslStatus;
  if (!id || !cert || !key) return undefined;
  return {
    id,
    type,
    snis,
    cert,
    key,
    certs: certs.filter((c): c is string => c !== undefined),
    keys: keys.filter((c): c is string => c !== undefined),
    ...optional('client', client),
    ssl_protocols: protocols,
    ssl_ciphers,
    status,
  };
}

/** Does OpenSSL accept the list (at least one cipher it knows)? TLS 1.3 suite names alone count. */
function knownCiphers(list: string): boolean {
  const tls12 = list.split(':').filter((c) => c && !c.startsWith('TLS_')).join(':');
  const tls13 = list.split(':').filter((c) => c.startsWith('TLS_')).join(':');
  try {
    createSecureContext({ ciphers: tls12 || tls13 });
    return true;
  } catch {
    return false;
  }
}

function upstream(r: Reader, v: unknown, path: string): UpstreamConfig | undefined {
  const o = r.obj(v, path, UPSTREAM_KEYS);
  if (!o) return undefined;
  r.known(o, path, UPSTREAM_KEYS);
  const id = r.str(o, 'id', path, { required: true, pattern: ID, hint: ID_HINT });
  const scheme = r.oneOf(o, 'scheme', path, ['http', 'https'] as const) ?? defaults.upstreamScheme;
  const nodes: UpstreamConfig['nodes'] = [];
  (r.list(o, 'nodes', path, true, '{host, port, weight}') ?? []).forEach((n, j) => {
    const p = `${path}.nodes[${j}]`;
    const no = r.shaped(n, p, '{host, port, weight}');
    if (!no) return;
    r.known(no, p, ['host', 'port', 'weight']);
    const host = checked(r, join(p, 'host'), r.str(no, 'host', p, { required: true }), connectHost);
    const port = r.int(no, 'port', p, { min: 1, max: 65535 });
    if (no.port === undefined) r.error(join(p, 'port'), 'is required');
    const weight = r.int(no, 'weight', p, { min: 0, max: 10_000 }) ?? defaults.nodeWeight;
    if (host && port) nodes.push({ host, port, weight });
  });
  if (Array.isArray(o.nodes) && o.nodes.length === 0) r.error(join(path, 'nodes'), 'must hold at least one node');
  const host = checked(r, join(path, 'host'), r.str(o, 'host', path), hostHeader);
  let tls: UpstreamConfig['tls'];
  if (o.tls !== undefined) {
    const t = r.obj(o.tls, join(path, 'tls'), UPSTREAM_TLS_KEYS);
    if (t) {
      const p = join(path, 'tls');
      r.known(t, p, UPSTREAM_TLS_KEYS);
      tls = {
        verify: r.bool(t, 'verify', p) ?? defaults.upstreamVerify,
        ...optional('ca', r.secret(t, 'ca', p)),
        ...optional('client_ssl', r.str(t, 'client_ssl', p)),
        ...optional('sni', checked(r, join(p, 'sni'), r.str(t, 'sni', p), sniName)),
      };
      if (scheme === 'http') r.error(p, 'is set but scheme is http (use scheme: https)');
    }
  }
  const timeout = { connect: defaults.connectTimeout, read: defaults.readTimeout };
  if (o.timeout !== undefined) {
    const t = r.obj(o.timeout, join(path, 'timeout'), ['connect', 'read']);
    if (t) {
      r.known(t, join(path, 'timeout'), ['connect', 'read']);
      timeout.connect = r.duration(t, 'connect', join(path, 'timeout'), { min: 1 }) ?? timeout.connect;
      timeout.read = r.duration(t, 'read', join(path, 'timeout'), { min: 1 }) ?? timeout.read;
    }
  }
  let identity: UpstreamConfig['client_identity_headers'];
  const cih = o.client_identity_headers;
  if (cih === true) identity = { ...defaults.clientIdentityHeaders };
  else if (cih !== undefined && cih !== false) {
    const c = r.obj(cih, join(path, 'client_identity_headers'), IDENTITY_KEYS);
    if (c) {
      const p = join(path, 'client_identity_headers');
      r.known(c, p, IDENTITY_KEYS);
      const name = (k: 'subject' | 'fingerprint' | 'verify'): string => {
        const v = checked(r, join(p, k), r.str(c, k, p), identityHeader);
        return (v ?? defaults.clientIdentityHeaders[k]).toLowerCase();
      };
      identity = { subject: name('subject'), fingerprint: name('fingerprint'), verify: name('verify') };
      const names = [identity.subject, identity.fingerprint, identity.verify];
      if (new Set(names).size < 3) r.error(p, `the three header names must differ, got ${names.join(', ')}`);
    }
  }
  if (!id) return undefined;
  return { id, scheme, nodes, ...optional('host', host), ...optional('tls', tls), timeout, ...optional('client_identity_headers', identity) };
}

function route(r: Reader, v: unknown, path: string): RouteConfig | undefined {
  const o = r.obj(v, path, ROUTE_KEYS);
  if (!o) return undefined;
  r.known(o, path, ROUTE_KEYS);
  let methods: string[] | undefined;
  const rawMethods = r.list(o, 'methods', path, false, 'upper-case HTTP methods');
  if (rawMethods) {
    methods = [];
    rawMethods.forEach((m, j) => {
      if (typeof m === 'string' && METHOD.test(m)) methods!.includes(m) || methods!.push(m);
      else r.error(`${path}.methods[${j}]`, `${JSON.stringify(m)} is not an upper-case HTTP method (GET, POST, …)`);
    });
    if (rawMethods.length === 0) r.error(join(path, 'methods'), 'must hold at least one method (omit it for any method)');
  }
  let maxBody: number | null | undefined;
  if (o.max_body_size === null || o.max_body_size === 'unlimited') maxBody = null;
  else maxBody = r.size(o, 'max_body_size', path);
  const id = r.str(o, 'id', path, { required: true, pattern: ID, hint: ID_HINT });
  let hosts: string[] | undefined;
  const rawHosts = r.list(o, 'hosts', path, false, 'host names, "*." patterns or "*"');
  if (rawHosts) {
    hosts = [];
    rawHosts.forEach((h, j) => {
      const n = h === '*' ? '*' : typeof h === 'string' ? normalizePattern(h) : null;
      if (n === null) r.error(`${path}.hosts[${j}]`, `${JSON.stringify(h)} is not a host name, "*." pattern or "*"`);
      else hosts!.push(n);
    });
    if (hosts.includes('*')) hosts = undefined;
  }
  const paths: string[] = [];
  (r.list(o, 'paths', path, false, 'path prefixes') ?? ['/']).forEach((p, j) => {
    if (typeof p === 'string' && p.startsWith('/')) paths.push(p);
    else r.error(`${path}.paths[${j}]`, `${JSON.stringify(p)} must be a path prefix starting with "/"`);
  });
  const upstreamId = r.str(o, 'upstream', path);
  let respond: RouteConfig['respond'];
  if (o.respond !== undefined) {
    const p = join(path, 'respond');
    const ro = r.obj(o.respond, p, RESPOND_KEYS);
    if (ro) {
      r.known(ro, p, RESPOND_KEYS);
      const headers: Record<string, string> = {};
      if (ro.headers !== undefined) {
        const hp = join(p, 'headers');
        const ho = r.shaped(ro.headers, hp, '{header-name: value}');
        for (const [k, hv] of Object.entries(ho ?? {})) {
          const kp = `${hp}[${JSON.stringify(k)}]`;
          const badName = headerName(k);
          const scalar = typeof hv === 'string' || typeof hv === 'number';
          const badValue = scalar ? headerValue(String(hv)) : 'must be a string';
          if (badName) r.error(kp, badName);
          else if (FRAMING_HEADERS.has(k.toLowerCase())) {
            r.error(kp, `"${k}" is set by the gateway from the body and connection; a route cannot set it`);
          } else if (badValue) r.error(kp, badValue);
          else headers[k.toLowerCase()] = String(hv);
        }
      }
      let body = '';
      if (typeof ro.body === 'string') body = ro.body;
      else if (ro.body !== undefined) {
        const got = typeof ro.body === 'object' ? 'a structure' : JSON.stringify(ro.body);
        r.error(join(p, 'body'), `must be a string, got ${got}`);
      }
      // 1xx is not a final response (the client would wait for one); Node refuses > 999.
      const status = r.int(ro, 'status', p, { min: 200, max: 599 }) ?? defaults.respondStatus;
      // uWS writes the body after a 204 anyway (measured): a keep-alive client then reads it
      // as the start of the next response.
      if (NO_CONTENT.has(status) && body !== '') {
        r.error(join(p, 'body'), `must be empty: a ${status} response has no content`);
      }
      respond = { status, body, headers };
    }
  }
  if (upstreamId && respond) r.error(path, 'has both upstream and respond; a route does one');
  if (!upstreamId && !respond && id) r.error(path, 'needs an upstream or a respond block');
  if (!id) return undefined;
  return {
    id,
    ...optional('hosts', hosts),
    paths,
    ...optional('upstream', upstreamId),
    ...optional('respond', respond),
    ...optional('methods', methods),
    ...(maxBody !== undefined ? { max_body_size: maxBody } : {}),
  };
}

function crossChecks(r: Reader, root: Obj, c: GatewayConfig): void {
  unique(r, c.listeners.map((l) => l.name), 'listeners', 'name', root);
  unique(r, c.ssls.map((s) => s.id), 'ssls', 'id', root);
  unique(r, c.upstreams.map((u) => u.id), 'upstreams', 'id', root);
  unique(r, c.routes.map((x) => x.id), 'routes', 'id', root);
  unique(r, c.secret_providers.map((p) => p.id), 'secret_providers', 'id', root);
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
    if (l.default_ssl === undefined || refusedSsls.has(l.default_ssl)) return;
    const s = ssls.get(l.default_ssl);
    const name = JSON.stringify(l.default_ssl);
    const msg = `${name} is not the id of an SSL object${didYouMean(l.default_ssl, [...ssls.keys()])}`;
    if (!s) r.error(`listeners[${i}].default_ssl`, msg, 'TLSGATE_E_REF_UNKNOWN');
    else if (s.type !== 'server') r.error(`listeners[${i}].default_ssl`, `"${l.default_ssl}" is an SSL object of type ${s.type}, not server`, 'TLSGATE_E_REF_UNKNOWN');
  });
  // Two SSL objects claiming one SNI: an error naming both ids.
  const owner = new Map<string, string>();
  c.ssls.forEach((s, i) => {
    if (s.type !== 'server' || s.status !== 'enabled') return;
    s.snis.forEach((n, j) => {
      const prev = owner.get(n);
      if (prev !== undefined) r.error(`ssls[${i}].snis[${j}]`, `"${n}" is claimed by SSL objects "${prev}" and "${s.id}"`, 'TLSGATE_E_SNI_CONFLICT');
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
    if (cs === undefined || refusedSsls.has(cs)) return;
    const s = ssls.get(cs);
    const name = JSON.stringify(cs);
    const p = `upstreams[${i}].tls.client_ssl`;
    const hint = didYouMean(cs, [...ssls.keys()]);
    if (!s) r.error(p, `${name} is not the id of an SSL object${hint}`, 'TLSGATE_E_REF_UNKNOWN');
    else if (s.type !== 'client') r.error(`upstreams[${i}].tls.client_ssl`, `"${cs}" is an SSL object of type ${s.type}; upstream client certificates need type: client`, 'TLSGATE_E_REF_UNKNOWN');
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
        `uws cannot enforce mTLS (it lets a client with no certificate through and does not apply a per-SNI CA), but SSL object "${s.id}" has client.ca: use engine: node for this listener`,
        'TLSGATE_E_ENGINE_UNSUPPORTED',
      );
    }
    // uWS exposes no protocol bounds per context: BoringSSL serves TLSv1.2 and TLSv1.3 on every one.
    for (const s of c.ssls) {
      if (s.type !== 'server' || s.status !== 'enabled' || s.ssl_protocols.length === 2) continue;
      r.error(
        `listeners[${i}].engine`,
        `uws cannot restrict ssl_protocols per SSL object (it serves TLSv1.2 and TLSv1.3 on every context), but SSL object "${s.id}" allows only ${s.ssl_protocols.join(', ')}: use engine: node for this listener`,
        'TLSGATE_E_ENGINE_UNSUPPORTED',
      );
    }
  });
}

/**
 * Every `$secret://` reference must name a configured provider of its type. Removing or
 * retyping a provider that is still referenced is refused here, once per referencing field.
 */
function providerRefs(r: Reader, c: GatewayConfig): void {
  const providers = new Map(c.secret_providers.map((p) => [p.id, p.type]));
  for (const [path, raw] of secretFields(c)) {
    const parsed = parseValue(raw);
    if (!parsed.ok || !parsed.ref || (parsed.ref.kind !== 'vault' && parsed.ref.kind !== 'aws')) continue;
    const { provider, kind, text } = parsed.ref;
    const type = providers.get(provider);
    if (type === undefined) r.error(path, `${text}: secret provider "${provider}" is not configured (secret_providers has ${[...providers.keys()].map((k) => `"${k}"`).join(', ') || 'none'})`, 'TLSGATE_E_SECRET_PROVIDER');
    else if (type !== kind) r.error(path, `${text}: secret provider "${provider}" is of type ${type}, not ${kind}`, 'TLSGATE_E_SECRET_PROVIDER');
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
    if (first !== undefined) r.error(`${kind}[${i}].${field}`, `"${id}" is also the ${field} of ${kind}[${first}]`, 'TLSGATE_E_DUPLICATE_ID');
    else seen.set(id, i);
  });
}

/** Runs a format check on a value that was read; records the message at `path`. */
function checked(
  r: Reader, path: string, v: string | undefined, check: (v: string) => string | null,
): string | undefined {
  if (v === undefined) return undefined;
  const bad = check(v);
  if (bad === null) return v;
  r.error(path, bad);
  return undefined;
}

function identityHeader(v: string): string | null {
  const bad = headerName(v);
  if (bad) return bad;
  const own = FRAMING_HEADERS.has(v.toLowerCase()) || v.toLowerCase() === 'host';
  return own ? `"${v}" is a header the gateway sets itself` : null;
}

function optional<K extends string, V>(key: K, v: V | undefined): { [P in K]?: V } {
  return (v === undefined ? {} : { [key]: v }) as { [P in K]?: V };
}
