// The admin API on its own TLS: every endpoint with and without a key, certificate
// details without any key material, SNI explanations, metrics that move.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { X509Certificate } from 'node:crypto';
import { Gateway, freePort, get, handshake, waitFor } from './helpers/gateway';
import { client, createCA, server } from './helpers/pki';

const ca = createCA('Admin Test CA');
const clientCa = createCA('Admin Test Client CA');
const adminCert = server(ca, ['localhost'], { ips: ['127.0.0.1'] });
const site = server(ca, ['site.test', '*.site.test']);
const secure = server(ca, ['secure.test']);
const svc = client(ca, 'gateway-client');
const gw = new Gateway();
let port = 0;
const KEY_ENV = 'TLSGATE_TEST_SITE_KEY';

const config = (): string => `
workers: 2
admin:
  listen: 127.0.0.1:${gw.adminPort}
  api_keys: ["$env://TLSGATE_TEST_ADMIN_KEY"]
  tls: { cert: "$file://admin.crt", key: "$file://admin.key" }
listeners: [{ name: public, listen: 127.0.0.1:${port}, default_ssl: site }]
ssls:
  - { id: site, snis: [site.test, "*.site.test"], cert: "$file://site.crt", key: "$env://${KEY_ENV}" }
  - { id: secure, snis: [secure.test], cert: "$file://secure.crt", key: "$file://secure.key", client: { ca: "$file://clients.pem" } }
  - { id: svc, type: client, cert: "$file://svc.crt", key: "$file://svc.key" }
upstreams:
  - { id: backend, scheme: https, nodes: [{ host: 127.0.0.1, port: 9, weight: 2 }], tls: { client_ssl: svc, verify: false } }
routes:
  - { id: r, paths: [/], respond: { status: 200, body: ok } }
`;

before(async () => {
  [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
  gw.write('admin.crt', adminCert.cert);
  gw.write('admin.key', adminCert.key);
  gw.write('site.crt', site.cert);
  gw.write('secure.crt', secure.cert);
  gw.write('secure.key', secure.key);
  gw.write('clients.pem', clientCa.cert);
  gw.write('svc.crt', svc.cert);
  gw.write('svc.key', svc.key);
  await gw.start(config(), { TLSGATE_TEST_ADMIN_KEY: gw.apiKey, [KEY_ENV]: site.key });
});
after(() => gw.stop());

function admin(method: string, path: string, key: string | null = gw.apiKey): Promise<{ status: number; text: string; type: string; allow?: string; fingerprint?: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port: gw.adminPort, method, path, ca: ca.cert, servername: 'localhost', headers: key ? { 'x-api-key': key } : {}, agent: false },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        const fingerprint = (res.socket as import('node:tls').TLSSocket).getPeerCertificate().fingerprint256;
        const allow = res.headers.allow;
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text, type: String(res.headers['content-type']), fingerprint, ...(allow ? { allow } : {}) }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}
const json = async (path: string): Promise<any> => JSON.parse((await admin('GET', path)).text);

const ENDPOINTS: Array<[string, string]> = [
  ['GET', '/v1/status'],
  ['GET', '/v1/ssls'],
  ['GET', '/v1/ssls/site'],
  ['GET', '/v1/sni?name=a.site.test'],
  ['GET', '/v1/upstreams'],
  ['GET', '/metrics'],
  ['POST', '/v1/reload'],
];

test('every endpoint: 401 without a key or with a wrong one, 200 with it; /healthz needs none', async () => {
  for (const [m, p] of ENDPOINTS) {
    assert.equal((await admin(m, p, null)).status, 401, `${m} ${p} without key`);
    assert.equal((await admin(m, p, gw.apiKey + 'x')).status, 401, `${m} ${p} wrong key`);
    assert.equal((await admin(m, p)).status, 200, `${m} ${p} with key`);
  }
  assert.equal((await admin('GET', '/healthz', null)).status, 200);
});

