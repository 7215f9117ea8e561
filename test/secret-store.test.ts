// The built-in secret store on a real etcd (TLS, client certificates): a key PUT once through
// the Admin API serves handshakes on two nodes as `$secret://local/<id>`; the value is never
// read back, logged or stored in clear; a record tampered with, copied under another id or
// sealed with another key is refused alone (the last good value keeps serving); KEK rotation
// (rewrap) then removal of the old key still serves.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createCipheriv, createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CLI, Gateway, freePort, get, handshake, waitFor } from './helpers/gateway';
import { Etcd, storeBlock } from './helpers/etcd';
import { createCA, server } from './helpers/pki';
import { adminWrite } from './helpers/store-admin';

const ca = createCA('Secret Store Test CA');
const site = server(ca, ['site.test']);
const web = server(ca, ['web.test']);
// Same key, new certificate: a rotation of the certificate secret alone.
const web2 = server(ca, ['web.test'], { key: createPrivateKey(web.key) });
const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;
// A line from the middle of the PEM body: what a leak would print.
const keyBody = web.key.split('\n')[3]!;

const K1 = randomBytes(32).toString('base64');
const K2 = randomBytes(32).toString('hex');
const VIEWER = 'viewer-key-9a1b2c3d4e';
const EDITOR = 'editor-key-5f6a7b8c9d';

let etcd: Etcd;
const a = new Gateway('tlsgate-sec-a-');
const b = new Gateway('tlsgate-sec-b-');
const c = new Gateway('tlsgate-sec-c-');
const d = new Gateway('tlsgate-sec-d-');
const ports = { a: 0, b: 0, c: 0, d: 0 };

function config(gw: Gateway, port: number, engine: 'node' | 'uws', keys: string, active: string): string {
  gw.write('k2.hex', K2 + '\n');
  return `
workers: 1
admin:
  listen: 127.0.0.1:${gw.adminPort}
  api_keys:
    - "${gw.apiKey}"
    - { key: "${VIEWER}", role: viewer, id: watcher }
    - { key: "${EDITOR}", role: editor, id: ci-bot }
audit: { path: audit.jsonl }
listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: ${engine}, default_ssl: site }]
${storeBlock(etcd, gw.dir)}
    secrets:
      keys: [${keys}]
      active: ${active}
`;
}
const KEY1 = '{ id: k1, key: "$env://TLSGATE_TEST_KEK" }';
const KEY2 = '{ id: k2, key: "$file://k2.hex" }';

const serves = async (port: number, sni: string, cert: string): Promise<boolean> => {
  const h = await handshake(port, { servername: sni });
  return h.ok && h.cert?.fingerprint256 === fp(cert);
};
const putSecret = (gw: Gateway, id: string, value: string, key = gw.apiKey) =>
  adminWrite(gw.adminPort, key, 'PUT', `/v1/secrets/${id}`, { value });
const storeErrors = async (gw: Gateway): Promise<Map<string, string>> => {
  const s = (await gw.admin('GET', '/v1/status')).body.store;
  return new Map(s.errors.map((e: { key: string; message: string }) => [e.key, e.message]));
};

before(async () => {
  etcd = await Etcd.start();
  await etcd.put('/tlsgate/ssls/site', { snis: ['site.test'], cert: site.cert, key: site.key });
  [ports.a, ports.b, ports.c, ports.d] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  [a.adminPort, b.adminPort, c.adminPort, d.adminPort] = await Promise.all([
    freePort(), freePort(), freePort(), freePort(),
  ]);
  const env = { TLSGATE_TEST_KEK: K1 };
  await Promise.all([
    a.start(config(a, ports.a, 'node', KEY1, 'k1'), env),
    b.start(config(b, ports.b, 'uws', KEY1, 'k1'), env),
  ]);
});

after(async () => {
  if (process.env.TLSGATE_TEST_DEBUG) for (const g of [a, b, c, d]) console.log(g.stderr, g.stdout.slice(-6000));
  await Promise.all([a.stop(), b.stop(), c.stop(), d.stop()]);
  await etcd?.close();
});

