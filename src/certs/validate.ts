// Certificate checks for one SSL object. Pure and synchronous: it runs inside the
// piscina pool (validate-task.ts) so 10k certificates (~0.2 ms each) do not stall
// the primary's admin API and IPC.
import { createHash, createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import type { ConfigIssue, ErrorCode } from '../errors';
import { wildcardOverPublicSuffix } from '../config/formats';
import { patternCovers } from '../routing/names';

const EKU = { server: '1.3.6.1.5.5.7.3.1', client: '1.3.6.1.5.5.7.3.2', any: '2.5.29.37.0' };
const EKU_NAMES: Record<string, string> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
  '1.3.6.1.5.5.7.3.3': 'codeSigning',
  '1.3.6.1.5.5.7.3.4': 'emailProtection',
  '1.3.6.1.5.5.7.3.8': 'timeStamping',
  '1.3.6.1.5.5.7.3.9': 'OCSPSigning',
  '2.5.29.37.0': 'anyExtendedKeyUsage',
};
/** NIST SP 800-131A, CA/B Forum baseline: below this an RSA key is refused. */
const MIN_RSA_BITS = 2048;
const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export interface ValidateInput {
  /** Config path of the object, e.g. `ssls[3]`. */
  path: string;
  id: string;
  type: 'server' | 'client';
  snis: string[];
  /** [certPath, certPem, keyPath, keyPem] per pair. */
  pairs: Array<{ certPath: string; cert: string; keyPath: string; key: string }>;
  clientCa?: { path: string; pem: string };
  warnDays: number;
  now: number;
}

export interface CertInfo {
  subject: string;
  issuer: string;
  serial: string;
  not_before: string;
  not_after: string;
  days_left: number;
  sans: string[];
  key_type: string;
  key_size: number | null;
  curve: string | null;
  fingerprint_sha256: string;
  chain_length: number;
}

export interface ValidateOutput {
  issues: ConfigIssue[];
  certs: CertInfo[];
  clientCa?: { subject: string; fingerprint_sha256: string; count: number };
  /** Earliest not_after over the pairs, ms since epoch. */
  notAfter: number;
  /**
   * When the verdict has no issue: the times between which it stays the same (every
   * certificate valid, no expiry warning yet), so a cached verdict is reused only then.
   */
  stable?: { from: number; until: number };
}

export function splitPem(pem: string): string[] {
  return pem.match(PEM_CERT) ?? [];
}

