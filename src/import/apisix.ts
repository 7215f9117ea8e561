// APISIX 3.x → tlsgate: a pure translation of standalone `apisix.yaml` (YAML or JSON) or
// Admin API list bodies into a tlsgate config plus PEM files. Every field it cannot carry
// is reported as a note with the reason; objects it cannot translate are errors naming them.
// Key material is never put in a message.
import { createDecipheriv, createPrivateKey, X509Certificate } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { chashKeyProblem, labelKeyProblem, labelValueProblem } from '../config/declaration';

type Obj = Record<string, unknown>;

export interface ImportFile {
  /** Relative to the output directory, e.g. `certs/site.key`. */
  path: string;
  content: string;
  secret: boolean;
}

export interface ImportResult {
  config: Obj;
  files: ImportFile[];
  /** What was not carried (or carried differently), with the reason. */
  notes: string[];
  /** Objects that cannot be imported; non-empty: nothing should be written. */
  errors: string[];
}

export interface ImportOptions {
  /** APISIX `data_encryption.keyring` (or `ssl.key_encrypt_salt`) values, 16 characters each. */
  keyring?: string[];
  listen?: string;
  engine?: 'node' | 'uws';
}

export interface ApisixInput {
  ssls: Array<{ at: string; value: Obj }>;
  upstreams: Array<{ at: string; value: Obj }>;
  routes: Array<{ at: string; value: Obj }>;
  /** Other top-level sections of a standalone file that hold something (plugins, consumers, …). */
  others: string[];
}

/** Largest input accepted (APISIX's own standalone files are far smaller; this bounds memory). */
export const MAX_INPUT_BYTES = 16 * 1024 * 1024;
const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

export class ImportInputError extends Error {}

