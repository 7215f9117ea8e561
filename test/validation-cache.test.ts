// The certificate validation cache kept across restarts (issue 13: start → serving): a
// verdict is reused only for the very same certificate, key and CA bytes, inside its time
// window, and with the SNI check done again; a corrupted or foreign cache file is ignored
// with a warning; no key material is ever written to it. Real validator, real files, and a
// real gateway restarted on the same config.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CertValidator } from '../src/certs/pool';
import { ValidationCache } from '../src/certs/validation-cache';
import type { ValidateInput } from '../src/certs/validate';
import { createCA, server } from './helpers/pki';
import { CLI, Gateway, freePort, handshake } from './helpers/gateway';
import { spawnSync } from 'node:child_process';

const root = mkdtempSync(join(tmpdir(), 'tlsgate-vcache-'));
after(() => rmSync(root, { recursive: true, force: true }));
const ca = createCA('Validation cache CA');

interface Logged {
  level: 'warn' | 'info';
  msg: string;
}

function cacheAt(file: string): { cache: ValidationCache; logged: Logged[] } {
  const logged: Logged[] = [];
  const cache = new ValidationCache(file, {
    warn: (_o, msg) => void logged.push({ level: 'warn', msg }),
    info: (_o, msg) => void logged.push({ level: 'info', msg }),
  });
  return { cache, logged };
}

function input(cert: string, key: string, snis: string[], now = Date.now()): ValidateInput {
  return {
    path: 'ssls[0]',
    id: 'site',
    type: 'server',
    snis,
    pairs: [{ certPath: 'ssls[0].cert', cert, keyPath: 'ssls[0].key', key }],
    warnDays: 14,
    now,
  };
}

/** A validator whose verdicts go to `file`; `run` validates and writes the file. */
async function withValidator<T>(file: string, run: (v: CertValidator, c: ValidationCache) => Promise<T>): Promise<T> {
  const v = new CertValidator(1);
  const { cache } = cacheAt(file);
  v.persist(cache);
  try {
    return await run(v, cache);
  } finally {
    v.flush();
    await v.close();
  }
}

const bodyOf = (pem: string): string => pem.split('\n').filter((l) => l && !l.startsWith('-----')).join('');