test('PUT a key and a certificate as secrets, then an SSL object using them: both nodes serve it', async () => {
  const k = await putSecret(a, 'web-key', web.key);
  assert.equal(k.status, 201, JSON.stringify(k.body));
  assert.equal(k.body.kek, 'k1');
  assert.match(k.body.sha256_prefix, /^[0-9a-f]{12}$/);
  // The PEM as the body itself (not JSON): what `curl --data-binary @web.crt` sends.
  const res = await fetch(`http://127.0.0.1:${a.adminPort}/v1/secrets/web-crt`, {
    method: 'PUT', headers: { 'x-api-key': a.apiKey, 'content-type': 'application/x-pem-file' }, body: web.cert,
  });
  assert.equal(res.status, 201, await res.clone().text());
  const o = await adminWrite(a.adminPort, a.apiKey, 'PUT', '/v1/ssls/web', {
    snis: ['web.test'], cert: '$secret://local/web-crt', key: '$secret://local/web-key',
  });
  assert.equal(o.status, 201, JSON.stringify(o.body));
  assert.equal(o.body.object.key, '$secret://local/web-key');
  await waitFor(() => serves(ports.a, 'web.test', web.cert), 'node A (node engine) serves web.test');
  await waitFor(() => serves(ports.b, 'web.test', web.cert), 'node B (uws engine) serves web.test');
  // In etcd: the sealed record only.
  const rec = JSON.parse((await etcd.get('/tlsgate/secrets/web-key'))!) as Record<string, unknown>;
  assert.deepEqual(Object.keys(rec).sort(), ['created', 'ct', 'iv', 'kek', 'tag', 'updated', 'v']);
  assert.equal(rec.kek, 'k1');
  assert.ok(!JSON.stringify(rec).includes(keyBody) && !JSON.stringify(rec).includes('PRIVATE KEY'));
});

test('write-only: GET lists ids and metadata, no endpoint returns the value', async () => {
  const l = await a.admin('GET', '/v1/secrets');
  assert.equal(l.status, 200);
  assert.deepEqual(l.body.secrets.map((s: { id: string }) => s.id), ['web-crt', 'web-key']);
  for (const s of l.body.secrets) {
    assert.equal(s.kek, 'k1');
    assert.ok(s.created && s.updated && s.mod_revision > 0);
    assert.match(s.sha256_prefix, /^[0-9a-f]{12}$/);
    assert.equal(s.value, undefined);
  }
  // No GET of one value: 405 (only PUT and DELETE exist at that path).
  const one = await a.admin('GET', '/v1/secrets/web-key');
  assert.equal(one.status, 405);
  for (const path of ['/v1/secrets', '/v1/secrets/web-key', '/v1/ssls', '/v1/ssls/web', '/v1/status']) {
    for (const gw of [a, b]) {
      const r = await gw.admin('GET', path);
      assert.ok(!JSON.stringify(r.body).includes(keyBody), `${path} leaks the key`);
    }
  }
});

test('viewer and editor keys cannot PUT, DELETE or rewrap a secret (admin only); nothing is written', async () => {
  for (const key of [VIEWER, EDITOR]) {
    const r = await putSecret(a, 'sneaky', 'x', key);
    assert.equal(r.status, 403);
    assert.equal(r.body.error.code, 'TLSGATE_E_ADMIN_FORBIDDEN');
    assert.equal((await adminWrite(a.adminPort, key, 'DELETE', '/v1/secrets/web-key')).status, 403);
    assert.equal((await a.admin('POST', '/v1/secrets/rewrap', key)).status, 403);
    // Not even the list of ids.
    assert.equal((await a.admin('GET', '/v1/secrets', key)).status, 403);
  }
  assert.equal(await etcd.get('/tlsgate/secrets/sneaky'), undefined);
});

test('a secret that would break an object using it is refused before writing (400, issues)', async () => {
  const other = server(ca, ['web.test']);
  const r = await putSecret(a, 'web-key', other.key);
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(r.body.error.code, 'TLSGATE_E_CERT_KEY_MISMATCH');
  assert.ok(r.body.error.issues.some((i: { path: string }) => i.path.startsWith('ssls/web')), JSON.stringify(r.body));
  assert.ok(!JSON.stringify(r.body).includes('PRIVATE KEY'));
  assert.ok(await serves(ports.a, 'web.test', web.cert));
});

test('a secret changed in etcd recompiles the objects using it on both nodes', async () => {
  const r = await putSecret(a, 'web-crt', web2.cert);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await waitFor(() => serves(ports.a, 'web.test', web2.cert), 'node A serves the rotated certificate');
  await waitFor(() => serves(ports.b, 'web.test', web2.cert), 'node B serves the rotated certificate');
});

test('DELETE while referenced → 409 with referrers; an unused secret deletes, then 404', async () => {
  const r = await adminWrite(a.adminPort, a.apiKey, 'DELETE', '/v1/secrets/web-key');
  assert.equal(r.status, 409);
  assert.equal(r.body.error.code, 'TLSGATE_E_STORE_REFERENCED');
  assert.deepEqual(r.body.error.referrers, [{ collection: 'ssls', id: 'web', path: 'key' }]);
  assert.equal((await putSecret(a, 'spare', 'not used')).status, 201);
  assert.equal((await adminWrite(a.adminPort, a.apiKey, 'DELETE', '/v1/secrets/spare')).status, 200);
  assert.equal((await adminWrite(a.adminPort, a.apiKey, 'DELETE', '/v1/secrets/spare')).status, 404);
});