/** Parse one input text: a standalone file, one Admin API list body, or a mapping of list bodies. */
export function parseApisix(texts: Array<{ name: string; text: string }>): ApisixInput {
  const out: ApisixInput = { ssls: [], upstreams: [], routes: [], others: [] };
  for (const { name, text } of texts) {
    if (Buffer.byteLength(text) > MAX_INPUT_BYTES) {
      throw new ImportInputError(`${name}: larger than ${MAX_INPUT_BYTES / 1024 / 1024} MiB`);
    }
    // `#END` closes a standalone file (APISIX reloads only once it is there); it is a YAML comment,
    // but not JSON: drop it before parsing either.
    const body = text.replace(/^#END\s*$/m, '');
    let doc: unknown;
    try {
      doc = parseYaml(body, { maxAliasCount: 100 });
    } catch (err) {
      throw new ImportInputError(`${name}: not YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
    }
    if (isObj(doc) && Array.isArray(doc.list)) {
      addList(out, name, doc.list);
      continue;
    }
    if (Array.isArray(doc) && doc.every((d) => isObj(d) && Array.isArray(d.list))) {
      doc.forEach((d, i) => addList(out, `${name}[${i}]`, (d as Obj).list as unknown[]));
      continue;
    }
    if (!isObj(doc)) throw new ImportInputError(`${name}: not an APISIX standalone file or Admin API list body`);
    let found = false;
    for (const kind of ['ssls', 'upstreams', 'routes'] as const) {
      const v = doc[kind];
      if (v == null) continue;
      found = true;
      const items = isObj(v) && Array.isArray(v.list) ? v.list : v;
      if (!Array.isArray(items)) throw new ImportInputError(`${name}: ${kind} must be a list`);
      if (isObj(v) && Array.isArray(v.list)) addList(out, `${name}: ${kind}`, items, kind);
      else {
        items.forEach((value, i) => {
          if (!isObj(value)) throw new ImportInputError(`${name}: ${kind}[${i}] is not a mapping`);
          out[kind].push({ at: `${kind}[${i}]`, value });
        });
      }
    }
    for (const [k, v] of Object.entries(doc)) {
      if (['ssls', 'upstreams', 'routes'].includes(k) || v == null) continue;
      if ((Array.isArray(v) && v.length === 0) || (isObj(v) && Object.keys(v).length === 0)) continue;
      out.others.push(k);
    }
    if (!found) throw new ImportInputError(`${name}: holds no ssls, upstreams or routes`);
  }
  return out;
}

type Kind = 'ssls' | 'upstreams' | 'routes';

function kindOf(item: Obj): Kind | undefined {
  const key = typeof item.key === 'string' ? item.key : '';
  const m = /\/(ssls|upstreams|routes)\/[^/]+$/.exec(key);
  if (m) return m[1] as Kind;
  const v = isObj(item.value) ? item.value : {};
  if ('cert' in v) return 'ssls';
  if ('uri' in v || 'uris' in v) return 'routes';
  if ('nodes' in v) return 'upstreams';
  return undefined;
}

function addList(out: ApisixInput, name: string, list: unknown[], kind?: Kind): void {
  list.forEach((item, i) => {
    if (!isObj(item) || !isObj(item.value)) throw new ImportInputError(`${name}: list[${i}] has no value mapping`);
    const k = kind ?? kindOf(item);
    if (!k) throw new ImportInputError(`${name}: list[${i}] is not an SSL object, upstream or route`);
    const value = { ...item.value };
    // The Admin API puts the id in the key (…/routes/42) and may omit it from the value.
    if (value.id === undefined && typeof item.key === 'string') value.id = item.key.split('/').pop();
    out[k].push({ at: `${name}: list[${i}]`, value });
  });
}

class Ctx {
  readonly notes: string[] = [];
  readonly errors: string[] = [];
  readonly files: ImportFile[] = [];
  /** APISIX SSL id → tlsgate SSL id. */
  readonly sslRefs = new Map<string, string>();
  readonly pendingClient: Array<{ where: string; id: string; cert: unknown; key: unknown }> = [];
  private readonly paths = new Set<string>();
  constructor(readonly opts: ImportOptions) {}
  note(where: string, msg: string): void {
    this.notes.push(`${where}: ${msg}`);
  }
  error(where: string, msg: string): void {
    this.errors.push(`${where}: ${msg}`);
  }
  /** Store a PEM as a file; the name comes from an id already checked against ID. */
  file(name: string, content: string, secret: boolean): string {
    let p = `certs/${name}`;
    for (let n = 2; this.paths.has(p); n++) p = `certs/${name.replace(/(\.[a-z]+)$/, `-${n}$1`)}`;
    this.paths.add(p);
    this.files.push({ path: p, content: content.endsWith('\n') ? content : content + '\n', secret });
    return `$file://${p}`;
  }
}

/** Object label for messages: where it is and its id, never its content. */
const label = (at: string, v: Obj): string => (v.id === undefined ? at : `${at} (id ${JSON.stringify(v.id)})`);

function mapId(c: Ctx, where: string, raw: unknown): string | undefined {
  const s = typeof raw === 'number' && Number.isInteger(raw) ? String(raw) : raw;
  if (typeof s !== 'string' || !ID.test(s)) {
    // The id becomes a file name: "../x", "/etc/x" or an empty id must never reach the disk.
    const shown = typeof s === 'string' ? JSON.stringify(s.slice(0, 80)) : typeof s;
    c.error(where, `id ${shown} cannot be imported: tlsgate ids are 1-64 letters, digits, ".", "_", "-"`);
    return undefined;
  }
  return s;
}

function meta(c: Ctx, where: string, v: Obj, out: Obj): void {
  if (typeof v.name === 'string') out.name = v.name;
  if (typeof v.desc === 'string') out.desc = v.desc;
  if (isObj(v.labels)) {
    const labels: Record<string, string> = {};
    for (const [k, val] of Object.entries(v.labels)) {
      const bad = labelKeyProblem(k) ?? (typeof val === 'string' ? labelValueProblem(val) : 'is not a string');
      if (bad) c.note(where, `labels.${k} dropped: ${bad}`);
      else labels[k] = val as string;
    }
    if (Object.keys(labels).length) out.labels = labels;
  }
}

const CERT_BLOCK = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function checkCerts(c: Ctx, where: string, pem: unknown): string | undefined {
  if (typeof pem !== 'string') return void c.error(where, 'is not a PEM string');
  const blocks = pem.match(CERT_BLOCK) ?? [];
  if (blocks.length === 0) return void c.error(where, 'holds no PEM certificate');
  for (let i = 0; i < blocks.length; i++) {
    try {
      new X509Certificate(blocks[i]!);
    } catch {
      return void c.error(where, `certificate ${i + 1} of ${blocks.length} is not valid X.509`);
    }
  }
  return pem;
}

/** APISIX ssl.lua: a key not starting with "---" is base64 of AES-128-CBC with key = iv = a keyring entry. */
function decryptKey(c: Ctx, where: string, key: unknown): string | undefined {
  if (typeof key !== 'string') return void c.error(where, 'is not a PEM string');
  if (key.startsWith('---')) return checkKey(c, where, key);
  const ring = c.opts.keyring ?? [];
  if (ring.length === 0) {
    return void c.error(where, 'is encrypted by APISIX (data_encryption): pass its keyring with --keyring k1,k2');
  }
  const data = Buffer.from(key.replace(/\s+/g, ''), 'base64');
  if (data.length === 0 || data.length % 16 !== 0) {
    return void c.error(where, 'is neither PEM nor an APISIX-encrypted key (base64 of AES-128-CBC)');
  }
  for (const k of ring) {
    try {
      const d = createDecipheriv('aes-128-cbc', Buffer.from(k), Buffer.from(k));
      const plain = Buffer.concat([d.update(data), d.final()]).toString('utf8');
      // A wrong key passes the padding check about 1 time in 256: the PEM header settles it.
      if (plain.startsWith('-----BEGIN') && plain.includes('PRIVATE KEY')) return checkKey(c, where, plain);
    } catch {
      /* bad padding: not this key */
    }
  }
  return void c.error(where, `cannot be decrypted with any of the ${ring.length} keyring key(s) given`);
}

function checkKey(c: Ctx, where: string, pem: string): string | undefined {
  try {
    createPrivateKey(pem);
    return pem;
  } catch {
    return void c.error(where, 'is not a valid PEM private key (or it is encrypted with a passphrase)');
  }
}

const SSL_KNOWN = new Set([
  'id', 'name', 'desc', 'labels', 'type', 'sni', 'snis', 'cert', 'key', 'certs', 'keys', 'client', 'status',
  'ssl_protocols', 'create_time', 'update_time', 'validity_start', 'validity_end',
]);

function importSsl(c: Ctx, at: string, v: Obj): Obj | undefined {
  const where = `ssls ${label(at, v)}`;
  const id = mapId(c, where, v.id);
  if (!id) return undefined;
  const out: Obj = { id };
  meta(c, where, v, out);
  const type = v.type === 'client' ? 'client' : 'server';
  if (type === 'client') out.type = 'client';
  const snis = Array.isArray(v.snis) ? v.snis : typeof v.sni === 'string' ? [v.sni] : [];
  if (type === 'server') out.snis = snis;
  else if (snis.length) c.note(where, 'sni dropped: a client SSL object is not served to clients');
  const cert = checkCerts(c, `${where}.cert`, v.cert);
  const key = decryptKey(c, `${where}.key`, v.key);
  if (cert) out.cert = c.file(`${id}.crt`, cert, false);
  if (key) out.key = c.file(`${id}.key`, key, true);
  const certs = Array.isArray(v.certs) ? v.certs : [];
  const keys = Array.isArray(v.keys) ? v.keys : [];
  if (certs.length || keys.length) {
    out.certs = certs.map((x, i) =>
      c.file(`${id}-${i + 1}.crt`, checkCerts(c, `${where}.certs[${i}]`, x) ?? '', false));
    out.keys = keys.map((x, i) => c.file(`${id}-${i + 1}.key`, decryptKey(c, `${where}.keys[${i}]`, x) ?? '', true));
  }
  if (isObj(v.client)) {
    const ca = checkCerts(c, `${where}.client.ca`, v.client.ca);
    const client: Obj = {};
    if (ca) client.ca = c.file(`${id}-client-ca.crt`, ca, false);
    if (typeof v.client.depth === 'number') client.depth = v.client.depth;
    for (const k of Object.keys(v.client)) {
      if (k === 'skip_mtls_uri_regex') {
        // A regex is not translated: an unanchored `/health` also matches `/x/health`, `^/health` matches
        // `/healthx`; a guessed path list would exempt more or less than the user meant.
        c.note(where, 'client.skip_mtls_uri_regex dropped: tlsgate exempts paths, not regexes; every request of ' +
          'these SNIs needs a client certificate until you write client.skip_mtls_paths (e.g. ["= /health"])');
      } else if (k !== 'ca' && k !== 'depth') c.note(where, `client.${k} dropped: no tlsgate equivalent`);
    }
    out.client = client;
  }
  if (v.status === 0) out.status = 'disabled';
  if (Array.isArray(v.ssl_protocols)) {
    const keep = v.ssl_protocols.filter((p) => p === 'TLSv1.2' || p === 'TLSv1.3');
    const gone = v.ssl_protocols.filter((p) => !keep.includes(p));
    if (gone.length) c.note(where, `ssl_protocols ${gone.join(', ')} dropped: tlsgate offers TLS 1.2 and 1.3 only`);
    if (keep.length) out.ssl_protocols = keep;
  }
  for (const k of Object.keys(v)) if (!SSL_KNOWN.has(k)) c.note(where, `${k} dropped: no tlsgate equivalent`);
  return out;
}

const UPSTREAM_DROPS: Record<string, string> = {
  discovery_type: 'service discovery is not available: list the nodes',
  service_name: 'service discovery is not available: list the nodes',
  discovery_args: 'service discovery is not available: list the nodes',
};

function parseNode(c: Ctx, where: string, addr: string, weight: unknown, scheme: string): Obj | undefined {
  const m = /^(\[[0-9A-Fa-f:.]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(addr);
  if (!m) return void c.error(where, `node ${JSON.stringify(addr.slice(0, 80))} is not host[:port]`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  // APISIX: a node without a port uses the scheme's.
  const port = m[2] ? Number(m[2]) : scheme === 'https' ? 443 : 80;
  const out: Obj = { host, port };
  if (typeof weight === 'number' && weight !== 1) out.weight = weight;
  return out;
}

/** `type`, `hash_on`, `key`: the same fields and values in tlsgate (README "Load balancing and health checks"). */
function importBalance(c: Ctx, where: string, v: Obj, out: Obj): void {
  const type = v.type ?? 'roundrobin';
  if (type === 'least_conn' || type === 'chash') out.type = type;
  else if (type !== 'roundrobin') {
    c.note(where, `type ${JSON.stringify(type)} dropped: roundrobin instead (tlsgate: roundrobin, least_conn, chash)`);
  }
  if (type !== 'chash') {
    for (const k of ['hash_on', 'key']) if (v[k] !== undefined) c.note(where, `${k} dropped: type is not chash`);
    return;
  }
  const hashOn = v.hash_on ?? 'vars';
  if (hashOn !== 'vars' && hashOn !== 'header' && hashOn !== 'cookie') {
    return c.note(where, `hash_on ${JSON.stringify(hashOn)} dropped: tlsgate hashes on vars, header or cookie; ` +
      'the client address is the key');
  }
  if (typeof v.key !== 'string') {
    if (hashOn !== 'vars') c.note(where, `hash_on ${hashOn} dropped: no key; the client address is the key`);
    return;
  }
  if (hashOn !== 'vars') out.hash_on = hashOn;
  const bad = chashKeyProblem(hashOn, v.key);
  if (bad) c.note(where, `key dropped: ${bad}; the client address is the key`);
  else out.key = v.key;
}

/** APISIX's `checks.active` (seconds as numbers) → tlsgate's (durations); the rest is printed. */
function importChecks(c: Ctx, where: string, checks: unknown, out: Obj): void {
  if (!isObj(checks)) return c.note(where, 'checks dropped: not a mapping');
  if (checks.passive !== undefined) {
    c.note(where, "checks.passive dropped: tlsgate's passive health is its connect-failure back-off (fixed)");
  }
  const a = checks.active;
  if (!isObj(a)) return;
  const o: Obj = {};
  const secs = (x: unknown): string | undefined =>
    typeof x === 'number' && x > 0 ? `${Math.round(x * 1000)}ms` : undefined;
  if (a.type !== undefined) o.type = a.type;
  if (secs(a.timeout)) o.timeout = secs(a.timeout);
  for (const k of ['http_path', 'host', 'port']) if (a[k] !== undefined) o[k] = a[k];
  const part = (name: 'healthy' | 'unhealthy', fields: string[]): void => {
    const x = a[name];
    if (!isObj(x)) return;
    const p: Obj = {};
    if (x.interval !== undefined) {
      if (secs(x.interval)) p.interval = secs(x.interval);
      else c.note(where, `checks.active.${name}.interval ${JSON.stringify(x.interval)} dropped: probes run every 1s`);
    }
    for (const k of fields) if (x[k] !== undefined) p[k] = x[k];
    for (const k of Object.keys(x)) {
      if (k === 'interval' || fields.includes(k)) continue;
      c.note(where, `checks.active.${name}.${k} dropped: no tlsgate equivalent`);
    }
    if (Object.keys(p).length > 0) o[name] = p;
  };
  part('healthy', ['successes', 'http_statuses']);
  part('unhealthy', ['http_failures', 'tcp_failures', 'timeouts', 'http_statuses']);
  const why: Record<string, string> = {
    concurrency: 'each node has its own probe timer',
    https_verify_certificate: "HTTPS probes verify with the upstream's tls settings",
    req_headers: 'probes send Host and User-Agent only',
  };
  for (const k of Object.keys(a)) {
    if (['type', 'timeout', 'http_path', 'host', 'port', 'healthy', 'unhealthy'].includes(k)) continue;
    c.note(where, `checks.active.${k} dropped: ${why[k] ?? 'no tlsgate equivalent'}`);
  }
  out.checks = { active: o };
}

/**
 * `retries`, `retry_timeout` (seconds) and `keepalive_pool` → tlsgate's `retries`, `retry_timeout` and
 * `keepalive` (README "Proxying"). A value tlsgate's declaration would refuse is printed, not carried, so the
 * output still validates.
 */
function importRetries(c: Ctx, where: string, v: Obj, out: Obj): void {
  const ms = (x: number): string => `${Math.round(x * 1000)}ms`;
  if (v.retries !== undefined) {
    if (Number.isInteger(v.retries) && (v.retries as number) >= 0 && (v.retries as number) <= 100) {
      out.retries = v.retries;
    } else {
      c.note(where, `retries ${JSON.stringify(v.retries)} dropped: tlsgate takes 0-100 (absent: each other node once)`);
    }
  }
  if (v.retry_timeout !== undefined) {
    // APISIX and tlsgate both read 0 as "no limit".
    if (typeof v.retry_timeout === 'number' && v.retry_timeout >= 0) out.retry_timeout = ms(v.retry_timeout);
    else c.note(where, `retry_timeout ${JSON.stringify(v.retry_timeout)} dropped: not a number of seconds >= 0`);
  }
  const pool = v.keepalive_pool;
  if (pool === undefined) return;
  if (!isObj(pool)) return c.note(where, 'keepalive_pool dropped: not a mapping');
  const ka: Obj = {};
  if (pool.size !== undefined) {
    if (Number.isInteger(pool.size) && (pool.size as number) >= 0 && (pool.size as number) <= 100_000) {
      ka.size = pool.size;
    } else c.note(where, `keepalive_pool.size ${JSON.stringify(pool.size)} dropped: tlsgate takes 0-100000`);
  }
  if (pool.idle_timeout !== undefined) {
    // APISIX's 0 keeps idle connections forever; tlsgate always closes them (default 4s).
    if (typeof pool.idle_timeout === 'number' && Math.round(pool.idle_timeout * 1000) >= 1) {
      ka.idle_timeout = ms(pool.idle_timeout);
    } else {
      c.note(where, `keepalive_pool.idle_timeout ${JSON.stringify(pool.idle_timeout)} dropped: tlsgate closes an ` +
        'idle connection after keepalive.idle_timeout (at least 1ms; default 4s)');
    }
  }
  if (pool.requests !== undefined) {
    c.note(where, 'keepalive_pool.requests dropped: tlsgate does not cap requests per connection ' +
      '(a connection is reused until it idles out or the node closes it)');
  }
  for (const k of Object.keys(pool)) {
    if (['size', 'idle_timeout', 'requests'].includes(k)) continue;
    c.note(where, `keepalive_pool.${k} dropped: no tlsgate equivalent`);
  }
  if (Object.keys(ka).length > 0) out.keepalive = ka;
}

function importUpstream(
  c: Ctx, at: string, v: Obj, id: string | undefined, refs: Map<string, string>,
): Obj | undefined {
  const where = id === undefined ? `upstreams ${label(at, v)}` : `routes ${at} (inline upstream → ${id})`;
  const uid = id ?? mapId(c, where, v.id);
  if (!uid) return undefined;
  const out: Obj = { id: uid };
  meta(c, where, v, out);
  const scheme = typeof v.scheme === 'string' ? v.scheme : 'http';
  if (scheme !== 'http' && scheme !== 'https') {
    return void c.error(where, `scheme ${JSON.stringify(scheme)} cannot be imported: tlsgate proxies http and https`);
  }
  if (scheme === 'https') out.scheme = 'https';
  const nodes: Obj[] = [];
  if (Array.isArray(v.nodes)) {
    v.nodes.forEach((n, i) => {
      if (!isObj(n)) return c.error(where, `nodes[${i}] is not a mapping`);
      const host = typeof n.host === 'string' ? n.host.replace(/^\[(.*)\]$/, '$1') : n.host;
      const node: Obj = { host, port: n.port ?? (scheme === 'https' ? 443 : 80) };
      if (typeof n.weight === 'number' && n.weight !== 1) node.weight = n.weight;
      if (n.priority !== undefined && n.priority !== 0) {
        c.note(where, `nodes[${i}].priority dropped: every node is in one pool`);
      }
      nodes.push(node);
    });
  } else if (isObj(v.nodes)) {
    for (const [addr, w] of Object.entries(v.nodes)) {
      const n = parseNode(c, where, addr, w, scheme);
      if (n) nodes.push(n);
    }
  } else if (v.service_name === undefined) return void c.error(where, 'has no nodes');
  out.nodes = nodes;
  importBalance(c, where, v, out);
  if (v.checks !== undefined) importChecks(c, where, v.checks, out);
  const pass = v.pass_host ?? 'pass';
  if (pass === 'rewrite') {
    if (typeof v.upstream_host === 'string') out.host = v.upstream_host;
    else c.error(where, 'pass_host rewrite needs upstream_host');
  } else if (pass === 'node') {
    const first = nodes[0];
    const h = String(first?.host);
    if (nodes.length === 1 && first) out.host = `${h.includes(':') ? `[${h}]` : h}:${String(first.port)}`;
    else c.note(where, 'pass_host node dropped: tlsgate sends one Host per upstream (set host); the client\'s is sent');
  }
  if (isObj(v.timeout)) {
    const t: Obj = {};
    for (const k of ['connect', 'send', 'read']) {
      const x = v.timeout[k];
      if (typeof x === 'number' && Math.round(x * 1000) >= 1) t[k] = `${Math.round(x * 1000)}ms`;
      else if (x !== undefined) c.note(where, `timeout.${k} ${JSON.stringify(x)} dropped: not a number of seconds > 0`);
    }
    for (const k of Object.keys(v.timeout)) {
      if (!['connect', 'send', 'read'].includes(k)) c.note(where, `timeout.${k} dropped: no tlsgate equivalent`);
    }
    if (Object.keys(t).length) out.timeout = t;
  }
  importRetries(c, where, v, out);
  if (isObj(v.tls) || scheme === 'https') {
    const tls = isObj(v.tls) ? v.tls : {};
    const o: Obj = {};
    if (scheme === 'http') c.note(where, 'tls dropped: scheme is http');
    else {
      // APISIX verifies an upstream certificate only with tls.verify: true; keep its behaviour, say so.
      if (tls.verify !== true) {
        o.verify = false;
        c.note(where, 'tls.verify: false carried over (APISIX does not verify upstream certificates by default); ' +
          'set tls.ca and remove verify: false to verify them');
      } else {
        c.note(where, 'tls.verify: true carried over: tlsgate verifies against the system CAs unless tls.ca is set ' +
          '(APISIX used apisix.ssl.ssl_trusted_certificate)');
      }
      // APISIX sends the Host it forwards as SNI; tlsgate sends the node name unless tls.sni is set.
      const name = typeof out.host === 'string' ? out.host.replace(/:\d+$/, '') : '';
      if (/^[A-Za-z0-9.-]+$/.test(name) && !/^[\d.]+$/.test(name)) o.sni = name;
      else if (pass === 'pass') {
        c.note(where, "SNI: APISIX sends the client's Host as SNI to the upstream; tlsgate sends the node host " +
          'name (none for an IP): set tls.sni if the upstream needs one');
      }
      if (tls.client_cert_id !== undefined) {
        const ref = refs.get(String(tls.client_cert_id));
        if (ref) o.client_ssl = ref;
        else c.error(where, `tls.client_cert_id ${JSON.stringify(tls.client_cert_id)} names no imported SSL object`);
      } else if (tls.client_cert !== undefined || tls.client_key !== undefined) {
        o.client_ssl = `${uid}-client`;
        c.pendingClient.push({ where, id: `${uid}-client`, cert: tls.client_cert, key: tls.client_key });
      }
      out.tls = o;
    }
  }
  for (const [k, reason] of Object.entries(UPSTREAM_DROPS)) {
    if (v[k] !== undefined) c.note(where, `${k} dropped: ${reason}`);
  }
  for (const k of Object.keys(v)) {
    const known = ['id', 'name', 'desc', 'labels', 'scheme', 'nodes', 'type', 'pass_host', 'upstream_host', 'timeout',
      'tls', 'create_time', 'update_time', 'hash_on', 'key', 'checks', 'retries', 'retry_timeout', 'keepalive_pool'];
    if (!known.includes(k) && !(k in UPSTREAM_DROPS)) c.note(where, `${k} dropped: no tlsgate equivalent`);
  }
  return out;
}

const ROUTE_DROPS: Record<string, string> = {
  vars: 'no request-variable conditions in tlsgate',
  filter_func: 'no Lua filter in tlsgate',
  remote_addrs: 'no client-address condition in tlsgate',
  remote_addr: 'no client-address condition in tlsgate',
  service_id: 'services are not available: put the upstream on the route',
  plugin_config_id: 'plugin configs are not available',
  enable_websocket: 'WebSocket upgrade is not proxied by tlsgate',
  timeout: 'per-route timeouts are not available: set them on the upstream',
  script: 'no Lua script in tlsgate',
};

/** APISIX radixtree path → tlsgate path (README "Route matching"), or undefined when it cannot be carried. */
function mapUri(c: Ctx, where: string, uri: unknown): string | undefined {
  if (typeof uri !== 'string' || !uri.startsWith('/')) {
    return void c.note(where, `uri ${JSON.stringify(uri)} dropped: not a path`);
  }
  const star = uri.indexOf('*');
  if (uri.includes('/:') || (star >= 0 && star !== uri.length - 1)) {
    return void c.note(where,
      `uri ${JSON.stringify(uri)} dropped: parameters and inner "*" have no tlsgate equivalent`);
  }
  // "/a/*" and "/*" mean the same in both; a full-match uri becomes an exact path.
  if (star < 0) return `= ${uri}`;
  if (uri.endsWith('/*')) return uri;
  const prefix = uri.slice(0, -1);
  c.note(where, `uri ${JSON.stringify(uri)} translated to the segment prefix ${JSON.stringify(prefix)}: it matches ` +
    `${prefix} and ${prefix}/…, not ${prefix}x… as APISIX's string prefix does`);
  return prefix;
}

function importRoute(
  c: Ctx, at: string, v: Obj, ups: Map<string, string>, inline: Obj[], usedIds: Set<string>,
): Obj | undefined {
  const where = `routes ${label(at, v)}`;
  const id = mapId(c, where, v.id);
  if (!id) return undefined;
  if (v.status === 0) {
    return void c.note(where, 'not imported: disabled in APISIX (status 0), tlsgate routes have no status');
  }
  const out: Obj = { id };
  meta(c, where, v, out);
  const hosts = Array.isArray(v.hosts) ? v.hosts : typeof v.host === 'string' ? [v.host] : undefined;
  if (hosts) out.hosts = hosts;
  const uris = Array.isArray(v.uris) ? v.uris : v.uri !== undefined ? [v.uri] : ['/*'];
  const paths = [...new Set(uris.map((u) => mapUri(c, where, u)).filter((u): u is string => u !== undefined))];
  if (paths.length === 0) return void c.note(where, 'not imported: none of its uris can be carried');
  out.paths = paths;
  if (Array.isArray(v.methods) && v.methods.length) out.methods = v.methods;
  if (typeof v.priority === 'number' && v.priority !== 0) out.priority = v.priority;
  const plugins = isObj(v.plugins) ? v.plugins : {};
  for (const [name, conf] of Object.entries(plugins)) {
    if (name !== 'mocking' || !isObj(conf)) {
      c.note(where, `plugin ${name} dropped: tlsgate has no plugins`);
      continue;
    }
    if (conf._meta !== undefined && isObj(conf._meta) && conf._meta.disable === true) {
      c.note(where, 'plugin mocking dropped: disabled in APISIX');
      continue;
    }
    const respond: Obj = {};
    if (typeof conf.response_status === 'number') respond.status = conf.response_status;
    if (typeof conf.response_example === 'string') respond.body = conf.response_example;
    else if (conf.response_schema !== undefined) {
      c.note(where, 'mocking.response_schema dropped: give a response_example');
    }
    const headers: Obj = isObj(conf.response_headers) ? { ...conf.response_headers } : {};
    // APISIX's default content_type for mocking.
    headers['content-type'] = typeof conf.content_type === 'string' ? conf.content_type
      : 'application/json;charset=utf8';
    respond.headers = headers;
    for (const k of ['delay', 'with_mock_header']) if (conf[k] !== undefined) c.note(where, `mocking.${k} dropped`);
    out.respond = respond;
  }
  if (out.respond) {
    if (v.upstream_id !== undefined || v.upstream !== undefined) {
      c.note(where, 'upstream dropped: the mocking plugin answers before it (as in APISIX)');
    }
  } else if (v.upstream_id !== undefined) {
    const ref = ups.get(String(v.upstream_id));
    if (ref) out.upstream = ref;
    else c.error(where, `upstream_id ${JSON.stringify(v.upstream_id)} names no imported upstream`);
  } else if (isObj(v.upstream)) {
    let uid = `route-${id}`;
    for (let n = 2; usedIds.has(uid); n++) uid = `route-${id}-${n}`;
    usedIds.add(uid);
    const u = importUpstream(c, label(at, v), v.upstream, uid, c.sslRefs);
    if (u) {
      inline.push(u);
      out.upstream = uid;
    }
  } else return void c.error(where, 'has no upstream, upstream_id or mocking plugin');
  for (const [k, reason] of Object.entries(ROUTE_DROPS)) {
    if (v[k] !== undefined) c.note(where, `${k} dropped: ${reason}`);
  }
  const known = ['id', 'name', 'desc', 'labels', 'host', 'hosts', 'uri', 'uris', 'methods', 'priority', 'plugins',
    'upstream_id', 'upstream', 'status', 'create_time', 'update_time'];
  for (const k of Object.keys(v)) {
    if (!known.includes(k) && !(k in ROUTE_DROPS)) c.note(where, `${k} dropped: no tlsgate equivalent`);
  }
  return out;
}

/** Translate parsed APISIX objects into a tlsgate config and its files. */
export function translateApisix(input: ApisixInput, opts: ImportOptions = {}): ImportResult {
  const c = new Ctx(opts);
  for (const k of input.others) c.note(k, 'dropped: tlsgate has ssls, upstreams and routes only');
  const ssls: Obj[] = [];
  for (const { at, value } of input.ssls) {
    const s = importSsl(c, at, value);
    if (s) {
      ssls.push(s);
      c.sslRefs.set(String(value.id), s.id as string);
    }
  }
  const upstreams: Obj[] = [];
  const upRefs = new Map<string, string>();
  for (const { at, value } of input.upstreams) {
    const u = importUpstream(c, at, value, undefined, c.sslRefs);
    if (u) {
      upstreams.push(u);
      upRefs.set(String(value.id), u.id as string);
    }
  }
  const used = new Set(upstreams.map((u) => u.id as string));
  const inline: Obj[] = [];
  const routes: Obj[] = [];
  for (const { at, value } of input.routes) {
    const r = importRoute(c, at, value, upRefs, inline, used);
    if (r) routes.push(r);
  }
  upstreams.push(...inline);
  for (const p of c.pendingClient) {
    const cert = checkCerts(c, `${p.where}.tls.client_cert`, p.cert);
    const key = decryptKey(c, `${p.where}.tls.client_key`, p.key);
    if (cert && key) {
      ssls.push({
        id: p.id, type: 'client', cert: c.file(`${p.id}.crt`, cert, false), key: c.file(`${p.id}.key`, key, true),
      });
    }
  }
  const listener: Obj = { name: 'main', listen: opts.listen ?? '0.0.0.0:9443' };
  if (opts.engine) listener.engine = opts.engine;
  const config: Obj = { listeners: [listener], ssls, upstreams, routes };
  return { config, files: c.files, notes: c.notes, errors: c.errors };
}