test('a wrong method is 405 with Allow; an unknown path is 404; HEAD works where GET does', async () => {
  for (const [m, p, allow] of [
    ['POST', '/v1/status', 'GET, HEAD'],
    ['GET', '/v1/reload', 'POST'],
    // PUT / DELETE exist (writes to a config store; 409 without one: test/admin-write.test.ts).
    ['POST', '/v1/ssls/site', 'DELETE, GET, HEAD, PUT'],
    ['PUT', '/metrics', 'GET, HEAD'],
  ] as const) {
    const r = await admin(m, p);
    assert.equal(r.status, 405, `${m} ${p}`);
    assert.equal(r.allow, allow, `${m} ${p}`);
    assert.equal(JSON.parse(r.text).error.code, 'TLSGATE_E_METHOD_NOT_ALLOWED');
    // Without a key: 401 first, so the endpoint list is not probed unauthenticated.
    assert.equal((await admin(m, p, null)).status, 401);
  }
  assert.equal((await admin('GET', '/v1/nothing')).status, 404);
  assert.equal((await admin('POST', '/v1/ssls/a/b')).status, 404);
  const head = await admin('HEAD', '/v1/status');
  assert.equal(head.status, 200);
  assert.equal(head.text, '');
});

test('no endpoint ever shows key material', async () => {
  const keys = [site.key, secure.key, svc.key, adminCert.key];
  // Every base64 line of every private key used here.
  const needles = keys.flatMap((k) => k.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----')));
  for (const [m, p] of [...ENDPOINTS, ['GET', '/v1/ssls/secure'] as [string, string], ['GET', '/v1/ssls/svc'] as [string, string]]) {
    const { text } = await admin(m, p);
    assert.doesNotMatch(text, /PRIVATE KEY/, `${p} shows a PEM private key marker`);
    for (const n of needles) assert.ok(!text.includes(n), `${p} shows key bytes`);
    assert.ok(!text.includes(gw.apiKey), `${p} shows the admin key`);
  }
});

test('GET /v1/ssls/:id: certificate details, mTLS, listeners and sources (reference text, never the value)', async () => {
  const s = await json('/v1/ssls/site');
  const x = new X509Certificate(site.cert);
  assert.equal(s.id, 'site');
  assert.equal(s.type, 'server');
  assert.deepEqual(s.snis, ['site.test', '*.site.test']);
  assert.equal(s.subject, 'CN=site.test');
  assert.equal(s.issuer, 'CN=Admin Test CA');
  assert.equal(s.serial, x.serialNumber);
  assert.equal(s.fingerprint_sha256, x.fingerprint256);
  assert.equal(s.key_type, 'ec');
  assert.equal(s.key_size, 256);
  assert.deepEqual(s.sans, ['DNS:site.test', 'DNS:*.site.test']);
  assert.ok(s.days_left >= 364 && s.days_left <= 366, String(s.days_left));
  assert.equal(s.mtls, false);
  assert.deepEqual(s.listeners, ['public']);
  assert.deepEqual(s.default_for, ['public']);
  assert.deepEqual(s.sources, { cert: '$file://site.crt', key: `$env://${KEY_ENV}` });

  const m = await json('/v1/ssls/secure');
  assert.equal(m.mtls, true);
  assert.equal(m.client_ca.subject, 'CN=Admin Test Client CA');
  const c = await json('/v1/ssls/svc');
  assert.equal(c.type, 'client');
  assert.deepEqual(c.listeners, []);
  assert.deepEqual(c.upstreams, ['backend']);
  assert.equal((await admin('GET', '/v1/ssls/nope')).status, 404);
  const all = await json('/v1/ssls');
  assert.deepEqual(all.ssls.map((v: { id: string }) => v.id), ['site', 'secure', 'svc']);
});

test('GET /v1/sni explains which SSL object a handshake would get and why', async () => {
  const ask = async (name: string): Promise<[string | null, string]> => {
    const r = await json(`/v1/sni?name=${encodeURIComponent(name)}`);
    return [r.listeners[0].ssl, r.listeners[0].match];
  };
  assert.deepEqual(await ask('site.test'), ['site', 'exact']);
  assert.deepEqual(await ask('Site.Test.'), ['site', 'exact']);
  assert.deepEqual(await ask('a.site.test'), ['site', 'wildcard']);
  assert.deepEqual(await ask('secure.test'), ['secure', 'exact']);
  assert.deepEqual(await ask('other.test'), ['site', 'default']);
  assert.equal((await admin('GET', '/v1/sni')).status, 400);
});

test('GET /v1/upstreams: nodes and their passive health', async () => {
  const u = await json('/v1/upstreams');
  assert.equal(u.upstreams[0].id, 'backend');
  assert.deepEqual(
    u.upstreams[0].nodes.map((n: { host: string; port: number; weight: number; healthy: boolean }) => [n.host, n.port, n.weight, n.healthy]),
    [['127.0.0.1', 9, 2, true]],
  );
});

function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(name + (labels ? `{${labels}}` : '')) && (labels || /^\S+ /.test(l)));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

