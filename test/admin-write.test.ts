// Admin API writes into etcd: validation before anything is written, If-Match, deletes that
// would leave a reference dangling, and the read-only answer without a config store; the
// CLI side: validate refuses a file that lists stored collections, push copies a file.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CLI, Gateway, freePort, handshake, waitFor } from './helpers/gateway';
import { Etcd, storeBlock } from './helpers/etcd';
import { client, createCA, server } from './helpers/pki';
import { adminWrite } from './helpers/store-admin';

const ca = createCA('Write Test CA');
const site = server(ca, ['site.test']);
const web = server(ca, ['web.test']);
const other = server(ca, ['other.test']);
const svc = client(ca, 'svc');
let etcd: Etcd;
const VIEWER_KEY = 'viewer-key-5f1e0c9a7b';
const EDITOR_KEY = 'editor-key-2d8b4e6c1a';
const gw = new Gateway('tlsgate-write-');
const plain = new Gateway('tlsgate-write-file-');
let port = 0;

before(async () => {
  etcd = await Etcd.start();
  await etcd.put('/tlsgate/ssls/site', { snis: ['site.test'], cert: site.cert, key: site.key });
  await etcd.put('/tlsgate/ssls/svc', { type: 'client', cert: svc.cert, key: svc.key });
  await etcd.put('/tlsgate/upstreams/backend', {
    scheme: 'https',
    nodes: [{ host: '127.0.0.1', port: 9 }],
    tls: { client_ssl: 'svc', verify: false },
  });
  await etcd.put('/tlsgate/routes/api', { paths: ['/api'], upstream: 'backend' });
  [port, gw.adminPort, plain.adminPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const plainPort = await freePort();
  await Promise.all([
    gw.start(`
workers: 1
admin:
  listen: 127.0.0.1:${gw.adminPort}
  api_keys:
    - "${gw.apiKey}"
    - { key: "${VIEWER_KEY}", role: viewer, id: watcher }
    - { key: "${EDITOR_KEY}", role: editor, id: ci-bot }
audit: { path: audit.jsonl }
listeners: [{ name: public, listen: 127.0.0.1:${port}, default_ssl: site }]
${storeBlock(etcd, gw.dir)}
`),
    plain.start(`
workers: 1
admin: { listen: 127.0.0.1:${plain.adminPort}, api_keys: ["${plain.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${plainPort} }]
routes: [{ id: r, respond: { body: ok } }]
`),
  ]);
});

after(async () => {
  await Promise.all([gw.stop(), plain.stop()]);
  await etcd?.close();
});

const put = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  adminWrite(gw.adminPort, gw.apiKey, 'PUT', path, body, headers);
const del = (path: string, headers: Record<string, string> = {}) =>
  adminWrite(gw.adminPort, gw.apiKey, 'DELETE', path, undefined, headers);

test('PUT validates before writing: a key not the certificate’s → 400 with issues, nothing in etcd', async () => {
  const r = await put('/v1/ssls/web', { snis: ['web.test'], cert: web.cert, key: other.key });
  assert.equal(r.status, 400);
  assert.equal(r.body.error.code, 'TLSGATE_E_CERT_KEY_MISMATCH');
  assert.ok(
    r.body.error.issues.some((i: { path: string }) => i.path === 'ssls/web.key'),
    JSON.stringify(r.body),
  );
  assert.ok(!JSON.stringify(r.body).includes('PRIVATE KEY'));
  assert.equal(await etcd.get('/tlsgate/ssls/web'), undefined);
});

test('PUT refusals: a claimed SNI, an unknown upstream, an unresolved reference, a bad id', async () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['/v1/ssls/web', { snis: ['site.test'], cert: site.cert, key: site.key }, /TLSGATE_E_SNI_CONFLICT/],
    ['/v1/routes/x', { paths: ['/x'], upstream: 'nope' }, /TLSGATE_E_REF_UNKNOWN/],
    ['/v1/ssls/web', { snis: ['web.test'], cert: '$file://missing.crt', key: web.key }, /TLSGATE_E_SECRET_UNRESOLVED/],
    ['/v1/routes/x', { paths: ['x'], respond: { body: 'x' } }, /TLSGATE_E_CONFIG_INVALID/],
    ['/v1/upstreams/u', { nodes: [] }, /TLSGATE_E_CONFIG_INVALID/],
  ];
  for (const [path, body, code] of cases) {
    const r = await put(path, body);
    assert.equal(r.status, 400, `${path}: ${JSON.stringify(r.body)}`);
    assert.match(JSON.stringify(r.body.error), code);
    assert.ok(Array.isArray(r.body.error.issues) && r.body.error.issues.length > 0);
  }
  assert.equal((await put('/v1/routes/bad%2Fid', { respond: { body: 'x' } })).status, 400);
  assert.equal((await put('/v1/routes/x', '{broken')).status, 400);
  const differ = await put('/v1/routes/x', { id: 'y', respond: { body: 'x' } });
  assert.equal(differ.status, 400);
  assert.match(differ.body.error.message, /differs from the URL/);
  assert.equal(await etcd.get('/tlsgate/routes/x'), undefined);
  assert.equal(await etcd.get('/tlsgate/ssls/web'), undefined);
});

