// Throw-away certificates for tests, generated at run time.
import { sign, X509Certificate } from 'node:crypto';
import { createCA, issue, type Issued, type IssueOptions } from '../../src/certs/pki';

export { createCA, issue, type Issued };

export function server(ca: Issued, dns: string[], o: Partial<IssueOptions> = {}): Issued {
  return issue({ cn: dns[0] ?? 'server', dns, eku: ['serverAuth'], issuer: ca, ...o });
}

export function client(ca: Issued, cn: string, o: Partial<IssueOptions> = {}): Issued {
  return issue({ cn, eku: ['clientAuth'], issuer: ca, ...o });
}

/** YAML block scalar for a PEM value, indented for a mapping entry at `indent` spaces. */
export function pem(value: string, indent = 6): string {
  const pad = ' '.repeat(indent);
  return '|\n' + value.trimEnd().split('\n').map((l) => pad + l).join('\n');
}

const OIDS = { ecdsaSha256: '06082a8648ce3d040302' };
function der(tag: number, body: Buffer): Buffer {
  const n = body.length;
  const len = n < 0x80 ? Buffer.from([n]) : n < 0x100 ? Buffer.from([0x81, n]) : Buffer.from([0x82, n >> 8, n & 0xff]);
  return Buffer.concat([Buffer.from([tag]), len, body]);
}
const seq = (...b: Buffer[]): Buffer => der(0x30, Buffer.concat(b));
const utc = (d: Date): Buffer => der(0x17, Buffer.from(d.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z'));

/** A v2 CRL signed by `issuer` (an EC CA) revoking the given certificates. */
export function crl(issuer: Issued, revoked: Issued[]): string {
  const alg = seq(Buffer.from(OIDS.ecdsaSha256, 'hex'));
  const now = Date.now();
  const entries = revoked.map((r) => {
    let serial = Buffer.from(new X509Certificate(r.cert).serialNumber, 'hex');
    if (serial[0]! >= 0x80) serial = Buffer.concat([Buffer.from([0]), serial]);
    return seq(der(0x02, serial), utc(new Date(now - 60_000)));
  });
  const tbs = seq(
    der(0x02, Buffer.from([1])),
    alg,
    issuer.subjectDer,
    utc(new Date(now - 60_000)),
    utc(new Date(now + 86_400_000)),
    ...(entries.length ? [seq(...entries)] : []),
  );
  const sig = sign('sha256', tbs, issuer.keyObject);
  const body = seq(tbs, alg, der(0x03, Buffer.concat([Buffer.from([0]), sig])));
  return `-----BEGIN X509 CRL-----\n${body.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END X509 CRL-----\n`;
}
