// THE config declaration: structure, types, defaults, formats and documentation of every
// field. `validate` (schema.ts), the types (types.ts), the defaults (defaults.ts) and the
// README's reference table (scripts/config-table.js) are derived from it.
import { availableParallelism } from 'node:os';
import { createSecureContext } from 'node:tls';
import { normalizePattern } from '../routing/names';
import { parsePath } from '../routing/router';
import { normalizePath } from '../proxy/request-check';
import {
  bool, credential, custom, duration, hostPort, int, list, obj, oneOf, overrides, readFields, secret, size, str,
  tagged, unlimitedSize, type Field, type Infer, type ObjOf,
} from './decl';
import {
  connectHost, FRAMING_HEADERS, headerName, headerValue, hostHeader, sniName, wildcardOverPublicSuffix,
} from './formats';
import { describe, join, type Obj, type Reader } from './reader';
import type { TlsProtocol } from '../snapshot/types';

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ID_HINT = 'must be 1-64 characters: letters, digits, ".", "_", "-"';
const id = (doc: string) => str({ doc, required: true, pattern: ID, hint: ID_HINT, type: 'id' });
const NO_CONTENT = new Set([204, 205, 304]);

// Descriptive metadata on SSL objects, upstreams and routes (bounds as APISIX's name_def,
// desc_def and labels_def). Admin API only: never in a snapshot, so never on a socket or in a header.
const MAX_LABELS = 16;
const LABEL_KEY = /^[A-Za-z0-9]([A-Za-z0-9._/-]{0,62}[A-Za-z0-9])?$/;
const LABEL_VALUE = /^[A-Za-z0-9._:/@-]{1,64}$/;
// C0, DEL, C1, line/paragraph separators and bidi controls: text that could forge a log line or hide itself.
const UNSAFE_TEXT = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/u;

/** Null when `k` may be a label key; else why not. `:` is excluded: filters are `key:value`. */
export function labelKeyProblem(k: string): string | null {
  return LABEL_KEY.test(k) ? null
    : `label key ${JSON.stringify(k)} must be 1-64 letters, digits, ".", "_", "/", "-", starting and ending with ` +
      'a letter or digit';
}

/** Null when `v` may be a label value; else why not. */
export function labelValueProblem(v: string): string | null {
  return LABEL_VALUE.test(v) ? null
    : `label value ${JSON.stringify(v)} must be 1-64 letters, digits, ".", "_", ":", "/", "@", "-"`;
}

const text = (max: number) => (v: string): string | null => {
  if ([...v].length > max) return `must be at most ${max} characters, got ${[...v].length}`;
  return UNSAFE_TEXT.test(v) ? 'must not hold control, line-separator or bidi characters' : null;
};

const LABELS = custom<Record<string, string>, { type: string; doc: string }>({
  type: `mapping key: value (≤ ${MAX_LABELS})`, doc: 'labels, filterable in the admin API (?label=key:value)',
}, (r, v, p) => {
  const o = r.obj(v, p);
  if (!o) return undefined;
  const out: Record<string, string> = {};
  const keys = Object.keys(o);
  if (keys.length > MAX_LABELS) r.error(p, `has ${keys.length} labels; at most ${MAX_LABELS}`);
  for (const k of keys) {
    const kp = `${p}[${JSON.stringify(k)}]`;
    const val = o[k];
    const bad = labelKeyProblem(k) ?? (typeof val === 'string' ? labelValueProblem(val)
      : `must be a string, got ${describe(val)}`);
    if (bad) r.error(kp, bad);
    else out[k] = val as string;
  }
  return out;
});

const META = {
  name: str({ format: text(100), type: 'text ≤ 100', doc: 'descriptive name (not an id: names may repeat)' }),
  desc: str({ format: text(256), type: 'text ≤ 256', doc: 'description' }),
  labels: LABELS,
};
 // RFC 9110 §15.3.5, §15.3.6, §15.4.5
