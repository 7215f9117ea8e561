// `ssl_dirs`: a directory of certificate files as a config source. Each `*.crt` / `*.pem`
// with its key becomes an ordinary SSL object (`dir:<dir id>:<file name>`) whose SNIs are
// the certificate's DNS SANs, so the rest of the gateway sees SSL objects only.
//
// One bad file is refused on its own (a warning naming it) and the others load: the files
// belong to an outside writer (certbot, cert-manager, an ACME client), and one half-written
// or wrong file must not hold back the rotation of every other certificate, which nginx and
// HAProxy do (a bad file in a `crt` directory fails their whole reload). The all-or-nothing
// rule of a reload holds per file instead: a refused file that had a good version keeps
// serving that version; a new bad file serves nothing. A directory that cannot be read, or a
// reference to a `dir:` id that is not served, is a config error: the reload is refused.
import { createHash, X509Certificate } from 'node:crypto';
import { lstatSync, readdirSync, statSync, type Stats } from 'node:fs';
import { isAbsolute, join, resolve as resolvePath } from 'node:path';
import { splitPem, validateSsl, type ValidateInput, type ValidateOutput } from '../certs/validate';
import { ConfigError, SecretError, type ConfigIssue, type ErrorCode } from '../errors';
import { readLocalFile } from '../secrets/resolve';
import { normalizePattern, wildcardParent } from '../routing/names';
import { DEFAULT_CIPHERS } from './declaration';
import { wildcardOverPublicSuffix } from './formats';
import type { GatewayConfig, SslConfig, SslDirConfig } from './types';

/** Objects expanded from a directory have ids `dir:…`; a listed object's id cannot contain ":". */
export function isDirId(id: string): boolean {
  return id.startsWith('dir:');
}

/** Validates certificate material: the piscina pool in the primary, in-line for `tlsgate validate`. */
export type Validate = (inputs: ValidateInput[]) => Promise<ValidateOutput[]>;

const inline: Validate = async (inputs) => inputs.map(validateSsl);

interface Material {
  cert: string;
  key: string;
  keyFile: string;
  /** Usable DNS SANs (normalized), before conflicts with other objects. */
  sans: string[];
  warnings: ConfigIssue[];
  /** Earliest not-after of the chain, ms: checked at each load, as a kept version may expire. */
  notAfter: number;
  /** The entry type it was checked for (EKU): a kept version serves only under the same type. */
  type: 'server' | 'client';
}

type Outcome = { ok: true; m: Material } | { ok: false; issues: ConfigIssue[] };

interface FileEntry {
  /** stat of the certificate file and of its key file: equal → the outcome is reused unread. */
  stamp: string;
  outcome: Outcome;
}

/** Kept between loads (`Loaded.sslDirs`): per-file outcomes and the last good version of each file. */
export interface SslDirState {
  files: Map<string, FileEntry>;
  good: Map<string, Material>;
  /**
   * The SSL object made from each file, with what it was made from: a file that did not
   * change gives the same object again, so the compile cache knows it by identity instead
   * of comparing its JSON (PEMs included) once per file on every directory event.
   */
  objects?: Map<string, { m: Material; key: string; ssl: SslConfig }>;
}

export interface WatchedDir {
  path: string;
  /** dirSignature() taken before the files were read: the watcher compares it when armed. */
  signature: string;
}

export interface Expanded {
  config: GatewayConfig;
  issues: ConfigIssue[];
  state: SslDirState;
  watch: WatchedDir[];
}

export interface ExpandOptions {
  validate?: Validate;
  now?: number;
}

const CANDIDATE = /\.(crt|pem)$/i;
const CONTROL = /[\u0000-\u001f\u007f]/;
const PRIVATE_KEY = /-----BEGIN ((?:RSA |EC |ENCRYPTED )?PRIVATE KEY)-----[\s\S]+?-----END \1-----/;

/**
 * Files the scan reads: `*.crt` / `*.pem`, not dotfiles (`.x.pem.swp`, Kubernetes' `..data`)
 * nor editor leftovers (`x.pem~`, `#x.pem#`).
 */
export function isCandidate(name: string): boolean {
  return CANDIDATE.test(name) && !name.startsWith('.') && !name.startsWith('#') && !name.endsWith('~');
}

/**
 * Names and stats of every entry (dotfiles included: a Kubernetes secret volume swaps its
 * `..data` link, not the files): any add, replace, remove or re-link changes it.
 */
export function dirSignature(dir: string): string {
  return listing(dir).signature;
}