describe('validation cache', () => {
  const site = server(ca, ['site.test']);

  test('a verdict is reused after a restart for the same bytes, and never for changed ones', async () => {
    const file = join(mkdtempSync(join(root, 'reuse-')), 'cache.json');
    await withValidator(file, async (v, c) => {
      const [r] = await v.validate([input(site.cert, site.key, ['site.test'])]);
      assert.deepEqual(r!.issues, []);
      assert.equal(c.hits, 0);
    });
    assert.ok(existsSync(file), 'written');
    // "Restart": a new validator on the same file.
    await withValidator(file, async (v, c) => {
      const [r] = await v.validate([input(site.cert, site.key, ['site.test'])]);
      assert.deepEqual(r!.issues, []);
      assert.equal(c.hits, 1, 'served from the cache');
      assert.equal(r!.certs[0]!.serial, new (await import('node:crypto')).X509Certificate(site.cert).serialNumber);
      // The certificate file replaced by one for another key: the cached verdict is not used.
      const other = server(ca, ['site.test']);
      const [bad] = await v.validate([input(other.cert, site.key, ['site.test'])]);
      assert.ok(bad!.issues.some((i) => i.code === 'TLSGATE_E_CERT_KEY_MISMATCH'), JSON.stringify(bad!.issues));
      assert.equal(c.hits, 1, 'a miss');
    });
  });

  test('objects sharing one key: the key is parsed once, yet a wrong or changed key is refused by name', async () => {
    // Pool batches (64 objects each) and the in-thread cache of parsed keys: every object
    // shares `shared`'s key except #41 (another key) and #57 (a key that does not parse).
    const shared = server(ca, ['k0.test']);
    const sharedKey = (await import('node:crypto')).createPrivateKey(shared.key);
    const stranger = server(ca, ['stranger.test']);
    const n = 100;
    const inputs: ValidateInput[] = Array.from({ length: n }, (_, i) => {
      const cert = server(ca, [`k${i}.test`], { key: sharedKey }).cert;
      const key = i === 41 ? stranger.key : i === 57 ? shared.key.replace(/\n[A-Za-z0-9+/=]+\n-----END/, '\nAAAA\n-----END') : shared.key;
      return { ...input(cert, key, [`k${i}.test`]), id: `k${i}`, path: `ssls[${i}]`,
        pairs: [{ certPath: `ssls[${i}].cert`, cert, keyPath: `ssls[${i}].key`, key }] };
    });
    const file = join(mkdtempSync(join(root, 'shared-key-')), 'cache.json');
    const refused = (out: Array<{ issues: Array<{ code: string; path: string }> }>): string[][] =>
      out.flatMap((o) => o.issues.map((x) => [x.code, x.path]));
    const v = new CertValidator(2);
    v.persist(cacheAt(file).cache);
    try {
      const first = await v.validate(inputs);
      const bad = refused(first).sort((a, b) => a[1]!.localeCompare(b[1]!));
      assert.equal(bad.length, 2, JSON.stringify(bad));
      assert.deepEqual(bad[0], ['TLSGATE_E_CERT_KEY_MISMATCH', 'ssls[41].key']);
      assert.deepEqual(bad[1], ['TLSGATE_E_KEY_PARSE', 'ssls[57].key']);
      // The same certificates again, #7's key now the stranger's: its content is another
      // entry of both caches (verdicts and parsed keys), so it is checked and refused.
      const keyOf = (i: number): string => (i === 7 ? stranger.key : shared.key);
      const next = inputs.map((x, i) => ({ ...x, pairs: [{ ...x.pairs[0]!, key: keyOf(i) }] }));
      const second = await v.validate(next);
      assert.deepEqual(refused(second), [['TLSGATE_E_CERT_KEY_MISMATCH', 'ssls[7].key']]);
    } finally {
      await v.close();
    }
  });

  test('a cached verdict still checks the SNIs of the object using it', async () => {
    const file = join(mkdtempSync(join(root, 'sni-')), 'cache.json');
    await withValidator(file, async (v, c) => {
      await v.validate([input(site.cert, site.key, ['site.test'])]);
      // Same bytes, another object naming a name the certificate does not cover.
      const i = { ...input(site.cert, site.key, ['other.test']), id: 'other', path: 'ssls[1]' };
      const [r] = await v.validate([i]);
      assert.equal(c.hits, 1, 'the verdict came from the cache');
      assert.deepEqual(
        r!.issues.map((x) => [x.code, x.path]),
        [['TLSGATE_E_SNI_NOT_COVERED', 'ssls[1].snis[0]']],
      );
    });
  });

  test('a cached verdict is not used past its window (an expired certificate is refused)', async () => {
    const file = join(mkdtempSync(join(root, 'window-')), 'cache.json');
    await withValidator(file, async (v, c) => {
      const [ok] = await v.validate([input(site.cert, site.key, ['site.test'])]);
      const later = ok!.notAfter + 1000;
      const [r] = await v.validate([input(site.cert, site.key, ['site.test'], later)]);
      assert.equal(c.hits, 0);
      assert.ok(r!.issues.some((x) => x.code === 'TLSGATE_E_CERT_EXPIRED'), JSON.stringify(r!.issues));
    });
  });

  test('a corrupted cache file is ignored with a warning, then rewritten', async () => {
    const dir = mkdtempSync(join(root, 'corrupt-'));
    const file = join(dir, 'cache.json');
    for (const junk of ['{"format":1,"validator":"tlsgate-validate-1","entries":{"', 'null', '[1,2]', '\u0000\u0001']) {
      writeFileSync(file, junk, { mode: 0o600 });
      const { cache, logged } = cacheAt(file);
      cache.load();
      assert.ok(logged.some((l) => l.level === 'warn' && /corrupted/.test(l.msg)), `${JSON.stringify(junk)}: warned`);
    }
    writeFileSync(file, '{"format":1,', { mode: 0o600 });
    await withValidator(file, async (v) => {
      const [r] = await v.validate([input(site.cert, site.key, ['site.test'])]);
      assert.deepEqual(r!.issues, []);
    });
    assert.equal(JSON.parse(readFileSync(file, 'utf8')).format, 1, 'rewritten whole');
  });

  test('a cache file writable by others is ignored: a forged verdict is not used', async () => {
    const file = join(mkdtempSync(join(root, 'forged-')), 'cache.json');
    await withValidator(file, async (v) => void (await v.validate([input(site.cert, site.key, ['site.test'])])));
    chmodSync(file, 0o666);
    const { cache, logged } = cacheAt(file);
    cache.load();
    assert.ok(logged.some((l) => l.level === 'warn' && /writable by others/.test(l.msg)));
    assert.equal(cache.get('0'.repeat(64), input(site.cert, site.key, ['site.test'])), undefined);
  });

  test('no key material is ever written to the cache file', async () => {
    const file = join(mkdtempSync(join(root, 'nokey-')), 'cache.json');
    const pairs = [site, server(ca, ['a.test']), server(ca, ['b.test'], { keyType: 'rsa' })];
    await withValidator(file, async (v) => {
      await v.validate(pairs.map((p, i) => ({ ...input(p.cert, p.key, []), id: `s${i}`, path: `ssls[${i}]` })));
    });
    const text = readFileSync(file, 'utf8');
    assert.ok(!/PRIVATE KEY/.test(text));
    assert.ok(!/BEGIN/.test(text), 'no PEM at all');
    for (const p of pairs) {
      const body = bodyOf(p.key);
      for (let at = 0; at + 40 <= body.length; at += 40) {
        assert.ok(!text.includes(body.slice(at, at + 40)), 'no key bytes');
      }
    }
  });
});