test('PUT creates (201), If-Match updates (200), a stale If-Match or a concurrent write → 412', async () => {
  const c = await put('/v1/ssls/web', { snis: ['web.test'], cert: web.cert, key: web.key });
  assert.equal(c.status, 201, JSON.stringify(c.body));
  assert.equal(c.body.object.id, 'web');
  assert.equal(c.body.object.key, '<redacted>');
  await waitFor(
    async () =>
      (await handshake(port, { servername: 'web.test' })).cert?.fingerprint256 ===
      new X509Certificate(web.cert).fingerprint256,
    'web.test served',
  );
  const first = c.etag!;
  const u = await put(
    '/v1/ssls/web',
    { snis: ['web.test'], cert: web.cert, key: web.key, status: 'enabled' },
    { 'if-match': first },
  );
  assert.equal(u.status, 200, JSON.stringify(u.body));
  assert.notEqual(u.etag, first);
  const stale = await put('/v1/ssls/web', { snis: ['web.test'], cert: web.cert, key: web.key }, { 'if-match': first });
  assert.equal(stale.status, 412);
  assert.equal(stale.body.error.code, 'TLSGATE_E_STORE_CONFLICT');
  assert.equal(stale.etag, u.etag);
  // Written around the API meanwhile: a PUT based on the older revision does not overwrite it.
  await etcd.put('/tlsgate/ssls/web', { snis: ['web.test'], cert: web.cert, key: web.key, ssl_protocols: ['TLSv1.3'] });
  const lost = await put('/v1/ssls/web', { snis: ['web.test'], cert: web.cert, key: web.key }, { 'if-match': u.etag! });
  assert.equal(lost.status, 412);
  assert.match((await etcd.get('/tlsgate/ssls/web')) ?? '', /TLSv1\.3/);
  assert.equal((await put('/v1/ssls/web', {}, { 'if-match': '*' })).status, 400);
});