const METHOD = /^[A-Z][A-Z0-9!#$%&'*+.^_`|~-]{0,31}$/;

// Mozilla "intermediate" for TLS 1.2, minus DHE: ECDHE key exchange and AEAD only (no
// CBC, no 3DES, no static RSA); TLS 1.3 suites are added by the engines.
export const DEFAULT_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305', 'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export const CLIENT_IDENTITY_HEADERS = {
  subject: 'x-client-cert-subject',
  fingerprint: 'x-client-cert-fingerprint',
  verify: 'x-client-verify',
};

// Edge limits (nginx / HAProxy as reference; README "Limits and timeouts").
export const LIMITS = obj({
  max_header_count: int({ min: 1, max: 1000, default: 100, doc: 'request headers; more → 431' }),
  max_header_bytes: size({ min: 1024, max: 1024 ** 2, default: 32 * 1024, doc: 'request header lines; more → 431' }),
  max_request_line: size({ min: 256, max: 1024 ** 2, default: 8 * 1024, doc: 'request line; longer → 414' }),
  max_body_size: unlimitedSize({
    default: null, doc: 'request body; larger → 413 (streamed with backpressure either way)',
  }),
  // nginx http2_max_concurrent_streams: 128; Node's own default is 2^32 - 1.
  h2_max_concurrent_streams: int({
    min: 1, max: 1000, default: 128,
    doc: 'HTTP/2 streams open at once per connection (SETTINGS); more ends the connection (nghttp2)',
  }),
  h2_max_resets: int({
    min: 1, max: 100_000, default: 100,
    doc: 'HTTP/2 streams a client may reset per connection in a burst (refilled at a tenth per second); ' +
      'more → GOAWAY ENHANCE_YOUR_CALM (Rapid Reset)',
  }),
}, { doc: "every listener's request limits (a listener may override each)" });

const TIMEOUT_RANGE = { min: 100, max: 3_600_000 };
export const TIMEOUTS = obj({
  handshake: duration({ ...TIMEOUT_RANGE, default: 10_000, doc: 'for the TLS handshake to finish' }),
  request_header: duration({ ...TIMEOUT_RANGE, default: 30_000, doc: "for a request's headers to arrive → 408" }),
  keepalive: duration({ ...TIMEOUT_RANGE, default: 60_000, doc: 'idle between keep-alive requests' }),
  h2_stream_idle: duration({
    ...TIMEOUT_RANGE, default: 60_000, doc: 'an HTTP/2 stream with no frame either way → RST_STREAM CANCEL',
  }),
}, { doc: "every listener's timeouts (a listener may override each)" });

const MAX_CONNECTIONS = { min: 1, max: 1_000_000, doc: 'per worker and listener; new connections beyond are refused' };

const LISTENER = obj({
  name: id('listener name'),
  listen: hostPort({ required: true, doc: 'address to bind: an IP literal or localhost, and a port' }),
  engine: oneOf(['node', 'uws'], { default: 'node', doc: 'TLS/HTTP engine (see "uws engine")' }),
  default_ssl: str({ doc: 'SSL id served when the client sends no SNI or an unknown one', type: 'SSL id' }),
  session_tickets: bool({ default: true, doc: 'false: every connection makes a full handshake (node engine)' }),
  http2: bool({ default: true, doc: 'offer h2 in ALPN besides http/1.1 (node engine; uws: http/1.1 only)' }),
  limits: overrides(LIMITS, 'overrides of the top-level limits, field by field', 'top-level'),
  timeouts: overrides(TIMEOUTS, 'overrides of the top-level timeouts, field by field', 'top-level'),
  max_connections: int({ ...MAX_CONNECTIONS, defDoc: 'top-level' }),
}, {
  doc: 'TLS ports',
  rule: (r, l, raw, p) => {
    if (l.engine === 'uws' && !l.session_tickets) {
      r.error(join(p, 'session_tickets'), 'uws cannot turn session tickets off: use engine: node',
        'TLSGATE_E_ENGINE_UNSUPPORTED');
    }
    if (l.engine === 'uws' && raw.http2 === true) {
      r.error(join(p, 'http2'), 'uws offers http/1.1 only (uWS has no HTTP/2): use engine: node',
        'TLSGATE_E_ENGINE_UNSUPPORTED');
    }
  },
});

const PAIR = {
  cert: secret({ required: true, doc: 'PEM certificate chain, leaf first' }),
  key: secret({ required: true, doc: 'PEM private key' }),
};

// A plain string is a key with role admin (what every key could do before roles).
const API_KEY_FIELDS = {
  key: secret({ required: true, doc: 'the X-API-KEY value' }),
  role: oneOf(['viewer', 'editor', 'admin'], {
    required: true, doc: 'viewer: GET; editor: + writes of ssls, upstreams, routes; admin: all (see "Admin API")',
  }),
  id: str({
    pattern: ID, hint: ID_HINT, type: 'id',
    doc: 'names the key in logs and audit (absent: "sha256:" + 8 hex digits of the key)',
  }),
};
const ANY_SECRET = secret({ doc: '' });
const API_KEY = custom<string | ObjOf<typeof API_KEY_FIELDS>, { type: string; doc: string }>({
  type: 'secret | {key, role, id}', doc: '',
}, (r, v, p) => {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return ANY_SECRET.read(r, v, p);
  return readFields(r, API_KEY_FIELDS, v as Obj, p);
}, API_KEY_FIELDS);

const ADMIN = obj({
  listen: hostPort({ required: true, doc: 'admin API address' }),
  api_keys: list(API_KEY, {
    required: true, nonEmpty: 'must hold at least one key', shape: 'keys or {key, role, id}',
    doc: 'accepted X-API-KEY values; a plain string has role admin',
  }),
  tls: obj(PAIR, { optional: true, doc: 'serve the admin API over TLS' }),
}, {
  optional: true, doc: 'admin API (absent: no admin listener)',
  rule: (r, _a, raw, p) => {
    // On the raw list: indexes stay those of the file even when an entry was refused.
    const ids = new Map<string, number>();
    const literals = new Map<string, number>();
    (Array.isArray(raw.api_keys) ? (raw.api_keys as unknown[]) : []).forEach((k, i) => {
      const at = `${join(p, 'api_keys')}[${i}]`;
      const o = typeof k === 'object' && k !== null ? (k as Obj) : undefined;
      if (typeof o?.id === 'string') {
        const first = ids.get(o.id);
        if (first === undefined) ids.set(o.id, i);
        else r.error(`${at}.id`, `"${o.id}" is also the id of api_keys[${first}]`, 'TLSGATE_E_DUPLICATE_ID');
      }
      // One value under two roles would be ambiguous (a reference is checked once resolved:
      // the least privileged role wins). Never echoed: the index says which.
      const value = typeof k === 'string' ? k : o?.key;
      if (typeof value !== 'string' || value === '' || value.startsWith('$')) return;
      const first = literals.get(value);
      if (first === undefined) literals.set(value, i);
      else r.error(at, `is the same key as api_keys[${first}]`, 'TLSGATE_E_DUPLICATE_ID');
    });
  },
});

function sni(r: Parameters<Field<string>['read']>[0], s: unknown, p: string): string | undefined {
  const n = typeof s === 'string' ? normalizePattern(s) : null;
  if (n === null) {
    const msg = `${JSON.stringify(s)} is not a valid SNI (a host name, or "*." and a host name; ≤ 253 bytes)`;
    return void r.error(p, msg, 'TLSGATE_E_SNI_INVALID');
  }
  const suffix = wildcardOverPublicSuffix(n);
  if (suffix) {
    const msg = `"${n}" is a wildcard over the public suffix "${suffix}": it would claim every site under it`;
    return void r.error(p, msg, 'TLSGATE_E_WILDCARD_PUBLIC_SUFFIX');
  }
  return n;
}

/** Does OpenSSL accept the list (at least one cipher it knows)? TLS 1.3 suite names alone count. */
function knownCiphers(list: string): string | null {
  const tls12 = list.split(':').filter((c) => c && !c.startsWith('TLS_')).join(':');
  const tls13 = list.split(':').filter((c) => c.startsWith('TLS_')).join(':');
  try {
    createSecureContext({ ciphers: tls12 || tls13 });
    return null;
  } catch {
    return `${JSON.stringify(list)}: OpenSSL knows none of these ciphers ` +
      '(an OpenSSL cipher list, e.g. "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256")';
  }
}

const SNIS_SHAPE = 'host names or "*." patterns';

const SSL_TYPE = oneOf(['server', 'client'], {
  default: 'server', doc: 'server: presented to clients; client: presented to upstreams',
});
const CLIENT_CA = obj({
  ca: secret({ required: true, doc: 'PEM CA(s) client certificates must chain to' }),
  depth: int({ min: 0, max: 10, default: 1, doc: 'intermediates allowed between a client certificate and the CA' }),
  crl: secret({ doc: 'PEM CRLs, one per CA of the client chain' }),
  skip_mtls_paths: list(custom({ type: 'path prefix', doc: '' }, (r, v, p) => {
    let bad = typeof v === 'string' ? pathProblem(v) : 'must be a path prefix starting with "/"';
    // `/` and `/*` would exempt every path: the object would have no mTLS left.
    if (bad === null && (v === '/' || v === '/*')) bad = 'exempts every path: remove client instead';
    return bad === null ? (v as string) : void r.error(p, `${JSON.stringify(v)} ${bad}`);
  }), {
    shape: 'path prefixes', repeat: 'drop', nonEmpty: 'must hold at least one path (omit it to require a certificate)',
    doc: 'paths served without a client certificate ("/p", "/p/*", "= /p" as in routes); the handshake ' +
      'then asks for one without requiring it: see "mTLS exemptions"',
  }),
}, { optional: true, doc: 'mTLS: verify client certificates (type server)' });

const SSL = obj({
  id: id('SSL object id'),
  ...META,
  type: SSL_TYPE,
  snis: list(custom({ type: 'SNI', doc: '' }, sni), {
    default: [], shape: SNIS_SHAPE, doc: 'names served (type server; required there)',
    repeat: { message: '"%s" is listed twice', code: 'TLSGATE_E_SNI_CONFLICT' },
  }),
  ...PAIR,
  certs: list(secret({ doc: '' }), {
    default: [], shape: 'PEM certificates or references', doc: 'extra pairs (RSA + ECDSA)',
  }),
  keys: list(secret({ doc: '' }), { default: [], shape: 'PEM keys or references', doc: 'keys of certs, by index' }),
  client: CLIENT_CA,
  ssl_protocols: list(custom({ type: 'TLSv1.2 | TLSv1.3', doc: '' }, (r, v, p) =>
    v === 'TLSv1.2' || v === 'TLSv1.3' ? v : void r.error(p, `must be TLSv1.2 or TLSv1.3, got ${JSON.stringify(v)}`),
  ), {
    default: ['TLSv1.2', 'TLSv1.3'] as TlsProtocol[], shape: 'TLSv1.2 | TLSv1.3', repeat: 'drop',
    nonEmpty: 'must hold at least one protocol', doc: 'TLS versions offered',
  }),
  ssl_ciphers: str({
    default: DEFAULT_CIPHERS, defDoc: 'see "TLS policy"', format: knownCiphers, type: 'OpenSSL cipher list',
    doc: 'TLS ≤ 1.2 ciphers; TLS 1.3 suites by their TLS_ names',
  }),
  status: oneOf(['enabled', 'disabled'], { default: 'enabled', doc: 'disabled leaves the SNI map' }),
}, {
  doc: 'certificates and keys',
  rule: (r, s, raw, p) => {
    if (s.type === 'server' && raw.snis == null) r.error(join(p, 'snis'), `is required: a list of ${SNIS_SHAPE}`);
    if (s.type === 'server' && Array.isArray(raw.snis) && raw.snis.length === 0) {
      r.error(join(p, 'snis'), 'a server SSL object needs at least one SNI');
    }
    const n = (k: string): number => (Array.isArray(raw[k]) ? (raw[k] as unknown[]).length : 0);
    if (n('certs') !== n('keys')) {
      r.error(join(p, 'keys'),
        `has ${n('keys')} key(s) for ${n('certs')} extra certificate(s) in certs; they pair by index`);
    }
    if (raw.client != null && s.type === 'client') {
      r.error(join(p, 'client'), 'client CA (mTLS) applies to server SSL objects only');
    }
  },
});

// A directory of certificate files, each expanded into an SSL object (src/config/ssl-dirs.ts).
const SSL_DIR = obj({
  id: str({ pattern: ID, hint: ID_HINT, type: 'id', doc: 'objects are named dir:<id>:<file name>', defDoc: 'index' }),
  path: str({ required: true, type: 'path', doc: 'directory of *.crt / *.pem files (relative to the config file)' }),
  type: SSL_TYPE,
  client: CLIENT_CA,
  watch: bool({ default: true, doc: 'a file added, replaced or removed is applied without a reload' }),
}, {
  doc: 'certificate directories',
  rule: (r, d, raw, p) => {
    if (raw.client != null && d.type === 'client') {
      r.error(join(p, 'client'), 'client CA (mTLS) applies to server SSL objects only');
    }
  },
});

function identityHeader(v: string): string | null {
  const bad = headerName(v);
  if (bad) return bad;
  const own = FRAMING_HEADERS.has(v.toLowerCase()) || v.toLowerCase() === 'host';
  return own ? `"${v}" is a header the gateway sets itself` : null;
}

const IDENTITY_FIELDS = {
  subject: str({ format: identityHeader, default: CLIENT_IDENTITY_HEADERS.subject, doc: 'client certificate subject' }),
  fingerprint: str({
    format: identityHeader, default: CLIENT_IDENTITY_HEADERS.fingerprint, doc: 'its SHA-256 fingerprint',
  }),
  verify: str({ format: identityHeader, default: CLIENT_IDENTITY_HEADERS.verify, doc: 'SUCCESS or NONE' }),
};
type Identity = { subject: string; fingerprint: string; verify: string };

const IDENTITY = custom<Identity | undefined, { type: string; doc: string }>({
  type: 'true | false | mapping',
  doc: 'headers sent upstream with the verified client certificate (mTLS routes only)',
}, (r, v, p) => {
  if (v === true) return { ...CLIENT_IDENTITY_HEADERS };
  if (v === false) return undefined;
  const raw = r.obj(v, p, Object.keys(IDENTITY_FIELDS));
  if (!raw) return undefined;
  const got = readFields(r, IDENTITY_FIELDS, raw, p);
  if (!got) return undefined;
  const out = {
    subject: got.subject.toLowerCase(), fingerprint: got.fingerprint.toLowerCase(), verify: got.verify.toLowerCase(),
  };
  const names = [out.subject, out.fingerprint, out.verify];
  if (new Set(names).size < 3) r.error(p, `the three header names must differ, got ${names.join(', ')}`);
  return out;
});

// Active health checks, in APISIX's `checks.active` shape (defaults as APISIX's). Probes run
// in the primary, one per node per interval whatever the worker count (src/proxy/active-health.ts).
const STATUS = int({ min: 200, max: 599, doc: '' });
const THRESHOLD = { min: 1, max: 254 };
const PROBE_INTERVAL = { min: 100, max: 3_600_000 };
const ACTIVE_CHECK = obj({
  type: oneOf(['http', 'https', 'tcp'], {
    doc: 'probe: an HTTP(S) GET, or a TCP connect; https uses the upstream\'s tls settings',
    defDoc: 'the scheme',
  }),
  timeout: duration({ min: 10, max: 60_000, default: 1_000, doc: 'a probe that takes longer is a timeout' }),
  http_path: str({ default: '/', format: (v) => (v.startsWith('/') && !/[\s\x00-\x1f\x7f]/.test(v) ? null
    : 'must be a path starting with "/" (no spaces or control characters)'), type: 'path', doc: 'probe path' }),
  host: str({ format: hostHeader, type: 'host[:port]', doc: 'Host of the probe', defDoc: 'host, else the node' }),
  port: int({ min: 1, max: 65535, doc: 'probe port', defDoc: "the node's" }),
  healthy: obj({
    interval: duration({ ...PROBE_INTERVAL, default: 1_000, doc: 'between probes of a healthy node' }),
    successes: int({ ...THRESHOLD, default: 2, doc: 'consecutive successes that mark an unhealthy node healthy' }),
    http_statuses: list(STATUS, { default: [200, 302], shape: 'status codes', doc: 'statuses that are a success' }),
  }, { doc: 'when a node is healthy again' }),
  unhealthy: obj({
    interval: duration({ ...PROBE_INTERVAL, default: 1_000, doc: 'between probes of an unhealthy node' }),
    http_failures: int({ ...THRESHOLD, default: 5, doc: 'consecutive failing statuses that mark a node unhealthy' }),
    tcp_failures: int({ ...THRESHOLD, default: 2, doc: 'consecutive connect/TLS failures that mark it unhealthy' }),
    timeouts: int({ ...THRESHOLD, default: 3, doc: 'consecutive probe timeouts that mark it unhealthy' }),
    http_statuses: list(STATUS, {
      default: [429, 404, 500, 501, 502, 503, 504, 505], shape: 'status codes', doc: 'statuses that are a failure',
    }),
  }, { doc: 'when a node is unhealthy' }),
}, { optional: true, doc: 'active health checks (see "Load balancing and health checks")' });

/** The request parts a `chash` key can name with `hash_on: vars` (nginx variable names, as APISIX). */
export const CHASH_VARS = ['remote_addr', 'uri', 'request_uri', 'query_string', 'host'] as const;
const CHASH_PREFIXED = /^(http|arg|cookie)_([A-Za-z0-9_-]{1,64})$/;
const COOKIE_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$/;

/**
 * `"host:port": weight` (APISIX's nodes form) → the list item; `[v6]:port` for IPv6. A key
 * without a port is left with none, so the item's reader names the missing port.
 */
function nodeFromMapping(key: string, weight: unknown): unknown {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d{1,5})$/.exec(key);
  if (m === null) return { host: key, weight };
  return { host: m[1] ?? m[2], port: Number(m[3]), weight };
}