export function validateSsl(input: ValidateInput): ValidateOutput {
  const issues: ConfigIssue[] = [];
  const err = (path: string, code: ErrorCode, message: string): void =>
    void issues.push({ path, code, message, severity: 'error' });
  const certs: CertInfo[] = [];
  let notAfter = Infinity;
  const keyTypes = new Set<string>();
  // The verdict's time window (ValidateOutput.stable): narrowed by every date checked below.
  let stableFrom = -Infinity;
  let stableUntil = Infinity;
  const window = (from: number, until: number): void => {
    stableFrom = Math.max(stableFrom, from);
    stableUntil = Math.min(stableUntil, until);
  };

  for (const pair of input.pairs) {
    const blocks = splitPem(pair.cert);
    let chain: X509Certificate[];
    try {
      if (blocks.length === 0) throw new Error('no "BEGIN CERTIFICATE" block');
      chain = blocks.map((b) => new X509Certificate(b));
    } catch (e) {
      err(pair.certPath, 'TLSGATE_E_CERT_PARSE', `not a valid PEM certificate: ${(e as Error).message}`);
      continue;
    }
    const leaf = chain[0]!;
    let key: KeyObject | undefined;
    try {
      key = privateKeyOf(pair.key);
    } catch (e) {
      // The message of node:crypto names the decoder, never the key bytes.
      err(
        pair.keyPath,
        'TLSGATE_E_KEY_PARSE',
        `not a valid PEM private key (${(e as { code?: string }).code ?? 'parse error'})`,
      );
    }
    const matched = key !== undefined && leaf.checkPrivateKey(key);
    const leafPub = leaf.publicKey;
    // The leaf's key details from its (shared, cached) private key when they match: reading
    // them from each certificate's public key cost ≈ 30-70 µs per object (profiled at 100k).
    const leafDetails =
      matched && key!.asymmetricKeyType === leafPub.asymmetricKeyType
        ? detailsOf(key!)
        : (leafPub.asymmetricKeyDetails ?? {});
    if (key && !matched) {
      err(
        pair.keyPath,
        'TLSGATE_E_CERT_KEY_MISMATCH',
        `does not match the certificate in ${pair.certPath} (subject ${leaf.subject.replace(/\n/g, ', ')})`,
      );
    }
    for (let i = 0; i + 1 < chain.length; i++) {
      const c = chain[i]!;
      const up = chain[i + 1]!;
      if (!c.checkIssued(up) || !c.verify(up.publicKey)) {
        err(
          pair.certPath,
          'TLSGATE_E_CERT_CHAIN_ORDER',
          `certificate ${i + 1} of the chain (${oneLine(c.subject)}) is not issued by certificate ` +
            `${i + 2} (${oneLine(up.subject)}); the leaf goes first, then each issuer`,
        );
      }
    }
    for (let i = 1; i < chain.length; i++) {
      const c = chain[i]!;
      const what = `chain certificate ${i + 1} (${oneLine(c.subject)})`;
      const [notBefore, notAfter] = [Date.parse(c.validFrom), Date.parse(c.validTo)];
      window(notBefore, notAfter);
      if (notAfter <= input.now) {
        err(pair.certPath, 'TLSGATE_E_CERT_EXPIRED', `${what} expired on ${new Date(notAfter).toISOString()}`);
      } else if (notBefore > input.now) {
        const when = new Date(notBefore).toISOString();
        err(pair.certPath, 'TLSGATE_E_CERT_NOT_YET_VALID', `${what} is not valid before ${when}`);
      }
    }
    chain.forEach((c, i) => {
      const pub = i === 0 ? leafPub : c.publicKey;
      const details = i === 0 ? leafDetails : pub.asymmetricKeyType === 'rsa' ? pub.asymmetricKeyDetails : undefined;
      const bits = pub.asymmetricKeyType === 'rsa' ? details?.modulusLength : undefined;
      if (bits === undefined || bits >= MIN_RSA_BITS) return;
      const what = i === 0 ? 'the certificate' : `chain certificate ${i + 1} (${oneLine(c.subject)})`;
      const msg = `${what} has a ${bits}-bit RSA key; at least ${MIN_RSA_BITS} bits are required`;
      err(pair.certPath, 'TLSGATE_E_KEY_WEAK', msg);
    });
    const from = Date.parse(leaf.validFrom);
    const to = Date.parse(leaf.validTo);
    window(from, to - input.warnDays * 86_400_000);
    const daysLeft = Math.floor((to - input.now) / 86_400_000);
    if (to <= input.now)
      err(
        pair.certPath,
        'TLSGATE_E_CERT_EXPIRED',
        `expired on ${new Date(to).toISOString()} (subject ${oneLine(leaf.subject)})`,
      );
    else if (from > input.now)
      err(pair.certPath, 'TLSGATE_E_CERT_NOT_YET_VALID', `not valid before ${new Date(from).toISOString()}`);
    else if (daysLeft < input.warnDays) {
      issues.push({
        path: pair.certPath,
        code: 'TLSGATE_E_CERT_EXPIRING',
        severity: 'warning',
        message: `expires in ${daysLeft} day(s), on ${new Date(to).toISOString()} (ssl "${input.id}", ` +
          `snis ${input.snis.join(', ') || '-'})`,
      });
    }
    // keyUsage is Node's name for the Extended Key Usage list; undefined when absent.
    const eku = leaf.keyUsage;
    if (eku && eku.length > 0 && !eku.includes(EKU.any) && !eku.includes(EKU[input.type])) {
      const want = input.type === 'server' ? 'serverAuth' : 'clientAuth';
      const has = eku.map(ekuName).join(', ');
      const msg = `Extended Key Usage (${has}) lacks ${want}, required for an SSL object of type ${input.type}`;
      err(pair.certPath, 'TLSGATE_E_CERT_EKU', msg);
    }
    const sans = dnsNames(leaf);
    if (input.type === 'server' && sans.length === 0) {
      // No CN fallback: RFC 6125 §6.4.4 and every current browser ignore the CN when
      // matching, so a CN-only certificate would pass here and fail at every client.
      const subject = oneLine(leaf.subject);
      const msg = `has no DNS Subject Alternative Name (subject ${subject}); the CN is not used for name matching`;
      err(pair.certPath, 'TLSGATE_E_CERT_NO_SAN', msg);
    } else if (input.type === 'server') issues.push(...coverageIssues(input, pair.certPath, sans));
    const details = leafDetails;
    const keyType = leafPub.asymmetricKeyType ?? 'unknown';
    if (keyTypes.has(keyType))
      err(
        pair.certPath,
        'TLSGATE_E_CONFIG_INVALID',
        `a second ${keyType} pair on one SSL object: cert/certs pairs must differ in key type (RSA + ECDSA)`,
      );
    keyTypes.add(keyType);
    notAfter = Math.min(notAfter, to);
    certs.push({
      subject: oneLine(leaf.subject),
      issuer: oneLine(leaf.issuer),
      serial: leaf.serialNumber,
      not_before: new Date(from).toISOString(),
      not_after: new Date(to).toISOString(),
      days_left: daysLeft,
      sans: (leaf.subjectAltName ?? '').split(', ').filter(Boolean),
      key_type: keyType,
      key_size: details.modulusLength ?? (details.namedCurve ? curveBits(details.namedCurve) : null),
      curve: details.namedCurve ?? null,
      fingerprint_sha256: leaf.fingerprint256,
      chain_length: chain.length,
    });
  }

  let clientCa: ValidateOutput['clientCa'];
  if (input.clientCa) {
    const blocks = splitPem(input.clientCa.pem);
    try {
      if (blocks.length === 0) throw new Error('no "BEGIN CERTIFICATE" block');
      const cas = blocks.map((b) => new X509Certificate(b));
      clientCa = { subject: oneLine(cas[0]!.subject), fingerprint_sha256: cas[0]!.fingerprint256, count: cas.length };
      for (const c of cas) window(-Infinity, Date.parse(c.validTo));
      const expired = cas.find((c) => Date.parse(c.validTo) <= input.now);
      if (expired)
        err(
          input.clientCa.path,
          'TLSGATE_E_CERT_EXPIRED',
          `client CA ${oneLine(expired.subject)} expired on ${new Date(Date.parse(expired.validTo)).toISOString()}`,
        );
    } catch (e) {
      err(input.clientCa.path, 'TLSGATE_E_CA_PARSE', `not a valid PEM CA bundle: ${(e as Error).message}`);
    }
  }
  const clean = issues.length === 0 && stableFrom <= input.now && input.now < stableUntil;
  return {
    issues,
    certs,
    ...(clientCa ? { clientCa } : {}),
    notAfter,
    ...(clean ? { stable: { from: stableFrom, until: stableUntil } } : {}),
  };
}

