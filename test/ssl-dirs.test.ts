// A certificate directory as the source of SSL objects: every file served by the names of
// its SANs; a file added, replaced or removed is applied by the directory watcher; a bad
// file is refused on its own (naming it) while the others keep serving; a name a listed
// SSL object claims stays with it. Both engines.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, rmSync, symlinkSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { Gateway, freePort, get, handshake, waitFor } from './helpers/gateway';
import { client, createCA, issue, pem, server } from './helpers/pki';

const fp = (p: string): string => new X509Certificate(p).fingerprint256;

for (const engine of ['node', 'uws'] as const) describe(`ssl_dirs, engine ${engine}`, () => {
  const ca = createCA('Dir CA');
  const alpha = server(ca, ['alpha.test']);
  const beta = server(ca, ['beta.test', '*.beta.test']);
  const gamma = server(ca, ['gamma.test']);
  const listed = server(ca, ['shared.test']);
  const sharedToo = server(ca, ['shared.test', 'own.test']);
  const fallback = server(ca, ['fallback.test']);
  const linked = server(ca, ['linked.test']);
  const gw = new Gateway();
  const certs = join(gw.dir, 'certs');
  let port = 0;
  const SECRET = 'topsecret-shadow-line-do-not-echo';

  /** Write then rename inside the directory: the watcher sees one complete file. */
  const put = (name: string, content: string): void => {
    writeFileSync(join(certs, `.${name}.tmp`), content);
    renameSync(join(certs, `.${name}.tmp`), join(certs, name));
  };
  const servedBy = async (name: string): Promise<string | undefined> => {
    const h = await handshake(port, { servername: name });
    return h.ok ? h.cert?.fingerprint256 : undefined;
  };
  /** Every worker serves the newest version sent (one worker may serve a snapshot before the other acks it). */
  const settled = (): Promise<boolean> =>
    waitFor(async () => {
      const st = await gw.status();
      return st.workers.length === 2 && st.workers.every((w) => w.version === st.version);
    }, 'every worker at the newest version');
  const lastReload = async (): Promise<{ ok: boolean; warnings: string[]; version: number }> =>
    (await gw.admin('GET', '/v1/status')).body.last_reload;

  before(async () => {
    [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
    mkdirSync(certs);
    mkdirSync(join(gw.dir, 'outside'));
    put('alpha.crt', alpha.cert);
    put('alpha.key', alpha.key); // same basename, extension replaced (HAProxy ssl-load-extra-del-ext)
    put('beta.pem', beta.key + beta.cert); // key inside the file, before the certificate
    put('gamma.pem', gamma.cert);
    put('gamma.pem.key', gamma.key); // name + ".key" (HAProxy's default)
    put('shared.pem', sharedToo.cert + sharedToo.key);
    // A regular file outside the directory, linked in (certbot's live/ → archive/): served.
    writeFileSync(join(gw.dir, 'outside', 'linked.pem'), linked.cert + linked.key);
    symlinkSync(join(gw.dir, 'outside', 'linked.pem'), join(certs, 'linked.pem'));
    // Bad files: each refused on its own, naming it.
    put('mismatch.pem', server(ca, ['mismatch.test']).cert + server(ca, ['mismatch.test']).key);
    put('garbage.pem', '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
    const noSan = issue({ cn: 'nosan.test', eku: ['serverAuth'], issuer: ca });
    put('nosan.pem', noSan.cert + noSan.key);
    const big = server(ca, ['big.test']);
    put('big.pem', big.cert + big.key + `# ${'x'.repeat(8192)}\n`);
    writeFileSync(join(gw.dir, 'outside', 'shadow'), `root:$6$${SECRET}:19000:0:99999:7:::\n`);
    symlinkSync(join(gw.dir, 'outside', 'shadow'), join(certs, 'shadow.pem'));
    execFileSync('mkfifo', [join(certs, 'fifo.pem')]);
    // Not read at all: dotfiles, editor leftovers, other extensions.
    put('.hidden.pem', 'garbage');
    put('alpha.pem~', 'garbage');
    put('notes.txt', 'garbage');
    await gw.start(`
  workers: 2
  file_max_size: 4KiB
  admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
  listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: ${engine}, default_ssl: fallback }]
  ssls:
    - id: fallback
      snis: [fallback.test]
      cert: ${pem(fallback.cert, 8)}
      key: ${pem(fallback.key, 8)}
    - id: listed
      snis: [shared.test]
      cert: ${pem(listed.cert, 8)}
      key: ${pem(listed.key, 8)}
  ssl_dirs: [{ id: main, path: certs }]
  routes: [{ id: r, paths: [/], respond: { status: 200, body: dir } }]
  `);
  });
  after(() => gw.stop());

  test('each file is served by the names of its SANs, wildcards kept', async () => {
    assert.equal(await servedBy('alpha.test'), fp(alpha.cert));
    assert.equal(await servedBy('beta.test'), fp(beta.cert));
    assert.equal(await servedBy('x.beta.test'), fp(beta.cert));
    assert.equal(await servedBy('gamma.test'), fp(gamma.cert));
    assert.equal(await servedBy('linked.test'), fp(linked.cert));
    const r = await get(port, '/', { servername: 'alpha.test' });
    assert.equal(r.status, 200);
    assert.equal(r.body, 'dir');
  });

  test('a name a listed SSL object claims stays with it; the file serves its other names', async () => {
    assert.equal(await servedBy('shared.test'), fp(listed.cert));
    assert.equal(await servedBy('own.test'), fp(sharedToo.cert));
    const st = await lastReload();
    assert.ok(st.warnings.some((w) => w.includes('shared.pem') && w.includes('"shared.test"') &&
      w.includes('"listed"') && w.includes('TLSGATE_E_SNI_CONFLICT')), st.warnings.join('\n'));
  });

  test('bad files are refused one by one, each warning naming its file; no content is echoed', async () => {
    const st = await lastReload();
    assert.equal(st.ok, true);
    const warned = (file: string, code: string): boolean =>
      st.warnings.some((w) => w.includes(join(certs, file)) && w.includes(code) && w.includes('not served'));
    assert.ok(warned('mismatch.pem', 'TLSGATE_E_CERT_KEY_MISMATCH'), st.warnings.join('\n'));
    assert.ok(warned('garbage.pem', 'TLSGATE_E_CERT_PARSE'), st.warnings.join('\n'));
    assert.ok(warned('nosan.pem', 'TLSGATE_E_CERT_NO_SAN'), st.warnings.join('\n'));
    assert.ok(warned('big.pem', 'TLSGATE_E_SSL_DIR'), st.warnings.join('\n'));
    assert.ok(warned('shadow.pem', 'TLSGATE_E_CERT_PARSE'), st.warnings.join('\n'));
    assert.ok(warned('fifo.pem', 'TLSGATE_E_SSL_DIR'), st.warnings.join('\n'));
    for (const ignored of ['.hidden.pem', 'alpha.pem~', 'notes.txt']) {
      assert.ok(!st.warnings.some((w) => w.includes(ignored)), `${ignored} is not read`);
    }
    assert.ok(!gw.stdout.includes(SECRET) && !gw.stderr.includes(SECRET), 'the linked file content is never echoed');
    assert.ok(!JSON.stringify(st).includes('PRIVATE KEY'));
    // Refused names are not served: the default object answers them.
    assert.equal(await servedBy('mismatch.test'), fp(fallback.cert));
    assert.equal(await servedBy('big.test'), fp(fallback.cert));
  });

  test('/v1/ssls shows each directory object with its source files, never a key', async () => {
    const r = await gw.admin('GET', '/v1/ssls');
    assert.equal(r.status, 200);
    const byId = new Map<string, { snis: string[]; sources: Record<string, string> }>(
      r.body.ssls.map((s: { id: string }) => [s.id, s]),
    );
    assert.deepEqual(byId.get('dir:main:alpha.crt')?.sources, {
      cert: join(certs, 'alpha.crt'), key: join(certs, 'alpha.key'),
    });
    assert.deepEqual(byId.get('dir:main:beta.pem')?.sources, { cert: join(certs, 'beta.pem'), key: join(certs, 'beta.pem') });
    assert.deepEqual(byId.get('dir:main:beta.pem')?.snis, ['beta.test', '*.beta.test']);
    assert.equal(byId.get('dir:main:gamma.pem')?.sources.key, join(certs, 'gamma.pem.key'));
    assert.deepEqual(byId.get('dir:main:shared.pem')?.snis, ['own.test']);
    assert.equal(byId.has('dir:main:mismatch.pem'), false);
    assert.ok(!JSON.stringify(r.body).includes('PRIVATE KEY'));
    const one = await gw.admin('GET', `/v1/ssls/${encodeURIComponent('dir:main:alpha.crt')}`);
    assert.equal(one.status, 200);
    assert.equal(one.body.fingerprint_sha256, fp(alpha.cert));
  });

  test('a file added, replaced, then removed is served, re-served, then gone (no reload asked)', async () => {
    const delta = server(ca, ['delta.test']);
    put('delta.key', delta.key);
    put('delta.crt', delta.cert);
    await waitFor(async () => (await servedBy('delta.test')) === fp(delta.cert), 'added file served', 15_000);
    const delta2 = server(ca, ['delta.test']);
    put('delta.crt', delta2.cert + delta2.key); // key inside now: wins over delta.key
    await waitFor(async () => (await servedBy('delta.test')) === fp(delta2.cert), 'replaced file served', 15_000);
    await settled();
    for (let i = 0; i < 6; i++) assert.equal(await servedBy('delta.test'), fp(delta2.cert), 'every worker');
    rmSync(join(certs, 'delta.crt'));
    await waitFor(async () => (await servedBy('delta.test')) === fp(fallback.cert), 'removed file gone', 15_000);
    const r = await gw.admin('GET', '/v1/ssls');
    assert.ok(!r.body.ssls.some((s: { id: string }) => s.id === 'dir:main:delta.crt'));
  });

  test('a good file replaced by a bad one: the previous version keeps serving, the warning names the file', async () => {
    const { version } = await gw.status();
    const other = server(ca, ['alpha.test']);
    put('alpha.crt', other.cert); // alpha.key no longer matches
    const st = await waitFor(async () => {
      const s = await lastReload();
      return s.version > version || s.warnings.some((w) => w.includes('keeps serving')) ? s : undefined;
    }, 'reload after the bad file', 15_000);
    assert.ok(st.warnings.some((w) => w.includes(join(certs, 'alpha.crt')) &&
      w.includes('TLSGATE_E_CERT_KEY_MISMATCH') && w.includes('previous version keeps serving')), st.warnings.join('\n'));
    for (let i = 0; i < 4; i++) assert.equal(await servedBy('alpha.test'), fp(alpha.cert));
    assert.equal(await servedBy('beta.test'), fp(beta.cert), 'the other files keep serving');
    // The good pair again (key first, then certificate): served.
    const fixed = server(ca, ['alpha.test']);
    put('alpha.key', fixed.key);
    put('alpha.crt', fixed.cert);
    await waitFor(async () => (await servedBy('alpha.test')) === fp(fixed.cert), 'fixed pair served', 15_000);
  });
});

// Engine-independent: the client CA of a directory entry applies to each of its objects
// (node engine: uws cannot enforce mTLS), and a Kubernetes-style secret volume, whose files
// are links through `..data` and change by swapping that link, is followed.
describe('ssl_dirs: mTLS per directory, Kubernetes ..data swap', () => {
  const ca = createCA('Dir mTLS CA');
  const clientCa = createCA('Dir Client CA');
  const alice = client(clientCa, 'alice');
  const secure = server(ca, ['secure.test']);
  const k1 = server(ca, ['kube.test']);
  const k2 = server(ca, ['kube.test']);
  const gw = new Gateway();
  let port = 0;

  /** A secret volume as the kubelet writes it: ..<ts>/ dirs, ..data → one of them, tls.* → ..data/tls.*. */
  const volume = join(gw.dir, 'kube');
  const publish = (n: number, pair: { cert: string; key: string }): void => {
    const ts = `..2026_11_28_${n}`;
    mkdirSync(join(volume, ts));
    writeFileSync(join(volume, ts, 'tls.crt'), pair.cert);
    writeFileSync(join(volume, ts, 'tls.key'), pair.key);
    symlinkSync(ts, join(volume, '..data_tmp'));
    renameSync(join(volume, '..data_tmp'), join(volume, '..data'));
  };

  before(async () => {
    [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
    mkdirSync(join(gw.dir, 'secure'));
    writeFileSync(join(gw.dir, 'secure', 'secure.pem'), secure.cert + secure.key);
    writeFileSync(join(gw.dir, 'clients.pem'), clientCa.cert);
    mkdirSync(volume);
    mkdirSync(join(gw.dir, 'manual'));
    publish(1, k1);
    symlinkSync('..data/tls.crt', join(volume, 'tls.crt'));
    symlinkSync('..data/tls.key', join(volume, 'tls.key'));
    await gw.start(`
  workers: 1
  admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
  listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: node }]
  ssl_dirs:
    - { id: secure, path: secure, client: { ca: "$file://clients.pem" } }
    - { id: kube, path: kube }
    - { id: manual, path: manual, watch: false }
  routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
  `);
  });
  after(() => gw.stop());

  test('a client certificate is required on every object of the directory', async () => {
    const withCert = await get(port, '/', { servername: 'secure.test', cert: alice.cert, key: alice.key });
    assert.equal(withCert.status, 200);
    await assert.rejects(get(port, '/', { servername: 'secure.test' }));
    const r = await gw.admin('GET', `/v1/ssls/${encodeURIComponent('dir:secure:secure.pem')}`);
    assert.equal(r.body.mtls, true);
  });

  test('a ..data swap serves the new pair', async () => {
    assert.equal((await handshake(port, { servername: 'kube.test' })).cert?.fingerprint256, fp(k1.cert));
    publish(2, k2);
    await waitFor(async () => (await handshake(port, { servername: 'kube.test' })).cert?.fingerprint256 === fp(k2.cert),
      'the swapped pair served', 15_000);
    const r = await gw.admin('GET', `/v1/ssls/${encodeURIComponent('dir:kube:tls.crt')}`);
    assert.deepEqual(r.body.sources, { cert: join(volume, 'tls.crt'), key: join(volume, 'tls.key') });
  });

  test('watch: false: a file added is applied by POST /v1/reload', async () => {
    const m = server(ca, ['manual.test']);
    writeFileSync(join(gw.dir, 'manual', 'manual.pem'), m.cert + m.key);
    const r = await gw.admin('POST', '/v1/reload');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal((await handshake(port, { servername: 'manual.test' })).cert?.fingerprint256, fp(m.cert));
  });
});
