// A small X.509 issuer on node:crypto: DER built by hand, signed with crypto.sign.
// Used for the dev CA made on first start, by the tests and by the bench fixtures.
// Why not the openssl CLI: 100k bench certificates at ~10 ms per spawn is 17 min;
// here an ECDSA leaf with a shared key costs ~0.1 ms. Why not a dependency: the
// subset we need (names, validity, SAN, EKU, basic constraints, key ids) is ~200 lines.
import { createHash, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';

export type KeyType = 'ec' | 'rsa' | 'rsa-1024' | 'rsa-2048' | 'rsa-3072' | 'ec-384';
export type Eku = 'serverAuth' | 'clientAuth';

export interface Issued {
  /** PEM certificate (leaf only). */
  cert: string;
  /** PEM PKCS#8 private key. */
  key: string;
  keyObject: KeyObject;
  der: Buffer;
  subjectDer: Buffer;
  ski: Buffer;
}

export interface IssueOptions {
  cn: string;
  org?: string;
  dns?: string[];
  ips?: string[];
  /** undefined: no EKU extension. */
  eku?: Eku[];
  ca?: boolean;
  pathLen?: number;
  notBefore?: Date;
  notAfter?: Date;
  keyType?: KeyType;
  /** Reuse a key (bench fixtures); a fresh one otherwise. */
  key?: KeyObject;
  /** Absent: self-signed. */
  issuer?: Issued;
}

// --- DER primitives ---------------------------------------------------------
function len(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}
function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), len(body.length), body]);
}
const seq = (...c: Buffer[]): Buffer => tlv(0x30, ...c);
const set = (...c: Buffer[]): Buffer => tlv(0x31, ...c);
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const bits = (b: Buffer): Buffer => tlv(0x03, Buffer.from([0]), b);
const bool = (v: boolean): Buffer => tlv(0x01, Buffer.from([v ? 0xff : 0]));
const explicit = (n: number, c: Buffer): Buffer => tlv(0xa0 + n, c);
function int(v: number | Buffer): Buffer {
  let b =
    typeof v === 'number'
      ? Buffer.from(
          v
            .toString(16)
            .padStart(2, '0')
            .replace(/^(.(..)*)$/, '0$1'),
          'hex',
        )
      : v;
  while (b.length > 1 && b[0] === 0 && b[1]! < 0x80) b = b.subarray(1);
  if (b[0]! >= 0x80) b = Buffer.concat([Buffer.from([0]), b]);
  return tlv(0x02, b);
}
function oid(dotted: string): Buffer {
  const p = dotted.split('.').map(Number);
  const out = [40 * p[0]! + p[1]!];
  for (const n of p.slice(2)) {
    const chunk: number[] = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}
function time(d: Date): Buffer {
  const iso = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  const y = d.getUTCFullYear();
  return y >= 1950 && y < 2050 ? tlv(0x17, Buffer.from(iso.slice(2))) : tlv(0x18, Buffer.from(iso));
}

const OID = {
  cn: '2.5.4.3',
  o: '2.5.4.10',
  basicConstraints: '2.5.29.19',
  keyUsage: '2.5.29.15',
  extKeyUsage: '2.5.29.37',
  san: '2.5.29.17',
  ski: '2.5.29.14',
  aki: '2.5.29.35',
  serverAuth: '1.3.6.1.5.5.7.3.1',
  clientAuth: '1.3.6.1.5.5.7.3.2',
  ecdsaSha256: '1.2.840.10045.4.3.2',
  ecdsaSha384: '1.2.840.10045.4.3.3',
  rsaSha256: '1.2.840.113549.1.1.11',
};

function name(cn: string, org?: string): Buffer {
  const rdn = (type: string, v: string): Buffer => set(seq(oid(type), tlv(0x0c, Buffer.from(v, 'utf8'))));
  return seq(...(org ? [rdn(OID.o, org)] : []), rdn(OID.cn, cn));
}
function ext(id: string, critical: boolean, value: Buffer): Buffer {
  return seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));
}
function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  // IPv6: expand '::'
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(groups.map((g) => g.padStart(4, '0')).join(''), 'hex');
}

export function generateKey(type: KeyType = 'ec'): KeyObject {
  switch (type) {
    case 'ec':
      return generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;
    case 'ec-384':
      return generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey;
    case 'rsa-1024': // tests only: the weak-key refusal
      return generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey;
    case 'rsa-3072':
      return generateKeyPairSync('rsa', { modulusLength: 3072 }).privateKey;
    case 'rsa':
    case 'rsa-2048':
      return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  }
}

export function issue(o: IssueOptions): Issued {
  const key = o.key ?? generateKey(o.keyType);
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const ski = createHash('sha1').update(spki).digest();
  const subject = name(o.cn, o.org);
  const signer = o.issuer?.keyObject ?? key;
  const issuerName = o.issuer?.subjectDer ?? subject;
  const rsa = signer.asymmetricKeyType === 'rsa';
  const sigAlg = rsa ? seq(oid(OID.rsaSha256), tlv(0x05)) : seq(oid(OID.ecdsaSha256));
  const notBefore = o.notBefore ?? new Date(Date.now() - 60_000);
  const notAfter = o.notAfter ?? new Date(Date.now() + 365 * 86_400_000);

  const exts: Buffer[] = [];
  exts.push(
    ext(
      OID.basicConstraints,
      true,
      seq(...(o.ca ? [bool(true), ...(o.pathLen !== undefined ? [int(o.pathLen)] : [])] : [])),
    ),
  );
  // keyUsage bits: digitalSignature(0) keyEncipherment(2) keyCertSign(5) cRLSign(6)
  exts.push(ext(OID.keyUsage, true, o.ca ? tlv(0x03, Buffer.from([1, 0x06])) : tlv(0x03, Buffer.from([5, 0xa0]))));
  if (o.eku) exts.push(ext(OID.extKeyUsage, false, seq(...o.eku.map((e) => oid(OID[e])))));
  const sans = [
    ...(o.dns ?? []).map((d) => tlv(0x82, Buffer.from(d, 'ascii'))),
    ...(o.ips ?? []).map((ip) => tlv(0x87, ipBytes(ip))),
  ];
  if (sans.length) exts.push(ext(OID.san, false, seq(...sans)));
  exts.push(ext(OID.ski, false, octets(ski)));
  if (o.issuer) exts.push(ext(OID.aki, false, seq(tlv(0x80, o.issuer.ski))));

  const serial = randomBytes(16);
  serial[0] = serial[0]! & 0x7f;
  const tbs = seq(
    explicit(0, int(2)),
    int(serial),
    sigAlg,
    issuerName,
    seq(time(notBefore), time(notAfter)),
    subject,
    spki,
    explicit(3, seq(...exts)),
  );
  const signature = sign('sha256', tbs, signer);
  const der = seq(tbs, sigAlg, bits(signature));
  const cert = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
  return {
    cert,
    key: key.export({ type: 'pkcs8', format: 'pem' }).toString(),
    keyObject: key,
    der,
    subjectDer: subject,
    ski,
  };
}

export function createCA(cn: string, o: Omit<IssueOptions, 'cn' | 'ca'> = {}): Issued {
  return issue({ ...o, cn, ca: true });
}