const UPSTREAM = obj({
  id: id('upstream id'),
  ...META,
  scheme: oneOf(['http', 'https'], { default: 'http', doc: 'protocol to the nodes' }),
  type: oneOf(['roundrobin', 'least_conn', 'chash'], {
    default: 'roundrobin', doc: 'balancer: smooth WRR, fewest in-flight per weight, or consistent hash',
  }),
  hash_on: oneOf(['vars', 'header', 'cookie'], { default: 'vars', doc: '(chash) what `key` names' }),
  key: str({
    type: 'string', defDoc: 'remote_addr',
    doc: `(chash) vars: ${CHASH_VARS.join(', ')}, http_<header>, arg_<name>, cookie_<name>; ` +
      'header / cookie: its name. Absent in a request: the client address',
  }),
  nodes: list(obj({
    host: str({ required: true, format: connectHost, type: 'host', doc: 'host name or IP address' }),
    port: int({ required: true, min: 1, max: 65535, doc: 'port' }),
    weight: int({ min: 0, max: 10_000, default: 1, doc: 'relative share, per worker (0: no traffic)' }),
  }, { doc: '' }), {
    required: true, shape: '{host, port, weight}', nonEmpty: 'must hold at least one node',
    doc: 'servers; or the APISIX mapping {"host:port": weight}',
    fromMapping: nodeFromMapping,
  }),
  host: str({ format: hostHeader, type: 'host[:port]', doc: "Host sent upstream (absent: the client's Host)" }),
  tls: obj({
    verify: bool({ default: true, doc: 'verify the upstream certificate' }),
    ca: secret({ doc: 'PEM CA(s) for the upstream (absent: the system store)' }),
    client_ssl: str({ type: 'SSL id', doc: 'SSL object of type client presented to the upstream' }),
    sni: str({ format: sniName, type: 'host', doc: 'SNI sent (absent: the node host when it is a name)' }),
  }, {
    optional: true, doc: 'TLS to the nodes (scheme https)',
  }),
  timeout: obj({
    connect: duration({ min: 1, default: 5_000, doc: 'connect to a node → 504' }),
    read: duration({ min: 1, default: 30_000, doc: 'between bytes of the response → 504' }),
    send: duration({
      min: 1, default: 60_000, doc: 'the node takes no request body byte for this long → 504 (as proxy_send_timeout)',
    }),
  }, { doc: 'upstream timeouts' }),
  keepalive: obj({
    size: int({ min: 0, max: 100_000, doc: 'idle connections kept per node and worker (absent: all)' }),
    idle_timeout: duration({
      min: 1, default: 4_000, doc: "idle connection closed after this (or the node's Keep-Alive timeout − 1 s)",
    }),
  }, { doc: 'keep-alive connections to the nodes' }),
  retries: int({
    min: 0, max: 100, doc: 'other nodes tried on a failure before any response byte (absent: each other node once)',
  }),
  retry_timeout: duration({ min: 0, default: 0, doc: 'no retry starts this long after the first try (0: no limit)' }),
  client_identity_headers: IDENTITY,
  checks: obj({ active: ACTIVE_CHECK }, { optional: true, doc: 'health checks' }),
}, {
  doc: 'backends',
  rule: (r, u, raw, p) => {
    if (raw.tls != null && u.scheme === 'http') {
      r.error(join(p, 'tls'), 'is set but scheme is http (use scheme: https)');
    }
    if (u.type !== 'chash') {
      for (const k of ['hash_on', 'key'] as const) {
        if (raw[k] != null) r.warn(join(p, k), `is ignored: type is ${u.type ?? 'roundrobin'}, not chash`);
      }
    } else if (u.key !== undefined) {
      const bad = chashKeyProblem(u.hash_on ?? 'vars', u.key);
      if (bad) r.error(join(p, 'key'), bad);
    } else if (u.hash_on !== undefined && u.hash_on !== 'vars') {
      r.error(join(p, 'key'), `is required with hash_on: ${u.hash_on} (the ${u.hash_on} name)`);
    }
  },
});

