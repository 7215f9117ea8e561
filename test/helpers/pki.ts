// Throw-away certificates for tests, generated at run time.
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