/** Every entry's stat stamp, read once: the signature and the per-file reuse test share them. */
function listing(dir: string): { names: string[]; stamps: Map<string, string>; signature: string } {
  const h = createHash('sha256');
  const stamps = new Map<string, string>();
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    return { names: [], stamps, signature: `unreadable:${(err as NodeJS.ErrnoException).code ?? ''}` };
  }
  for (const n of names) {
    const st = stamp(join(dir, n));
    stamps.set(n, st);
    h.update(n).update('\0').update(st).update('\n');
  }
  return { names, stamps, signature: h.digest('hex') };
}

function stamp(p: string): string {
  const one = (s: Stats | undefined): string => (s ? `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}` : '-');
  let l: Stats | undefined;
  let t: Stats | undefined;
  try {
    l = lstatSync(p);
    t = l.isSymbolicLink() ? statSync(p) : l;
  } catch {
    /* missing or dangling: '-' */
  }
  return `${one(l)}/${one(t)}`;
}

export function dirPath(d: SslDirConfig, baseDir: string): string {
  return isAbsolute(d.path) ? resolvePath(d.path) : resolvePath(baseDir, d.path);
}

/**
 * The config with every `ssl_dirs` file that passes expanded into `ssls` (after the listed
 * ones). Throws ConfigError for a directory that cannot be read or a `dir:` reference that
 * names no served object; a refused file is a warning.
 */