/** A record sealed by hand (the documented format) under `key`, labelled `kek`, for secret `id`. */
function sealBy(key: Buffer, kek: string, id: string, value: string): string {
  const iv = randomBytes(12);
  const ci = createCipheriv('aes-256-gcm', key, iv);
  ci.setAAD(Buffer.from(`tlsgate-secret\0v1\0${kek}\0${id}`));
  const ct = Buffer.concat([ci.update(value), ci.final()]);
  const t = new Date().toISOString();
  return JSON.stringify({ v: 1, kek, iv: iv.toString('base64'), tag: ci.getAuthTag().toString('base64'),
    ct: ct.toString('base64'), created: t, updated: t });
}

test('tampered, swapped or wrongly keyed records are refused alone; the last good value keeps serving', async () => {
  const good = (await etcd.get('/tlsgate/secrets/web-key'))!;
  const goodCrt = (await etcd.get('/tlsgate/secrets/web-crt'))!;
  const cases: Array<[string, string, RegExp]> = [];
  // 1. One bit of the ciphertext flipped (etcdctl put around the API).
  const rec = JSON.parse(good) as { ct: string };
  const ct = Buffer.from(rec.ct, 'base64');
  ct[10] = ct[10]! ^ 1;
  cases.push(['tampered', JSON.stringify({ ...rec, ct: ct.toString('base64') }), /does not decrypt with KEK "k1"/]);
  // 2. Another secret's record copied under this id: the id is authenticated data.
  cases.push(['copied from web-crt', goodCrt, /does not decrypt with KEK "k1"/]);
  // 3. Sealed under another key labelled k1 (a node with a different KEK wrote it).
  cases.push(['wrong KEK', sealBy(randomBytes(32), 'k1', 'web-key', web.key), /does not decrypt with KEK "k1"/]);
  // 4. Sealed under a KEK id these nodes do not hold.
  cases.push(['unknown KEK', sealBy(randomBytes(32), 'k9', 'web-key', web.key), /KEK "k9".*does not hold/]);
  for (const [what, value, why] of cases) {
    await etcd.put('/tlsgate/secrets/web-key', value);
    // Another change in the same period applies: the refusal is per object.
    const marker = `m-${what.replace(/\W+/g, '-')}`;
    await etcd.put(`/tlsgate/routes/${marker}`, { paths: [`/${marker}`], respond: { status: 200, body: marker } });
    for (const [gw, port] of [[a, ports.a], [b, ports.b]] as const) {
      const errs = await waitFor(async () => {
        const e = await storeErrors(gw);
        return e.get('/tlsgate/secrets/web-key')?.match(why) ? e : undefined;
      }, `${what}: store.errors names the secret`);
      const msg = errs.get('/tlsgate/secrets/web-key')!;
      assert.match(msg, /secrets\/web-key/);
      assert.match(msg, /TLSGATE_E_SECRET_DECRYPT/);
      assert.match(msg, /last good version keeps serving/);
      assert.ok(!msg.includes(keyBody));
      assert.ok(await serves(port, 'web.test', web2.cert), `${what}: node keeps serving web.test`);
      await waitFor(async () => (await get(port, `/${marker}`, { servername: 'site.test' })).body === marker,
        `${what}: the other change applies`);
      const secrets = (await gw.admin('GET', '/v1/secrets')).body.secrets as Array<{ id: string; error?: string }>;
      const listed = secrets.find((s) => s.id === 'web-key')!;
      assert.match(listed.error ?? '', why);
    }
  }
  // A good PUT through the API clears the error on both nodes.
  assert.equal((await putSecret(a, 'web-key', web.key)).status, 200);
  for (const gw of [a, b])
    await waitFor(async () => !(await storeErrors(gw)).has('/tlsgate/secrets/web-key'), 'error cleared');
});

