// Hitless rotation and hot reload with two workers: a keep-alive connection opened
// before a certificate change keeps working after it; new handshakes get the new
// certificate; an invalid change keeps the running snapshot; a killed worker comes
// back with the current version; SIGTERM exits 0. Runs against both engines.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:https';
import type { TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { Gateway, freePort, get, handshake, waitFor } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

for (const engine of ['node', 'uws'] as const) describe(`rotation and reload, engine ${engine}`, () => {
  const ca = createCA('Rotation CA');
  const v1 = server(ca, ['site.test']);
  const v2 = server(ca, ['site.test']);
  const other = server(ca, ['other.test']);
  const gw = new Gateway();
  let port = 0;

  const config = (body: string, extra = ''): string => `
  workers: 2
  admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
  listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: ${engine} }]
  ssls:
    - { id: site, snis: [site.test], cert: "$file://site.crt", key: "$file://site.key" }
    - { id: other, snis: [other.test], cert: "$file://other.crt", key: "$file://other.key"${extra} }
  routes: [{ id: r, paths: [/], respond: { status: 200, body: ${body} } }]
  `;

  before(async () => {
    [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
    gw.write('site.crt', v1.cert);
    gw.write('site.key', v1.key);
    gw.write('other.crt', other.cert);
    gw.write('other.key', other.key);
    await gw.start(config('one'));
  });
  after(() => gw.stop());

  const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;

  test('rotation: the open keep-alive connection keeps working, new handshakes see the new certificate', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const first = await get(port, '/', { servername: 'site.test', agent });
    assert.equal(first.fingerprint, fp(v1.cert));
    const sockets = Object.values(agent.freeSockets).flat() as TLSSocket[];
    assert.equal(sockets.length, 1);
    const oldSocket = sockets[0]!;

    const { version } = await gw.status();
    // Key first, then certificate: in between, the pair mismatches and is refused;
    // the debounced reload after the second write applies the complete pair.
    gw.write('site.key', v2.key);
    gw.write('site.crt', v2.cert);
    await gw.waitVersion(version + 1);
    const after = await gw.status();
    assert.equal(after.workers.length, 2);

    const again = await get(port, '/', { servername: 'site.test', agent });
    assert.equal(again.status, 200);
    const reused = Object.values(agent.freeSockets).flat()[0];
    assert.equal(reused, oldSocket, 'the request went over the connection opened before the rotation');
    assert.equal(again.fingerprint, fp(v1.cert), 'that connection keeps the certificate it shook hands with');

    // Both workers serve the new certificate: several fresh handshakes, all v2.
    for (let i = 0; i < 8; i++) {
      const h = await handshake(port, { servername: 'site.test' });
      assert.equal(h.cert?.fingerprint256, fp(v2.cert));
    }
    agent.destroy();
  });

  test('an invalid change keeps the running snapshot and reports why', async () => {
    const { version } = await gw.status();
    gw.write('gateway.yaml', config('two').replace('paths: [/]', 'paths: [nope]'));
    const st = await waitFor(async () => {
      const r = await gw.admin('GET', '/v1/status');
      return r.body.last_reload?.ok === false && r.body.last_reload.source === 'file' ? r.body : undefined;
    }, 'refused reload');
    assert.equal(st.version, version);
    assert.match(st.last_reload.errors.join('\n'), /routes\[0\]\.paths\[0\]: "nope" must be a path prefix/);
    assert.equal((await get(port, '/', { servername: 'site.test' })).body, 'one');
    assert.ok(gw.logs.some((l) => l.msg.startsWith('config refused')), 'the refusal is logged');

    // Broken YAML: same.
    gw.write('gateway.yaml', 'listeners: [\n');
    await waitFor(async () => (await gw.admin('GET', '/v1/status')).body.last_reload.errors.join().includes('TLSGATE_E_CONFIG_PARSE'), 'parse error');
    assert.equal((await gw.status()).version, version);
    assert.equal((await get(port, '/', { servername: 'site.test' })).body, 'one');
  });

  test('POST /v1/reload: the new version when valid, 422 and the errors when not', async () => {
    const { version } = await gw.status();
    gw.write('gateway.yaml', config('three'));
    // The watcher may apply it first; either way the version moves and all workers ack.
    const r = await gw.admin('POST', '/v1/reload');
    assert.equal(r.status, 200);
    assert.ok(r.body.version > version);
    await gw.waitVersion(r.body.version);
    assert.equal((await get(port, '/', { servername: 'site.test' })).body, 'three');

    const unauth = await gw.admin('POST', '/v1/reload', null);
    assert.equal(unauth.status, 401);

    gw.write('gateway.yaml', config('four').replace('status: 200', 'status: 99'));
    const bad = await gw.admin('POST', '/v1/reload');
    assert.equal(bad.status, 422);
    assert.equal(bad.body.ok, false);
    assert.match(bad.body.errors.join('\n'), /routes\[0\]\.respond\.status: must be between 200 and 599/);
    gw.write('gateway.yaml', config('three'));
    assert.equal((await gw.admin('POST', '/v1/reload')).status, 200);
    assert.equal((await get(port, '/', { servername: 'site.test' })).body, 'three');
  });

  test('status: disabled removes an SSL object from the SNI map', async () => {
    assert.equal((await handshake(port, { servername: 'other.test' })).ok, true);
    const { version } = await gw.status();
    gw.write('gateway.yaml', config('three', ', status: disabled'));
    await gw.waitVersion(version + 1);
    const h = await handshake(port, { servername: 'other.test' });
    assert.equal(h.ok, false);
    gw.write('gateway.yaml', config('three'));
    await gw.waitVersion(version + 2);
  });

  test('a killed worker is respawned and serves the current version', async () => {
    const before = await gw.status();
    const victim = before.workers[0]!.pid;
    process.kill(victim, 'SIGKILL');
    const st = await waitFor(async () => {
      const s = await gw.status();
      return s.workers.length === 2 && !s.workers.some((w) => w.pid === victim) && s.workers.every((w) => w.version === before.version) ? s : undefined;
    }, 'respawned worker at the current version');
    assert.equal(st.version, before.version);
    for (let i = 0; i < 6; i++) assert.equal((await get(port, '/', { servername: 'site.test' })).body, 'three');
  });

  test('SIGTERM: the gateway stops and exits 0', async () => {
    gw.proc!.kill('SIGTERM');
    assert.equal(await gw.waitExit(), 0);
    assert.ok(gw.logs.some((l) => l.msg === 'tlsgate stopped'));
  });

});