/** Null when `key` can be hashed on with `hashOn`; else why not. */
export function chashKeyProblem(hashOn: 'vars' | 'header' | 'cookie', key: string): string | null {
  if (hashOn === 'header') return headerName(key);
  if (hashOn === 'cookie') return COOKIE_NAME.test(key) ? null : `${JSON.stringify(key)} is not a cookie name`;
  if ((CHASH_VARS as readonly string[]).includes(key) || CHASH_PREFIXED.test(key)) return null;
  return `${JSON.stringify(key)} is not a key for hash_on: vars (${CHASH_VARS.join(', ')}, http_<header>, ` +
    'arg_<name>, cookie_<name>)';
}

const HEADERS = custom<Record<string, string>, { type: string; doc: string; default: Record<string, string> }>({
  type: 'mapping header-name: value', default: {}, defDoc: '{}', doc: 'response headers (no framing headers)',
} as { type: string; doc: string; default: Record<string, string> }, (r, v, p) => {
  const out: Record<string, string> = {};
  if (typeof v !== 'object' || v === null || Array.isArray(v)) {
    return void r.error(p, `must be a mapping {header-name: value}, got ${describe(v)}`);
  }
  for (const [k, hv] of Object.entries(v as Obj)) {
    const kp = `${p}[${JSON.stringify(k)}]`;
    const badName = headerName(k);
    const scalar = typeof hv === 'string' || typeof hv === 'number';
    const badValue = scalar ? headerValue(String(hv)) : 'must be a string';
    if (badName) r.error(kp, badName);
    else if (FRAMING_HEADERS.has(k.toLowerCase())) {
      r.error(kp, `"${k}" is set by the gateway from the body and connection; a route cannot set it`);
    } else if (badValue) r.error(kp, badValue);
    else out[k.toLowerCase()] = String(hv);
  }
  return out;
});