test('DELETE: 404 unknown, 409 with the referrers, 200 and gone otherwise', async () => {
  const missing = await del('/v1/ssls/nope');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.code, 'TLSGATE_E_STORE_NOT_FOUND');
  const refs: Array<[string, string]> = [
    ['/v1/ssls/site', 'listeners/public.default_ssl'],
    ['/v1/ssls/svc', 'upstreams/backend.tls.client_ssl'],
    ['/v1/upstreams/backend', 'routes/api.upstream'],
  ];
  for (const [path, who] of refs) {
    const r = await del(path);
    assert.equal(r.status, 409, `${path}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.error.code, 'TLSGATE_E_STORE_REFERENCED');
    assert.match(r.body.error.message, new RegExp(who.replace(/\./g, '\\.')));
    assert.ok(r.body.error.referrers.length > 0);
  }
  assert.notEqual(await etcd.get('/tlsgate/ssls/site'), undefined);
  const web1 = await etcd.ctl('get', '/tlsgate/ssls/web', '-w', 'json');
  const rev = (JSON.parse(web1) as { kvs: Array<{ mod_revision: number }> }).kvs[0]!.mod_revision;
  assert.equal((await del('/v1/ssls/web', { 'if-match': String(rev - 1) })).status, 412);
  const ok = await del('/v1/ssls/web', { 'if-match': `"${rev}"` });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(await etcd.get('/tlsgate/ssls/web'), undefined);
  await waitFor(
    async () =>
      (await handshake(port, { servername: 'web.test' })).cert?.fingerprint256 ===
      new X509Certificate(site.cert).fingerprint256,
    'web.test falls back to default_ssl',
  );
  // A route deletes freely (nothing references a route).
  assert.equal((await put('/v1/routes/gone', { paths: ['/gone'], respond: { body: 'g' } })).status, 201);
  assert.equal((await del('/v1/routes/gone')).status, 200);
});

test('without config_store the Admin API is read-only: writes answer 409 saying how to enable them', async () => {
  for (const [method, body] of [
    ['PUT', { respond: { body: 'x' } }],
    ['DELETE', undefined],
  ] as const) {
    const r = await adminWrite(plain.adminPort, plain.apiKey, method, '/v1/routes/r', body);
    assert.equal(r.status, 409);
    assert.equal(r.body.error.code, 'TLSGATE_E_STORE_READ_ONLY');
    assert.match(r.body.error.message, /config_store\.etcd/);
  }
  // No key: still 401 before anything else.
  const anon = await adminWrite(plain.adminPort, 'wrong', 'PUT', '/v1/routes/r', {});
  assert.equal(anon.status, 401);
});

function cli(...args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000 }, (e, out, err) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out, err }),
    );
  });
}

test('validate: a config_store file may not list stored collections; with the store it validates', async () => {
  const listed = join(gw.dir, 'listed.yaml');
  writeFileSync(
    listed,
    `${storeBlock(etcd, gw.dir)}
listeners: [{ name: public, listen: 127.0.0.1:1 }]
routes: [{ id: r, respond: { body: ok } }]
`,
  );
  const bad = await cli('validate', '--config', listed);
  assert.equal(bad.code, 1);
  assert.match(bad.err, /routes: .*live in the store, not in the file.*TLSGATE_E_STORE_COLLECTION/);
  const good = await cli('validate', '--config', gw.configPath);
  assert.equal(good.code, 0, good.err);
  assert.match(good.out, /valid/);
});

test('push: a file’s objects are validated, then copied into etcd', async () => {
  const prefix = '/pushed';
  const node = join(gw.dir, 'node.yaml');
  writeFileSync(
    node,
    `${storeBlock(etcd, gw.dir).replace('    tls:', `    prefix: ${prefix}\n    tls:`)}
listeners: [{ name: public, listen: 127.0.0.1:1 }]
`,
  );
  const old = join(gw.dir, 'old.yaml');
  writeFileSync(join(gw.dir, 'other.crt'), other.cert);
  writeFileSync(join(gw.dir, 'other.key'), other.key);
  writeFileSync(
    old,
    `
listeners: [{ name: public, listen: 127.0.0.1:1, default_ssl: other }]
ssls: [{ id: other, snis: [other.test], cert: $file://other.crt, key: $file://other.key }]
routes: [{ id: r, respond: { body: ok } }]
`,
  );
  const broken = join(gw.dir, 'broken.yaml');
  writeFileSync(
    broken,
    `
listeners: [{ name: public, listen: 127.0.0.1:1 }]
ssls: [{ id: other, snis: [other.test], cert: $file://other.crt, key: $file://missing.key }]
`,
  );
  const refused = await cli('push', '--config', broken, '--store', node);
  assert.equal(refused.code, 1);
  assert.equal(await etcd.get(`${prefix}/ssls/other`), undefined);
  const r = await cli('push', '--config', old, '--store', node);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /pushed 1 ssls, 0 upstreams, 1 routes, 0 secret_providers/);
  const stored = JSON.parse((await etcd.get(`${prefix}/ssls/other`))!) as { id: string; key: string };
  assert.equal(stored.id, 'other');
  assert.equal(stored.key, '$file://other.key');
  assert.equal((await cli('push', '--config', old)).code, 2);
});

test('writes need an editor key and are audited with its id and content hashes, never a key', async () => {
  const route = { paths: ['/audited'], respond: { body: 'audited' } };
  const viewer = await adminWrite(gw.adminPort, VIEWER_KEY, 'PUT', '/v1/routes/audited', route);
  assert.equal(viewer.status, 403, JSON.stringify(viewer.body));
  assert.equal(await etcd.get('/tlsgate/routes/audited'), undefined);
  const created = await adminWrite(gw.adminPort, EDITOR_KEY, 'PUT', '/v1/routes/audited', route);
  assert.equal(created.status, 201, JSON.stringify(created.body));
  const deleted = await adminWrite(gw.adminPort, EDITOR_KEY, 'DELETE', '/v1/routes/audited');
  assert.equal(deleted.status, 200, JSON.stringify(deleted.body));
  // A literal key in a PUT: only a hash of it may reach the audit log.
  const withKey = await adminWrite(gw.adminPort, EDITOR_KEY, 'PUT', '/v1/ssls/web', {
    snis: ['web.test'], cert: web.cert, key: web.key,
  });
  assert.equal(withKey.status, 201, JSON.stringify(withKey.body));
  type Entry = { action: string; key_id: string; method: string; object: string; id?: string; status: number;
    before: string | null; after: string | null; revision?: number };
  const file = join(gw.dir, 'audit.jsonl');
  let entries: Entry[] = [];
  await waitFor(async () => {
    entries = (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean)
      .map((l) => JSON.parse(l) as Entry).filter((e) => e.action === 'write');
    return entries.some((e) => e.object === 'ssls' && e.id === 'web' && e.status === 201);
  }, 'the audit log records the writes');
  // Earlier tests wrote other routes with the admin key: this test's entries are the 'audited' ones.
  const find = (method: string, object: string, status: number) =>
    entries.find((e) => e.method === method && e.object === object && e.status === status && e.id === 'audited');
  const denied = find('PUT', 'routes', 403);
  assert.equal(denied?.key_id, 'watcher');
  const put = find('PUT', 'routes', 201);
  assert.equal(put?.key_id, 'ci-bot');
  assert.equal(put?.id, 'audited');
  assert.equal(put?.before, null);
  assert.match(put?.after ?? '', /^sha256:[0-9a-f]{64}$/);
  assert.equal(put?.revision, created.body.mod_revision);
  const gone = find('DELETE', 'routes', 200);
  assert.equal(gone?.before, put?.after, 'the DELETE starts from what the PUT stored');
  assert.equal(gone?.after, null);
  const text = await readFile(file, 'utf8');
  for (const secret of [EDITOR_KEY, VIEWER_KEY, gw.apiKey, 'PRIVATE KEY', web.key.split('\n')[1]!]) {
    assert.ok(!text.includes(secret), 'the audit log holds no key material');
  }
});