export async function expandSslDirs(
  config: GatewayConfig,
  previous: SslDirState | undefined,
  o: ExpandOptions = {},
): Promise<Expanded> {
  const state: SslDirState = { files: new Map(), good: new Map(), objects: new Map() };
  if (config.ssl_dirs.length === 0) {
    // A `dir:` reference with no directory at all: schema.ts left it to this check.
    const refs = referenceIssues(config);
    if (refs.length) throw new ConfigError(refs);
    return { config, issues: [], state, watch: [] };
  }
  const now = o.now ?? Date.now();
  const day = Math.floor(now / 86_400_000);
  const issues: ConfigIssue[] = [];
  const errors: ConfigIssue[] = [];
  const watch: WatchedDir[] = [];
  const seenDirs = new Map<string, number>();
  const seenIds = new Map<string, number>();
  // [dir index, file name, file path, outcome]; validation of new files is batched.
  const found: Array<{ i: number; name: string; file: string; entry: FileEntry }> = [];
  const pending: Array<{ at: number; input: ValidateInput; m: Material }> = [];

  config.ssl_dirs.forEach((d, i) => {
    const dir = dirPath(d, config.baseDir);
    const p = `ssl_dirs[${i}]`;
    const dirId = d.id ?? String(i);
    const twin = seenDirs.get(dir);
    if (twin !== undefined) {
      return void errors.push(issue(`${p}.path`, 'TLSGATE_E_DUPLICATE_ID', `${dir} is also ssl_dirs[${twin}]`));
    }
    const idTwin = seenIds.get(dirId);
    if (idTwin !== undefined) {
      const msg = `"${dirId}" is also the id of ssl_dirs[${idTwin}]`;
      return void errors.push(issue(`${p}.id`, 'TLSGATE_E_DUPLICATE_ID', msg));
    }
    seenDirs.set(dir, i);
    seenIds.set(dirId, i);
    try {
      if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
      return void errors.push(issue(`${p}.path`, 'TLSGATE_E_SSL_DIR', `cannot read the directory ${dir} (${code})`));
    }
    // Stats taken before any file is read: a change after this point differs from the signature.
    const { names, stamps, signature } = listing(dir);
    if (d.watch) watch.push({ path: dir, signature });
    for (const name of names.filter(isCandidate)) {
      const file = join(dir, name);
      // A name is shown in messages, ids and logs: one holding a line break could forge a line.
      if (CONTROL.test(name)) {
        const msg = `the file name ${JSON.stringify(name)} holds a control character; not read`;
        issues.push(warning(`${p}.path`, 'TLSGATE_E_SSL_DIR', msg));
        continue;
      }
      const keyNames = [name.replace(CANDIDATE, '.key'), `${name}.key`];
      const keyFiles = keyNames.map((k) => join(dir, k));
      // The day, type and warn_days are inputs of the checks too (expiry warnings, EKU).
      const inputs = `${day}|${d.type}|${config.warn_days}`;
      const st = `${inputs}|${stamps.get(name)}|${keyNames.map((k) => stamps.get(k) ?? '-').join('|')}`;
      const before = previous?.files.get(file);
      if (before && before.stamp === st) {
        found.push({ i, name, file, entry: before });
        continue;
      }
      const read = readPair(file, keyFiles, config.file_max_size, `${p} ${file}`);
      const entry: FileEntry = { stamp: st, outcome: read.ok ? { ok: false, issues: [] } : read };
      const at = found.push({ i, name, file, entry }) - 1;
      if (!read.ok) continue;
      pending.push({
        at,
        m: read.m,
        input: {
          path: p,
          id: `dir:${dirId}:${name}`,
          type: d.type,
          snis: [], // the names come from the SANs it reports
          pairs: [{ certPath: file, cert: read.m.cert, keyPath: read.m.keyFile, key: read.m.key }],
          warnDays: config.warn_days,
          now,
        },
      });
    }
  });
  if (errors.length) throw new ConfigError([...errors, ...issues]);

  const checked = pending.length ? await (o.validate ?? inline)(pending.map((x) => x.input)) : [];
  pending.forEach((x, j) => {
    const out = checked[j]!;
    const f = found[x.at]!;
    const where = `ssl_dirs[${f.i}] ${f.file}`;
    const bad = out.issues.filter((v) => v.severity === 'error');
    if (bad.length) {
      f.entry.outcome = { ok: false, issues: bad.map((v) => issue(where, v.code, detail(v, f.file))) };
      // Not yet valid today, valid in an hour: checked again at each load, not reused.
      if (bad.some((v) => v.code === 'TLSGATE_E_CERT_NOT_YET_VALID')) f.entry.stamp = '';
      return;
    }
    const names = usableSans(out.certs[0]?.sans ?? [], config.ssl_dirs[f.i]!.type, where);
    if (!names.ok) {
      f.entry.outcome = names;
      return;
    }
    const warned = out.issues.filter((v) => v.severity === 'warning').map((v) => ({ ...v, path: where }));
    const type = config.ssl_dirs[f.i]!.type;
    const m = { ...x.m, sans: names.sans, warnings: [...names.warnings, ...warned], notAfter: out.notAfter, type };
    f.entry.outcome = { ok: true, m };
  });

  // SNI owners: listed objects first (explicit config wins), then files in order.
  const owner = new Map<string, string>();
  for (const s of config.ssls) {
    if (s.type === 'server' && s.status === 'enabled') for (const n of s.snis) owner.set(n, s.id);
  }
  const wild = wildcardRules(config, found, previous);
  const ssls: SslConfig[] = [];
  const sources: Record<string, string> = {};
  for (const { i, name, file, entry } of found) {
    const d = config.ssl_dirs[i]!;
    const where = `ssl_dirs[${i}] ${file}`;
    state.files.set(file, entry);
    let m: Material | undefined;
    if (entry.outcome.ok && entry.outcome.m.notAfter > now) {
      m = entry.outcome.m;
      state.good.set(file, m);
      issues.push(...m.warnings);
    } else {
      if (entry.outcome.ok) {
        // Checked earlier today and expired since: the snapshot compile would refuse the whole config.
        const when = new Date(entry.outcome.m.notAfter).toISOString();
        entry.outcome = { ok: false, issues: [issue(where, 'TLSGATE_E_CERT_EXPIRED', `expired on ${when}`)] };
      }
      const kept = previous?.good.get(file);
      const last = kept && kept.notAfter > now && kept.type === d.type ? kept : undefined;
      const keeps = last ? 'refused; its previous version keeps serving' : 'refused; not served';
      for (const v of entry.outcome.issues) {
        issues.push({ ...v, severity: 'warning', message: `${v.message}; ${keeps}` });
      }
      if (last) state.good.set(file, (m = last));
    }
    if (!m) continue;
    const id = `dir:${d.id ?? i}:${name}`;
    let snis: string[] = [];
    if (d.type === 'server') {
      const rule = clientRule(d.client);
      for (const n of m.sans) {
        const prev = owner.get(n);
        // An exact name beats a wildcard in the SNI map: a file naming `admin.corp` would take it
        // from an mTLS `*.corp` and serve it without (or with another) client certificate rule.
        const parent = n.startsWith('*.') ? null : wildcardParent(n);
        const above = parent === null ? undefined : wild.get(`*.${parent}`);
        if (prev === undefined && above !== undefined && above.rule !== '' && above.rule !== rule) {
          const msg = `"${n}" is beneath "*.${parent}" of mTLS SSL object "${above.id}"; this file does not serve it`;
          issues.push(warning(where, 'TLSGATE_E_SNI_CONFLICT', msg));
        } else if (prev === undefined) {
          owner.set(n, id);
          snis.push(n);
        } else {
          const msg = `"${n}" is already served by SSL object "${prev}"; this file does not serve it`;
          issues.push(warning(where, 'TLSGATE_E_SNI_CONFLICT', msg));
        }
      }
      if (snis.length === 0) {
        const msg = 'every name of this certificate is served by another SSL object; not served';
        issues.push(warning(where, 'TLSGATE_E_SNI_CONFLICT', msg));
        continue;
      }
    } else snis = [];
    const at = config.ssls.length + ssls.length;
    sources[`ssls[${at}].cert`] = file;
    sources[`ssls[${at}].key`] = m.keyFile;
    const key = `${id}\0${d.type}\0${snis.join(',')}\0${clientRule(d.client)}`;
    const before = previous?.objects?.get(file);
    const ssl: SslConfig =
      before && before.m === m && before.key === key
        ? before.ssl
        : {
          id,
          type: d.type,
          snis,
          cert: m.cert,
          key: m.key,
          certs: [],
          keys: [],
          ...(d.client ? { client: d.client } : {}),
          ssl_protocols: ['TLSv1.2', 'TLSv1.3'],
          ssl_ciphers: DEFAULT_CIPHERS,
          status: 'enabled',
        };
    state.objects!.set(file, { m, key, ssl });
    ssls.push(ssl);
  }
  const expanded: GatewayConfig = {
    ...config,
    ssls: [...config.ssls, ...ssls],
    sslDirSources: { ...config.sslDirSources, ...sources },
  };
  errors.push(...referenceIssues(expanded));
  if (errors.length) throw new ConfigError([...errors, ...issues]);
  return { config: expanded, issues, state, watch };
}