describe('validation cache in a restarted gateway', () => {
  const cacheDir = mkdtempSync(join(root, 'gateway-'));
  const gw = new Gateway();
  after(() => gw.stop());

  test('a restart reuses the verdicts; a certificate changed while stopped is validated (and refused)', async () => {
    const [port, admin] = await Promise.all([freePort(), freePort()]);
    gw.adminPort = admin;
    const site = server(ca, ['site.test']);
    gw.write('site.crt', site.cert);
    gw.write('site.key', site.key);
    const config = `workers: 1
admin: { listen: 127.0.0.1:${admin}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: node }]
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
ssls:
  - { id: site, snis: [site.test], cert: "$file://site.crt", key: "$file://site.key" }
`;
    const env = { TLSGATE_CACHE_DIR: cacheDir };
    await gw.start(config, env);
    assert.equal((await handshake(port, { servername: 'site.test' })).ok, true);
    gw.proc!.kill('SIGTERM');
    assert.equal(await gw.waitExit(), 0);
    const files = readdirSync(cacheDir);
    assert.equal(files.length, 1, files.join(', '));
    const text = readFileSync(join(cacheDir, files[0]!), 'utf8');
    assert.ok(!text.includes(bodyOf(site.key).slice(0, 40)) && !/PRIVATE KEY/.test(text), 'no key in the cache');

    // While stopped, the certificate is replaced by one for another key: the start must refuse it.
    gw.write('site.crt', server(ca, ['site.test']).cert);
    const run = spawnSync(process.execPath, [CLI, 'start', '--config', gw.configPath], {
      cwd: gw.dir,
      env: { ...process.env, ...env },
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.notEqual(run.status, 0, 'refused to start');
    assert.match(run.stdout + run.stderr, /TLSGATE_E_CERT_KEY_MISMATCH/);
  });
});
