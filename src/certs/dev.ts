// Dev material for configs laid out like config/gateway.yaml: a CA, a certificate for
// localhost and *.localhost, and a random admin API key, in the `dev/` directory next to
// the config. A config asks for it by referencing one of DEV_FILES as `$file://dev/<name>`;
// only missing files are made, so a copy of the default config starts anywhere.
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join, normalize } from 'node:path';
import { parse } from 'yaml';
import { createCA, issue } from './pki';

export const DEV_FILES = ['ca.crt', 'localhost.crt', 'localhost.key', 'admin-api-key'] as const;

/**
 * The `dev/` directory a config's text asks for, or null (none referenced, or not YAML: validation
 * reports that). `data`: the text's YAML as plain data when the caller already has it (undefined: not YAML).
 */
export function devDirRequested(configFile: string, text: string, data?: () => unknown): string | null {
  // No `dev/` in the text, no reference to it: skip the YAML parse (≈ 1 s for a 10k-object
  // config, profiled).
  if (!text.includes('dev/')) return null;
  let doc: unknown;
  try {
    doc = data ? data() : parse(text);
  } catch {
    return null;
  }
  const wanted = new Set<string>(DEV_FILES.map((f) => `dev/${f}`));
  const stack: unknown[] = [doc];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (!v.startsWith('$file://')) continue;
      const path = v.slice('$file://'.length);
      if (!isAbsolute(path) && wanted.has(normalize(path))) return join(dirname(configFile), 'dev');
    } else if (v !== null && typeof v === 'object') {
      stack.push(...Object.values(v as Record<string, unknown>));
    }
  }
  return null;
}

/** Make the missing dev files in `dir`: the CA and localhost pair together, the admin key alone. */
export function ensureDevMaterial(dir: string): { created: boolean; dir: string } {
  const has = (f: string): boolean => existsSync(join(dir, f));
  const pki = !has('ca.crt') || !has('localhost.crt') || !has('localhost.key');
  const key = !has('admin-api-key');
  if (!pki && !key) return { created: false, dir };
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (pki) {
    const notAfter = new Date(Date.now() + 5 * 365 * 86_400_000); // 5 years
    const ca = createCA('tlsgate dev CA', { org: 'tlsgate dev', notAfter });
    const dns = ['localhost', '*.localhost'];
    const leaf = issue({ cn: 'localhost', dns, ips: ['127.0.0.1', '::1'], eku: ['serverAuth'], issuer: ca });
    writeFileSync(join(dir, 'ca.crt'), ca.cert);
    writeFileSync(join(dir, 'ca.key'), ca.key, { mode: 0o600 });
    writeFileSync(join(dir, 'localhost.crt'), leaf.cert + ca.cert);
    writeFileSync(join(dir, 'localhost.key'), leaf.key, { mode: 0o600 });
  }
  if (key) writeFileSync(join(dir, 'admin-api-key'), randomBytes(24).toString('base64url'), { mode: 0o600 });
  return { created: true, dir };
}