const RESPOND = obj({
  // 1xx is not a final response (the client would wait for one); Node refuses > 999.
  status: int({ min: 200, max: 599, default: 200, doc: 'status code' }),
  body: custom<string, { type: string; doc: string; default: string }>({ type: 'string', default: '', doc: 'body' },
    (r, v, p) => {
      if (typeof v === 'string') return v;
      return void r.error(p, `must be a string, got ${typeof v === 'object' ? 'a structure' : JSON.stringify(v)}`);
    }),
  headers: HEADERS,
}, {
  optional: true, doc: 'answer directly',
  rule: (r, o, _raw, p) => {
    // uWS writes the body after a 204 anyway (measured): a keep-alive client then reads it
    // as the start of the next response.
    if (o.status !== undefined && NO_CONTENT.has(o.status) && o.body !== '') {
      r.error(join(p, 'body'), `must be empty: a ${o.status} response has no content`);
    }
  },
});

const EXACT_TWICE = 'has "=" while the route has exact: true; use one of them';
// RFC 3986 pchar and "/", plus "=" and " " for the "= /p" form ("*" is checked by parsePath).
const PATH_CHARS = /^[A-Za-z0-9._~!$&'()*+,;=:@%/ -]+$/;

/** Null when `v` is a valid `paths` entry; else why not. */
function pathProblem(v: string): string | null {
  if (!PATH_CHARS.test(v)) return 'holds a character that is not allowed in a path (RFC 3986 pchar)';
  const pat = parsePath(v, false);
  if (typeof pat === 'string') return pat;
  const bare = pat.exact || pat.key === '/' ? pat.key : pat.key.slice(0, -1);
  if (bare.includes(' ')) return 'holds a space (only "= /p" has one)';
  const norm = normalizePath(bare);
  // Requests are matched on their normalized path: a path that is not normalized could never match.
  if (norm !== bare) {
    return norm === null ? 'is not a valid path (bad escape, %00 or a hidden dot segment)'
      : `is not normalized (requests are matched on their normalized path): write ${JSON.stringify(norm)}`;
  }
  return null;
}

const ROUTE = obj({
  id: id('route id'),
  ...META,
  hosts: list(custom({ type: 'host pattern', doc: '' }, (r, h, p) => {
    const n = h === '*' ? '*' : typeof h === 'string' ? normalizePattern(h) : null;
    return n ?? void r.error(p, `${JSON.stringify(h)} is not a host name, "*." pattern or "*"`);
  }), { shape: 'host names, "*." patterns or "*"', defDoc: 'any', doc: 'Host patterns ("*": any)' }),
  paths: list(custom({ type: 'path prefix', doc: '' }, (r, v, p) => {
    const bad = typeof v === 'string' ? pathProblem(v) : 'must be a path prefix starting with "/"';
    return bad === null ? (v as string) : void r.error(p, `${JSON.stringify(v)} ${bad}`);
  }), {
    default: ['/'], shape: 'path prefixes',
    doc: '"/p" (also /p/…), "/p/*", "= /p" (exact); exact beats prefix, longest prefix wins: see "Route matching"',
  }),
  exact: bool({ default: false, doc: 'every path is an exact path (as "= /p")' }),
  priority: int({
    default: 0, min: -1_000_000, max: 1_000_000, doc: 'higher first among routes with the same path',
  }),
  upstream: str({ type: 'upstream id', doc: 'upstream to proxy to' }),
  respond: RESPOND,
  methods: list(custom({ type: 'method', doc: '' }, (r, m, p) =>
    typeof m === 'string' && METHOD.test(m) ? m
      : void r.error(p, `${JSON.stringify(m)} is not an upper-case HTTP method (GET, POST, …)`)), {
    shape: 'upper-case HTTP methods', repeat: 'drop', defDoc: 'any but TRACE',
    nonEmpty: 'must hold at least one method (omit it for any method)', doc: 'methods this route answers',
  }),
  max_body_size: unlimitedSize({ defDoc: 'listener', doc: "overrides the listener's max_body_size" }),
}, {
  doc: 'routing',
  rule: (r, rt, raw, p) => {
    if (rt.hosts?.includes('*')) delete rt.hosts;
    if (rt.exact === true) {
      rt.paths?.forEach((v, j) => {
        if (v.startsWith('=')) r.error(join(join(p, 'paths'), j), `${JSON.stringify(v)} ${EXACT_TWICE}`);
      });
    }
    if (raw.upstream != null && raw.respond != null) r.error(p, 'has both upstream and respond; a route does one');
    if (raw.upstream == null && raw.respond == null && rt.id !== undefined) {
      r.error(p, 'needs an upstream or a respond block');
    }
  },
});

// ---- secret_providers ----------------------------------------------------------------

const ANY_STRING = str({ doc: '' });
const PATH_SEGMENT = /^[A-Za-z0-9._~@+=:-]+$/;

/** A Vault path (mount, namespace): slashes at either end dropped, no `.` / `..` segments. */
const vaultPath = <O extends { doc: string; default?: string }>(o: O) => custom<string, O & { type: string }>(
  { ...o, type: 'path' }, (r, v, p) => {
    const s = ANY_STRING.read(r, v, p);
    if (s === undefined) return undefined;
    const trimmed = s.replace(/^\/+|\/+$/g, '');
    const segments = trimmed.split('/');
    if (trimmed === '' || segments.some((x) => !PATH_SEGMENT.test(x) || x === '.' || x === '..')) {
      return void r.error(p, `"${s}" is not a valid path (segments of letters, digits and ._~@+=:-)`);
    }
    return trimmed;
  });

/** An http(s) origin without credentials, query or fragment; a trailing slash is dropped. */
const httpUrl = <O extends { doc: string; required?: true }>(o: O) => custom<string, O & { type: string }>(
  { ...o, type: 'http(s) URL' }, (r, v, p) => {
    const s = ANY_STRING.read(r, v, p);
    if (s === undefined) return undefined;
    let u: URL;
    try {
      u = new URL(s);
    } catch {
      return void r.error(p, 'must be an http(s) URL');
    }
    if ((u.protocol !== 'https:' && u.protocol !== 'http:') || u.username || u.password || u.search || u.hash) {
      return void r.error(p, 'must be an http(s) URL without credentials, query or fragment');
    }
    return s.replace(/\/+$/, '');
  });

const TOKEN_AUTH = {
  token: credential({ required: true, sensitive: true, doc: 'Vault token (or role_id + secret_id)' }),
};
const APPROLE_AUTH = {
  role_id: credential({ required: true, doc: 'AppRole role id' }),
  secret_id: credential({ required: true, sensitive: true, doc: 'AppRole secret id' }),
  mount: vaultPath({ default: 'approle', doc: 'AppRole auth mount' }),
};
type VaultAuth = ObjOf<typeof TOKEN_AUTH> | ObjOf<typeof APPROLE_AUTH>;

const VAULT_AUTH = custom<VaultAuth, { type: string; doc: string; required: true; shape: string }>({
  type: 'mapping', required: true, shape: '{ token } or { role_id, secret_id }',
  doc: 'a token, or AppRole role_id + secret_id',
}, (r, v, p) => {
  const a = r.obj(v, p, ['token', 'role_id', 'secret_id', 'mount']);
  if (!a) return undefined;
  const hasToken = a.token !== undefined;
  const hasRole = a.role_id !== undefined || a.secret_id !== undefined;
  if (hasToken && hasRole) {
    r.known(a, p, ['token', 'role_id', 'secret_id', 'mount']);
    return void r.error(p, 'use either token or role_id + secret_id (AppRole), not both');
  }
  if (hasToken) {
    if (a.mount !== undefined) {
      r.error(join(p, 'mount'), 'applies to AppRole only');
      const { mount: _m, ...rest } = a;
      return readFields(r, TOKEN_AUTH, rest, p);
    }
    return readFields(r, TOKEN_AUTH, a, p);
  }
  if (!hasRole) {
    r.known(a, p, ['token', 'role_id', 'secret_id', 'mount']);
    return void r.error(p, 'needs token, or role_id and secret_id (AppRole)');
  }
  return readFields(r, APPROLE_AUTH, a, p);
}, { ...TOKEN_AUTH, ...APPROLE_AUTH });

const PROVIDER = tagged('type', {
  id: id('provider id, as in $secret://<type>/<id>/…'),
  default: bool({ default: false, doc: 'short references $secret://<type>/<path…> use it (one per type)' }),
  refresh_interval: duration({ min: 1_000, default: 60_000, doc: 'cached values re-read this often (±10 %)' }),
  timeout: obj({
    connect: duration({ min: 1, default: 5_000, doc: 'connect to the secret store' }),
    read: duration({ min: 1, default: 10_000, doc: 'its answer' }),
  }, { doc: 'timeouts to the secret store' }),
}, {
  vault: {
    address: httpUrl({ required: true, doc: 'Vault address' }),
    kv_version: custom<1 | 2, { type: string; doc: string; default: 1 | 2 }>({
      type: '1 | 2', default: 2, doc: 'KV secrets engine version',
    }, (r, v, p) => (v === 1 || v === 2 ? v : void r.error(p, 'must be 1 or 2'))),
    mount: vaultPath({ default: 'secret', doc: 'KV mount' }),
    namespace: vaultPath({ doc: 'X-Vault-Namespace' }),
    auth: VAULT_AUTH,
    tls: obj({
      ca: credential({ doc: 'PEM CA(s) of the secret store' }),
      cert: credential({ doc: 'client certificate (with key)' }),
      key: credential({ sensitive: true, doc: 'client key (with cert)' }),
      server_name: str({
        pattern: /^[A-Za-z0-9.-]{1,253}$/, hint: 'is not a host name', type: 'host', doc: 'name to verify',
      }),
    }, {
      optional: true, doc: 'TLS to the secret store',
      rule: (r, t, _raw, p) => {
        if ((t.cert === undefined) !== (t.key === undefined)) {
          r.error(join(p, t.cert === undefined ? 'cert' : 'key'), 'tls.cert and tls.key go together');
        }
      },
    }),
  },
  aws: {
    region: str({
      required: true, pattern: /^[a-z]{2}(-[a-z0-9]+)+$/, hint: 'is not an AWS region such as eu-west-1',
      type: 'AWS region', doc: 'AWS region',
    }),
    endpoint: httpUrl({ doc: 'Secrets Manager endpoint (absent: the region default)' }),
    access_key_id: credential({ doc: 'with secret_access_key (absent: the SDK default chain)' }),
    secret_access_key: credential({ sensitive: true, doc: 'with access_key_id' }),
    session_token: credential({ sensitive: true, doc: 'temporary credentials' }),
    version_stage: str({ pattern: /^[A-Za-z0-9._-]{1,256}$/, hint: 'is not a staging label', doc: 'staging label' }),
    max_attempts: int({ min: 1, max: 10, default: 3, doc: 'SDK attempts per read, retries included' }),
    tls: obj({ ca: credential({ doc: 'PEM CA(s) (a VPC endpoint with a private CA)' }) }, {
      optional: true, doc: 'TLS to the secret store',
    }),
  },
}, {
  doc: 'Vault / AWS secret stores',
  rule: (r, c, raw, p) => {
    if (c.type === 'vault' && c.address?.startsWith('http://')) {
      r.warn(join(p, 'address'), 'is plain http: the Vault token and the secrets cross the network unencrypted');
      if (raw.tls !== undefined) r.warn(join(p, 'tls'), 'is ignored with an http:// address');
    }
    if (c.type !== 'aws') return;
    if ((raw.access_key_id === undefined) !== (raw.secret_access_key === undefined)) {
      r.error(join(p, raw.access_key_id === undefined ? 'access_key_id' : 'secret_access_key'),
        'access_key_id and secret_access_key go together (or omit both for the default credential chain)');
    }
    if (raw.session_token !== undefined && (raw.access_key_id === undefined || raw.secret_access_key === undefined)) {
      r.error(join(p, 'session_token'), 'needs access_key_id and secret_access_key');
    }
  },
});

/** A validated `secret_providers[]` entry; credential fields still hold their references. */
export type ProviderConfig = Infer<typeof PROVIDER>;

/** Check one `secret_providers[]` entry; `path` is its config path, e.g. `secret_providers[0]`. */
export function readProvider(r: Reader, raw: unknown, path: string): ProviderConfig | undefined {
  return PROVIDER.read(r, raw, path);
}

// ---- config_store (issue 14) -----------------------------------------------------------

/** `host:port` or `http(s)://host:port` of an etcd member. */
function etcdEndpoint(v: string): string | null {
  const ok = /^(https?:\/\/)?[A-Za-z0-9.:[\]-]+:\d{1,5}$/.test(v);
  return ok ? null : `"${v}" is not an etcd endpoint (https://host:port)`;
}

const CONFIG_STORE = obj({
  etcd: obj({
    endpoints: list(str({ format: etcdEndpoint, type: 'https://host:port', doc: '' }), {
      required: true, shape: 'https://host:port', nonEmpty: 'must hold at least one endpoint', doc: 'etcd members',
    }),
    prefix: str({
      default: '/tlsgate', pattern: /^\/[A-Za-z0-9._\/-]*[A-Za-z0-9._-]$/,
      hint: 'must start with "/" and not end with one',
      type: 'key prefix', doc: 'objects live at <prefix>/<collection>/<id>',
    }),
    tls: obj({
      ca: credential({ doc: 'PEM CA(s) of the etcd server certificates' }),
      cert: credential({ doc: 'client certificate (etcd --client-cert-auth)' }),
      key: credential({ sensitive: true, doc: 'its key' }),
    }, {
      optional: true, doc: 'TLS to etcd (https:// endpoints)',
      rule: (r, t, _raw, p) => {
        if ((t.cert === undefined) !== (t.key === undefined)) {
          r.error(join(p, t.cert === undefined ? 'cert' : 'key'), 'tls.cert and tls.key go together');
        }
      },
    }),
    auth: obj({
      username: credential({ required: true, doc: 'etcd user' }),
      password: credential({ required: true, sensitive: true, doc: 'its password' }),
    }, { optional: true, doc: 'etcd authentication (absent: none)' }),
    start_timeout: duration({ min: 100, default: 10_000, doc: 'start waits this long for the first list' }),
    secrets: obj({
      keys: list(obj({
        id: str({ required: true, pattern: ID, hint: ID_HINT, type: 'id', doc: 'names the KEK in each record' }),
        key: credential({ required: true, sensitive: true, doc: '32 bytes, base64 or hex' }),
      }, { doc: '' }), {
        required: true, shape: '{id, key}', nonEmpty: 'must hold at least one key', doc: 'key-encryption keys',
      }),
      active: str({ required: true, pattern: ID, hint: ID_HINT, type: 'id', doc: 'the KEK new values use' }),
    }, {
      optional: true, doc: 'built-in secret store (`$secret://local/<id>`), see "Built-in secret store"',
      rule: (r, t, _raw, p) => {
        const ids = (t.keys ?? []).map((k) => k.id);
        ids.forEach((id, i) => {
          if (ids.indexOf(id) !== i) r.error(join(p, `keys[${i}].id`), `"${id}" is listed twice`);
        });
        if (t.active !== undefined && t.keys && !ids.includes(t.active))
          r.error(join(p, 'active'), `"${t.active}" is not the id of one of keys[] (${ids.join(', ')})`);
      },
    }),
  }, { required: true, doc: 'etcd v3' }),
}, {
  optional: true,
  doc: 'ssls, upstreams, routes and secret_providers live in a store, not in this file',
});

const perCore = (): number => Math.max(1, availableParallelism());

export const CONFIG = obj({
  workers: custom<number, { type: string; doc: string; compute: () => number; defDoc: string }>({
    type: 'auto | integer 1–256', compute: perCore, defDoc: 'auto (one per core)', doc: 'worker processes',
  }, (r, v, p) => (v === 'auto' ? perCore() : int({ min: 1, max: 256, doc: '' }).read(r, v, p))),
  standby_worker: bool({
    default: true, doc: 'one more worker, state loaded, not listening: replaces a dead worker at once',
  }),
  log: obj({
    level: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal'], { default: 'info', doc: 'log level' }),
    file: str({ type: 'path', doc: 'log file (absent: stdout)' }),
  }, { doc: 'logging' }),
  warn_days: int({ min: 0, max: 3650, default: 30, doc: 'certificates expiring sooner are logged as warnings' }),
  drain_timeout: duration({ default: 10_000, doc: 'SIGTERM: cap on finishing in-flight requests' }),
  limits: LIMITS,
  timeouts: TIMEOUTS,
  max_connections: int({ ...MAX_CONNECTIONS, default: 10_000 }),
  file_max_size: size({
    min: 1024, max: 64 * 1024 ** 2, default: 1024 * 1024, doc: 'largest $file:// value; only regular files are read',
  }),
  file_refresh_interval: duration({
    default: 60_000, doc: '$file:// values re-read in the background (0: never), besides the watcher',
  }),
  admin: ADMIN,
  config_store: CONFIG_STORE,
  audit: obj({ path: str({ required: true, type: 'path', doc: 'JSON-lines audit log of every reload' }) }, {
    optional: true, doc: 'audit log',
  }),
  listeners: list(LISTENER, {
    required: true, shape: '{name, listen, engine, default_ssl, …}', nonEmpty: 'must hold at least one listener',
    doc: 'TLS ports',
  }),
  secret_providers: list(PROVIDER, { default: [], shape: '{id, type, …}', doc: 'Vault / AWS secret stores' }),
  ssls: list(SSL, { default: [], shape: '{id, type, snis, cert, key, …}', doc: 'certificates and keys' }),
  ssl_dirs: list(SSL_DIR, {
    default: [], shape: '{path, type, client, watch}', doc: 'certificate files as SSL objects (see below)',
  }),
  upstreams: list(UPSTREAM, { default: [], shape: '{id, scheme, nodes, host, …}', doc: 'backends' }),
  routes: list(ROUTE, { default: [], shape: '{id, hosts, paths, upstream | respond, …}', doc: 'routing' }),
}, { doc: 'the config file' });
