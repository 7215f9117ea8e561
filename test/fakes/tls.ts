// Throw-away certificates for the fake secret managers, made at run time.
import { createCA, issue, type Issued } from '../../src/certs/pki';

export interface ServerTls {
  /** PEM of the CA that signed `cert`: what a client trusts. */
  ca: string;
  cert: string;
  key: string;
  authority: Issued;
}

export function serverTls(names: { dns?: string[]; ips?: string[] } = {}): ServerTls {
  const authority = createCA('tlsgate test secret-manager CA');
  const leaf = issue({
    cn: names.dns?.[0] ?? 'localhost',
    dns: names.dns ?? ['localhost'],
    ips: names.ips ?? ['127.0.0.1'],
    eku: ['serverAuth'],
    issuer: authority,
  });
  return { ca: authority.cert, cert: leaf.cert, key: leaf.key, authority };
}

