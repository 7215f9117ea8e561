// Dev material for the embedded default config: a CA, a certificate for localhost
// and *.localhost, and a random admin API key, made once in a git-ignored directory.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createCA, issue } from './pki';

export function ensureDevMaterial(dir: string): { created: boolean; dir: string } {
  if (existsSync(join(dir, 'localhost.crt')) && existsSync(join(dir, 'admin-api-key'))) return { created: false, dir };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const ca = createCA('tlsgate dev CA', { org: 'tlsgate dev', notAfter: new Date(Date.now() + 5 * 365 * 86_400_000) });
  const leaf = issue({ cn: 'localhost', dns: ['localhost', '*.localhost'], ips: ['127.0.0.1', '::1'], eku: ['serverAuth'], issuer: ca });
  writeFileSync(join(dir, 'ca.crt'), ca.cert);
  writeFileSync(join(dir, 'ca.key'), ca.key, { mode: 0o600 });
  writeFileSync(join(dir, 'localhost.crt'), leaf.cert + ca.cert);
  writeFileSync(join(dir, 'localhost.key'), leaf.key, { mode: 0o600 });
  writeFileSync(join(dir, 'admin-api-key'), randomBytes(24).toString('base64url'), { mode: 0o600 });
  return { created: true, dir };
}