/**
 * Each SNI of the object not covered by these DNS SANs of one pair's leaf. Apart from the
 * rest of validateSsl so a cached verdict (ValidationCache) is checked against the SNIs of
 * the object that uses it: the same files serve an `ssl_dirs` scan (no SNIs) and its object.
 */
export function coverageIssues(
  input: Pick<ValidateInput, 'path' | 'snis'>,
  certPath: string,
  sans: string[],
): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  // A SAN like `*.com` would cover any registrable domain: never a name this object may serve.
  const usable = sans.filter((san) => !wildcardOverPublicSuffix(san));
  input.snis.forEach((sni, j) => {
    if (usable.some((san) => patternCovers(san, sni))) return;
    const wide = sans.find((san) => wildcardOverPublicSuffix(san) && patternCovers(san, sni));
    const path = `${input.path}.snis[${j}]`;
    if (wide) {
      const suffix = wildcardOverPublicSuffix(wide);
      const message =
        `"${sni}" is covered only by the SAN "${wide}", a wildcard over the public suffix "${suffix}", ` +
        `in ${certPath}`;
      out.push({ path, code: 'TLSGATE_E_WILDCARD_PUBLIC_SUFFIX', message, severity: 'error' });
    } else {
      const message = `"${sni}" is not covered by the certificate's SANs (${sans.join(', ')}) in ${certPath}`;
      out.push({ path, code: 'TLSGATE_E_SNI_NOT_COVERED', message, severity: 'error' });
    }
  });
  return out;
}

/** The DNS names of a `subjectAltName` list (CertInfo.sans: `DNS:a, IP Address:…`), lower case. */
export function dnsOf(sans: readonly string[]): string[] {
  return sans.filter((s) => s.startsWith('DNS:')).map((s) => s.slice(4).toLowerCase());
}

function dnsNames(c: X509Certificate): string[] {
  return (c.subjectAltName ?? '')
    .split(', ')
    .filter((s) => s.startsWith('DNS:'))
    .map((s) => s.slice(4).toLowerCase());
}

function ekuName(oid: string): string {
  return EKU_NAMES[oid] ?? oid;
}

function oneLine(dn: string): string {
  return dn.split('\n').join(', ');
}

function curveBits(curve: string): number | null {
  const m = /(\d{3})/.exec(curve);
  return m ? Number(m[1]) : null;
}

/**
 * Parsed private keys by content: 10k objects often share one key (a wildcard, one key per
 * fleet), and OpenSSL 3's key decoder costs ≈ 0.5 ms per parse (measured on this machine,
 * three times the certificate parse). The key is still checked against each object's
 * certificate (checkPrivateKey, ≈ 4 µs); only the parse is shared. Keyed by a hash of the
 * whole PEM: a changed byte is another entry. Bounded: distinct keys gain nothing from it.
 */
const parsedKeys = new Map<string, KeyObject>();
const PARSED_KEYS_MAX = 256;

const keyDetails = new WeakMap<KeyObject, NonNullable<KeyObject['asymmetricKeyDetails']>>();

function detailsOf(key: KeyObject): NonNullable<KeyObject['asymmetricKeyDetails']> {
  let d = keyDetails.get(key);
  if (!d) keyDetails.set(key, (d = key.asymmetricKeyDetails ?? {}));
  return d;
}

function privateKeyOf(pem: string): KeyObject {
  const h = createHash('sha256').update(pem).digest('base64');
  const hit = parsedKeys.get(h);
  if (hit) return hit;
  const key = createPrivateKey(pem); // throws: not cached, the next object gets the same error
  if (parsedKeys.size >= PARSED_KEYS_MAX) parsedKeys.delete(parsedKeys.keys().next().value!);
  parsedKeys.set(h, key);
  return key;
}

/** Content hash of an SSL object's material: SecureContext cache key, "changed?" test. */
export function materialHash(parts: ReadonlyArray<string | undefined>): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p ?? '\0').update('\x1f');
  return h.digest('hex');
}
