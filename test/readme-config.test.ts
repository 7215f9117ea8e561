// The README's "Config reference" block is what a new user copies: it must itself pass
// `tlsgate validate`. The test extracts it, writes a certificate, key or token for every
// `$file://` and `$env://` reference it names (chosen by where the reference sits, so
// fields added to the block later are covered), and runs the real CLI on it. It also checks
// the block is a complete reference: every field the schema knows at each level appears.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parse } from 'yaml';
import { CLI, ROOT } from './helpers/gateway';
import { createCA, crl, issue, type Issued } from './helpers/pki';

const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The first ```yaml block after `heading`. */
function yamlBlockAfter(heading: string): string {
  const at = README.indexOf(`\n${heading}\n`);
  assert.ok(at >= 0, `README has no "${heading}" heading`);
  const m = /```yaml\n([\s\S]*?)```/.exec(README.slice(at));
  assert.ok(m, `no yaml block under "${heading}"`);
  return m[1]!;
}

type Path = Array<string | number>;

/** Every string value in `doc` with the path that leads to it. */
function strings(doc: unknown, path: Path = []): Array<{ path: Path; value: string }> {
  if (typeof doc === 'string') return [{ path, value: doc }];
  if (Array.isArray(doc)) return doc.flatMap((v, i) => strings(v, [...path, i]));
  if (doc !== null && typeof doc === 'object') return Object.entries(doc).flatMap(([k, v]) => strings(v, [...path, k]));
  return [];
}

interface Fixture {
  dir: string;
  env: Record<string, string>;
  /** Reference text → what it was given (for messages). */
  given: Map<string, string>;
}

/** Files and variables for every reference in `doc`, by the field it sits in. */
function satisfy(doc: Record<string, unknown>, dir: string): Fixture {
  const ca = createCA('README reference CA');
  const pairs = new Map<string, Issued>();
  /** One pair per owner (an SSL object, its extra pair j, the admin listener, a provider's client). */
  const pairFor = (owner: string, make: () => Issued): Issued => {
    let p = pairs.get(owner);
    if (!p) pairs.set(owner, (p = make()));
    return p;
  };
  const ssls = (Array.isArray(doc.ssls) ? doc.ssls : []) as Array<Record<string, unknown>>;
  const sslPair = (i: number, extra?: number): Issued =>
    pairFor(`ssl ${i} ${extra ?? ''}`, () => {
      const s = ssls[i] ?? {};
      const client = s.type === 'client';
      const dns = Array.isArray(s.snis) ? (s.snis as string[]) : [];
      return issue({
        cn: dns[0] ?? String(s.id ?? 'client'),
        dns: client ? [] : dns,
        eku: [client ? 'clientAuth' : 'serverAuth'],
        issuer: ca,
        // Extra pairs are the other key type (RSA beside the primary ECDSA pair).
        keyType: extra === undefined ? 'ec' : 'rsa',
      });
    });
  const adminPair = (): Issued =>
    pairFor('admin', () =>
      issue({ cn: 'admin', dns: ['localhost'], ips: ['127.0.0.1'], eku: ['serverAuth'], issuer: ca }),
    );
  const clientPair = (owner: string): Issued =>
    pairFor(owner, () => issue({ cn: owner, eku: ['clientAuth'], issuer: ca }));

  const content = (p: Path): string => {
    const [top, i, field, j] = p;
    const leaf = p[p.length - 1];
    if (top === 'ssls' && typeof i === 'number') {
      if (field === 'cert') return sslPair(i).cert + ca.cert;
      if (field === 'key') return sslPair(i).key;
      if (field === 'certs' && typeof j === 'number') return sslPair(i, j).cert + ca.cert;
      if (field === 'keys' && typeof j === 'number') return sslPair(i, j).key;
      if (field === 'client' && j === 'ca') return ca.cert;
      if (field === 'client' && j === 'crl') return crl(ca, []);
    }
    if (top === 'admin' && i === 'tls') return field === 'key' ? adminPair().key : adminPair().cert + ca.cert;
    if (leaf === 'ca') return ca.cert;
    // A client pair for a secret provider's own TLS (tls.cert / tls.key).
    if (top === 'secret_providers' && field === 'tls' && (j === 'cert' || j === 'key')) {
      const pair = clientPair(`provider ${String(i)}`);
      return j === 'key' ? pair.key : pair.cert + ca.cert;
    }
    return randomBytes(18).toString('base64url'); // a token, a password, an API key
  };

  const fx: Fixture = { dir, env: {}, given: new Map() };
  for (const { path, value } of strings(doc)) {
    const file = /^\$file:\/\/(.+)$/.exec(value);
    const env = /^\$env:\/\/([A-Za-z_][A-Za-z0-9_]*)$/.exec(value);
    if (!file && !env) continue;
    const text = content(path);
    if (file) {
      const target = join(dir, file[1]!);
      mkdirSync(dirname(target), { recursive: true });
      writeFileSync(target, text, { mode: 0o600 });
    } else {
      fx.env[env![1]!] = text;
    }
    fx.given.set(value, path.join('.'));
  }
  return fx;
}

function validate(file: string, env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    const opts = { env: { ...process.env, ...env }, timeout: 30_000 };
    execFile(process.execPath, [CLI, 'validate', '--config', file], opts, (err, stdout, stderr) => {
      const exit = (err as { code?: unknown } | null)?.code;
      resolve({ code: err ? (typeof exit === 'number' ? exit : -1) : 0, out: stdout + stderr });
    });
  });
}

describe('README config reference', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tlsgate-readme-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  // The main block, then the secret providers' block (audit, secret_providers) on top of it.
  const main = yamlBlockAfter('## Config reference');
  const providers = yamlBlockAfter('### Secret providers');
  const block = `${main}\n${providers}`;
  const doc = parse(block) as Record<string, unknown>;

  test('the two blocks do not set the same top-level field', () => {
    const a = Object.keys(parse(main) as object);
    assert.deepEqual(Object.keys(parse(providers) as object).filter((k) => a.includes(k)), []);
  });

  test('the block passes validate, with a file or variable for each reference it names', async () => {
    const fx = satisfy(doc, dir);
    assert.ok([...fx.given.keys()].some((r) => r.startsWith('$file://')), 'the block shows $file:// references');
    assert.ok([...fx.given.keys()].some((r) => r.startsWith('$env://')), 'the block shows $env:// references');
    const file = join(dir, 'gateway.yaml');
    writeFileSync(file, block);
    const r = await validate(file, fx.env);
    assert.equal(r.code, 0, `${r.out}\nreferences given: ${JSON.stringify(Object.fromEntries(fx.given))}`);
    assert.match(r.out, /valid — \d+ listener\(s\), \d+ ssl\(s\)/);
  });

  // The schema lists the fields it knows when it meets an unknown one: each must be in the block.
  test('the block shows every field the schema knows, at each level', async () => {
    const probe = (o: unknown): Record<string, unknown> => ({ ...(o as Record<string, unknown>), zz_unknown: 1 });
    type Obj = Record<string, unknown>;
    const list = (k: string): Obj[] => (Array.isArray(doc[k]) ? (doc[k] as Obj[]) : []);
    const levels: Array<{ where: string; at: RegExp; have: Obj; config: Obj }> = [
      { where: 'top level', at: /^error: zz_unknown: /m, have: doc, config: probe(doc) },
      { where: 'admin', at: /admin\.zz_unknown/, have: doc.admin as Obj, config: { ...doc, admin: probe(doc.admin) } },
      ...(['listeners', 'ssls', 'upstreams', 'routes'] as const).map((k) => ({
        where: `${k}[]`,
        at: new RegExp(`${k}\\[0\\]\\.zz_unknown`),
        // Union over the block's objects: a field may be shown on any of them.
        have: Object.assign({}, ...list(k)) as Obj,
        config: { ...doc, [k]: [probe(list(k)[0]), ...list(k).slice(1)] },
      })),
      // Each provider type has its own fields: probe one provider of each type.
      ...list('secret_providers').map((p, i) => ({
        where: `secret_providers[] (type ${String(p.type)})`,
        at: new RegExp(`secret_providers\\[${i}\\]\\.zz_unknown`),
        have: Object.assign({}, ...list('secret_providers')) as Obj, // common fields may be shown on one type only
        config: { ...doc, secret_providers: list('secret_providers').map((q, j) => (j === i ? probe(q) : q)) },
      })),
    ];
    const fx = satisfy(doc, dir);
    const missing: string[] = [];
    for (const l of levels) {
      const file = join(dir, `probe-${l.where.replace(/\W/g, '')}.yaml`);
      writeFileSync(file, JSON.stringify(l.config));
      const r = await validate(file, fx.env);
      const line = r.out.split('\n').find((x) => l.at.test(x));
      const known = line ? /(?:expected one of|allowed): ([^)]+)\)/.exec(line) : null;
      assert.ok(known, `${l.where}: validate names the known fields of an unknown one (got: ${r.out.slice(0, 500)})`);
      // config_store excludes the file's ssls/upstreams/routes/secret_providers: README "Config store (etcd)" shows it.
      const elsewhere = l.where === 'top level' ? ['config_store'] : [];
      for (const k of known[1]!.split(',').map((s) => s.trim()))
        if (!(k in l.have) && !elsewhere.includes(k)) missing.push(`${l.where}: ${k}`);
    }
    assert.deepEqual(missing, [], 'fields the README reference block does not show');
  });
});