test('KEK rotation: a node with k2 active rewraps; nodes without k2 keep serving and name it; k1 removed', async () => {
  const env = { TLSGATE_TEST_KEK: K1 };
  // Step 1-2 of the README, on a node started with both keys and k2 active.
  await c.start(config(c, ports.c, 'node', `${KEY1}, ${KEY2}`, 'k2'), env);
  await waitFor(() => serves(ports.c, 'web.test', web2.cert), 'node C serves web.test');
  const r = await c.admin('POST', '/v1/secrets/rewrap');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.active, 'k2');
  assert.equal(r.body.rewrapped, 2);
  assert.deepEqual(r.body.failed, []);
  for (const id of ['web-key', 'web-crt'])
    assert.equal((JSON.parse((await etcd.get(`/tlsgate/secrets/${id}`))!) as { kek: string }).kek, 'k2');
  // Node B was never given k2 (step 1 skipped): it names the secret and the KEK, and keeps serving.
  const msg = await waitFor(async () => (await storeErrors(b)).get('/tlsgate/secrets/web-key'), 'B names the KEK');
  assert.match(msg, /sealed under KEK "k2", which config_store\.etcd\.secrets\.keys does not hold/);
  assert.ok(await serves(ports.b, 'web.test', web2.cert));
  // Step 4: a node with k1 removed starts cold and serves from the rewrapped values.
  await d.start(config(d, ports.d, 'node', KEY2, 'k2'));
  await waitFor(() => serves(ports.d, 'web.test', web2.cert), 'node D (k2 only) serves web.test');
  assert.deepEqual([...(await storeErrors(d)).keys()], []);
  // The CLI: nothing left to rewrap.
  const out = await new Promise<{ code: number; stdout: string }>((res) => {
    execFile(process.execPath, [CLI, 'secrets', 'rewrap', '--config', d.configPath], { cwd: d.dir },
      (err, stdout) => res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout }));
  });
  assert.equal(out.code, 0, out.stdout);
  assert.match(out.stdout, /rewrapped 0 secret\(s\) under KEK "k2", 2 already under it, 0 failed/);
});

test('the value and the KEKs never appear in any log, and every write is audited without them', async () => {
  const k2b64 = Buffer.from(K2, 'hex').toString('base64');
  for (const gw of [a, b, c, d]) {
    for (const text of [gw.stdout, gw.stderr]) {
      assert.ok(!text.includes(keyBody), 'the PEM body is not logged');
      assert.ok(!text.includes(K1) && !text.includes(K2) && !text.includes(k2b64), 'no KEK is logged');
    }
  }
  const audit = readFileSync(join(a.dir, 'audit.jsonl'), 'utf8');
  assert.ok(!audit.includes(keyBody));
  const writes = audit.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((e) => e.object === 'secrets');
  assert.ok(writes.some((e) => e.method === 'PUT' && e.id === 'web-key' && e.status === 201 && e.key_id));
  assert.ok(writes.some((e) => e.method === 'PUT' && e.id === 'sneaky' && e.status === 403 && e.key_id === 'watcher'));
  assert.ok(writes.some((e) => e.method === 'DELETE' && e.id === 'web-key' && e.status === 409));
});

test('validate names a bad KEK field: wrong length, active not among the keys', async () => {
  const gw = new Gateway('tlsgate-sec-v-');
  try {
    gw.write('gateway.yaml', `
admin: { listen: 127.0.0.1:1, api_keys: ["k"] }
listeners: [{ name: public, listen: 127.0.0.1:1 }]
${storeBlock(etcd, gw.dir)}
    secrets:
      keys: [{ id: k1, key: "$env://TLSGATE_TEST_SHORT" }, { id: k2, key: "$env://TLSGATE_TEST_KEK" }]
      active: k3
`);
    const out = await new Promise<{ code: number; stderr: string }>((res) => {
      execFile(process.execPath, [CLI, 'validate', '--config', gw.configPath],
        { cwd: gw.dir, env: { ...process.env, TLSGATE_TEST_SHORT: randomBytes(16).toString('base64'),
          TLSGATE_TEST_KEK: K1 } },
        (err, _o, stderr) => res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }));
    });
    assert.equal(out.code, 1);
    assert.match(out.stderr, /config_store\.etcd\.secrets\.active: "k3" is not the id of one of keys/);
    // With active fixed, the short key is named by its field and reference, never its value.
    gw.write('gateway.yaml', readFileSync(gw.configPath, 'utf8').replace('active: k3', 'active: k2'));
    const out2 = await new Promise<{ code: number; stderr: string }>((res) => {
      execFile(process.execPath, [CLI, 'validate', '--config', gw.configPath],
        { cwd: gw.dir, env: { ...process.env, TLSGATE_TEST_SHORT: 'c2hvcnQ=', TLSGATE_TEST_KEK: K1 } },
        (err, _o, stderr) => res({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }));
    });
    assert.equal(out2.code, 1);
    assert.match(out2.stderr,
      /config_store\.etcd\.secrets\.keys\[0\]\.key: \$env:\/\/TLSGATE_TEST_SHORT is 5 bytes.*\[TLSGATE_E_SECRET_KEK\]/);
    assert.ok(!out2.stderr.includes('c2hvcnQ='));
  } finally {
    await gw.stop();
  }
});