/** Reads one certificate file and its key; checks what needs no certificate parser. */
function readPair(
  file: string,
  keyFiles: string[],
  max: number,
  where: string,
): { ok: true; m: Material } | { ok: false; issues: ConfigIssue[] } {
  const refuse = (code: ErrorCode, message: string) => ({ ok: false as const, issues: [issue(where, code, message)] });
  const text = readBounded(file, max);
  if (typeof text !== 'string') return refuse('TLSGATE_E_SSL_DIR', text.message);
  const blocks = splitPem(text);
  const own = PRIVATE_KEY.exec(text)?.[0];
  if (blocks.length === 0) {
    // A key on its own (`example.key.pem`): the key of another file, not an object.
    if (own) return { ok: false, issues: [] };
    return refuse('TLSGATE_E_CERT_PARSE', 'holds no PEM certificate (-----BEGIN CERTIFICATE-----)');
  }
  let key = own;
  let keyFile = file;
  if (!key) {
    const at = keyFiles.find((k) => exists(k));
    if (!at) {
      // A certificate that does not parse is the first thing to fix: say that rather than "no key".
      try {
        new X509Certificate(blocks[0]!);
      } catch (err) {
        return refuse('TLSGATE_E_CERT_PARSE', `not a valid PEM certificate: ${(err as Error).message}`);
      }
      const names = keyFiles.map((k) => k.slice(k.lastIndexOf('/') + 1)).join(' or ');
      return refuse('TLSGATE_E_KEY_MISSING', `holds no private key, and there is no ${names} beside it`);
    }
    const k = readBounded(at, max);
    if (typeof k !== 'string') return refuse('TLSGATE_E_SSL_DIR', `its key: ${k.message}`);
    key = k;
    keyFile = at;
  }
  // Only the certificates travel as `cert`: a combined file's key never sits in a field shown as one.
  const cert = `${blocks.join('\n')}\n`;
  // sans, warnings, notAfter and type are filled in once the certificate is checked.
  return { ok: true, m: { cert, key, keyFile, sans: [], warnings: [], notAfter: Infinity, type: 'server' } };
}

/**
 * The names a file serves: its DNS SANs as SNI patterns (validateSsl's `sans` list, so the
 * certificate is parsed once). A SAN no SNI can match, or a wildcard over a public suffix, is dropped.
 */
function usableSans(
  parts: readonly string[],
  type: 'server' | 'client',
  where: string,
): { ok: true; sans: string[]; warnings: ConfigIssue[] } | { ok: false; issues: ConfigIssue[] } {
  const sans: string[] = [];
  const warnings: ConfigIssue[] = [];
  if (type === 'client') return { ok: true, sans, warnings };
  for (const part of parts) {
    if (!part.startsWith('DNS:')) continue;
    const n = normalizePattern(part.slice(4));
    const wide = n ? wildcardOverPublicSuffix(n) : null;
    if (n && !wide && !sans.includes(n)) sans.push(n);
    else if (!n || wide) {
      const why = wide ? `a wildcard over the public suffix "${wide}"` : 'not a valid SNI pattern';
      const msg = `the SAN ${JSON.stringify(part.slice(4))} is ${why}; not served`;
      warnings.push(warning(where, 'TLSGATE_E_SNI_INVALID', msg));
    }
  }
  if (sans.length > 0) return { ok: true, sans, warnings };
  const msg = 'has no usable DNS Subject Alternative Name (the names served come from the SANs; the CN is not used)';
  const dropped = warnings.map((w) => w.message.slice(0, w.message.indexOf(';'))).join('; ');
  return { ok: false, issues: [issue(where, 'TLSGATE_E_CERT_NO_SAN', dropped ? `${msg}: ${dropped}` : msg)] };
}