test('metrics: handshakes, mTLS failures, requests, rotations, certificate expiry move as things happen', async () => {
  const before = (await admin('GET', '/metrics')).text;
  assert.match(before, /# TYPE tlsgate_handshakes_total counter/);
  const hs0 = metric(before, 'tlsgate_handshakes_total', 'listener="public"');
  const mtls0 = metric(before, 'tlsgate_handshake_failures_total', 'listener="public",reason="mtls_missing"') + metric(before, 'tlsgate_handshake_failures_total', 'listener="public",reason="mtls_invalid"');
  for (let i = 0; i < 3; i++) assert.equal((await get(port, '/', { servername: 'site.test' })).status, 200);
  await get(port, '/', { servername: 'secure.test' }).catch(() => undefined);
  const rot0 = metric(before, 'tlsgate_rotation_duration_seconds_count');
  const v0 = metric(before, 'tlsgate_snapshot_version');

  gw.write('gateway.yaml', config().replace('body: ok', 'body: ok2'));
  const after = await waitFor(async () => {
    const t = (await admin('GET', '/metrics')).text;
    return metric(t, 'tlsgate_rotation_duration_seconds_count') > rot0 ? t : undefined;
  }, 'rotation recorded');
  assert.ok(metric(after, 'tlsgate_handshakes_total', 'listener="public"') >= hs0 + 3);
  const mtls1 = metric(after, 'tlsgate_handshake_failures_total', 'listener="public",reason="mtls_missing"') + metric(after, 'tlsgate_handshake_failures_total', 'listener="public",reason="mtls_invalid"');
  assert.ok(mtls1 >= mtls0 + 1, `mTLS failures ${mtls0} → ${mtls1}`);
  assert.ok(metric(after, 'tlsgate_requests_total', 'route="r",status="200"') >= 3);
  assert.equal(metric(after, 'tlsgate_snapshot_version'), v0 + 1);
  const notAfter = metric(after, 'tlsgate_certificate_not_after_seconds', 'ssl="site"');
  assert.equal(notAfter, Math.floor(Date.parse(new X509Certificate(site.cert).validTo) / 1000));
  assert.ok((await handshake(port, { servername: 'site.test' })).ok);
});

test('the admin certificate rotates on reload: new connections get the new one', async () => {
  const next = server(ca, ['localhost'], { ips: ['127.0.0.1'] });
  assert.equal((await admin('GET', '/v1/status')).fingerprint, new X509Certificate(adminCert.cert).fingerprint256);
  gw.write('admin.key', next.key);
  gw.write('admin.crt', next.cert);
  const r = await admin('POST', '/v1/reload');
  assert.equal(r.status, 200, r.text);
  await waitFor(async () => (await admin('GET', '/v1/status')).fingerprint === new X509Certificate(next.cert).fingerprint256, 'new admin certificate');
});