/** The text, or why not: not a regular file (a FIFO, a device, a link to one), over file_max_size, unreadable. */
function readBounded(file: string, max: number): string | { message: string } {
  try {
    return readLocalFile(file, file, max);
  } catch (err) {
    // The message names the file and the reason, never content.
    if (err instanceof SecretError) return { message: err.message.slice(file.length + 2).replace(`${file} `, '') };
    return { message: `cannot read ${file}` };
  }
}

function exists(p: string): boolean {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

/** validateSsl's message, with the file it names made relative to the entry's path. */
function detail(v: ConfigIssue, file: string): string {
  const about = v.path === file ? '' : v.path.startsWith('/') ? `${v.path}: ` : '';
  return `${about}${v.message}`;
}

/** default_ssl / client_ssl naming a `dir:` id: it must be served and of the right type. */
function referenceIssues(c: GatewayConfig): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  // Made only when a `dir:` id is referenced: this runs on every reload (10k objects: 3 ms).
  let ssls: Map<string, SslConfig> | undefined;
  const check = (p: string, id: string | undefined, type: 'server' | 'client'): void => {
    if (id === undefined || !isDirId(id)) return;
    ssls ??= new Map(c.ssls.map((s) => [s.id, s]));
    const s = ssls.get(id);
    if (!s) out.push(issue(p, 'TLSGATE_E_REF_UNKNOWN', `"${id}" is not an SSL object served from ssl_dirs`));
    else if (s.type !== type) {
      out.push(issue(p, 'TLSGATE_E_REF_UNKNOWN', `"${id}" is an SSL object of type ${s.type}, not ${type}`));
    }
  };
  c.listeners.forEach((l, i) => check(`listeners[${i}].default_ssl`, l.default_ssl, 'server'));
  c.upstreams.forEach((u, i) => check(`upstreams[${i}].tls.client_ssl`, u.tls?.client_ssl, 'client'));
  const mtls = c.ssl_dirs.findIndex((d) => d.type === 'server' && d.client);
  c.listeners.forEach((l, i) => {
    if (l.engine !== 'uws' || mtls < 0) return;
    const msg = `uws cannot enforce mTLS, but ssl_dirs[${mtls}] has client.ca: use engine: node for this listener`;
    out.push(issue(`listeners[${i}].engine`, 'TLSGATE_E_ENGINE_UNSUPPORTED', msg));
  });
  return out;
}

function issue(path: string, code: ErrorCode, message: string): ConfigIssue {
  return { path, code, message, severity: 'error' };
}

function warning(path: string, code: ErrorCode, message: string): ConfigIssue {
  return { path, code, message, severity: 'warning' };
}

/** A client certificate rule as compared between objects ('' for none). */
function clientRule(client: SslConfig['client'] | undefined): string {
  return client ? JSON.stringify(client) : '';
}

/**
 * Each wildcard SNI's holder and client rule: listed objects first, then the files in order,
 * as the owners are given out. A file refused this time counts with its last good version,
 * or with this version when it has none (so a refused mTLS wildcard keeps its names beneath
 * it from being taken without mTLS: the safe side).
 */
function wildcardRules(
  config: GatewayConfig,
  found: ReadonlyArray<{ i: number; name: string; file: string; entry: FileEntry }>,
  previous: SslDirState | undefined,
): Map<string, { id: string; rule: string }> {
  const out = new Map<string, { id: string; rule: string }>();
  for (const s of config.ssls) {
    if (s.type !== 'server' || s.status !== 'enabled') continue;
    for (const n of s.snis) if (n.startsWith('*.')) out.set(n, { id: s.id, rule: clientRule(s.client) });
  }
  for (const { i, name, file, entry } of found) {
    const d = config.ssl_dirs[i]!;
    if (d.type !== 'server') continue;
    const id = `dir:${d.id ?? i}:${name}`;
    const sans = entry.outcome.ok ? entry.outcome.m.sans : previous?.good.get(file)?.sans ?? [];
    for (const n of sans) {
      if (n.startsWith('*.') && !out.has(n)) out.set(n, { id, rule: clientRule(d.client) });
    }
  }
  return out;
}
