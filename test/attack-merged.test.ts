// Attack round after issues 13-16 were merged: what the new config sources and admin roles
// let an attacker who controls a certificate directory (an ACME client's output) or a
// low-role admin key do.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { Gateway, freePort, get } from './helpers/gateway';
import { client, createCA, server } from './helpers/pki';
import { h2Request, h2Session } from './helpers/h2-client';

describe('ssl_dirs: a directory file cannot carve a name out of an mTLS wildcard', () => {
  const ca = createCA('Carve server CA');
  const clientCa = createCA('Carve client CA');
  const alice = client(clientCa, 'alice');
  const corp = server(ca, ['*.corp.test']);
  const gw = new Gateway();
  let port = 0;

  before(async () => {
    [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
    gw.write('corp.crt', corp.cert);
    gw.write('corp.key', corp.key);
    gw.write('clients.pem', clientCa.cert);
    for (const d of ['drop', 'secure']) mkdirSync(join(gw.dir, d));
    // The plain directory: files naming names beneath the listed mTLS `*.corp.test`, and
    // beneath the mTLS directory's `*.lab.test`.
    const admin = server(ca, ['admin.corp.test', 'free.test']);
    writeFileSync(join(gw.dir, 'drop', 'admin.pem'), admin.cert + admin.key);
    const lab = server(ca, ['db.lab.test']);
    writeFileSync(join(gw.dir, 'drop', 'lab.pem'), lab.cert + lab.key);
    const labWild = server(ca, ['*.lab.test']);
    writeFileSync(join(gw.dir, 'secure', 'lab.pem'), labWild.cert + labWild.key);
    await gw.start(`
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: node }]
ssls:
  - id: corp
    snis: ["*.corp.test"]
    cert: "$file://corp.crt"
    key: "$file://corp.key"
    client: { ca: "$file://clients.pem" }
ssl_dirs:
  # The plain directory first: its files are given their names before the mTLS directory's.
  - { id: drop, path: drop }
  - { id: secure, path: secure, client: { ca: "$file://clients.pem" } }
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`);
  });
  after(() => gw.stop());

  for (const name of ['admin.corp.test', 'db.lab.test']) {
    test(`${name} (beneath an mTLS wildcard) still needs a client certificate`, async () => {
      const anon = await get(port, '/', { servername: name }).then((r) => r.status, () => 'refused');
      assert.notEqual(anon, 200, `a client with no certificate must not be served ${name}`);
      const withCert = await get(port, '/', { servername: name, cert: alice.cert, key: alice.key });
      assert.equal(withCert.status, 200);
    });
  }

  test('the carving file still serves its other names, and the conflict is reported', async () => {
    assert.equal((await get(port, '/', { servername: 'free.test' })).status, 200);
    const st = (await gw.admin('GET', '/v1/status')).body;
    const text = JSON.stringify(st);
    assert.match(text, /admin\.corp\.test/);
  });
});

describe('delta: a worker patched by deltas refuses what a fresh worker refuses', () => {
  const ca = createCA('Delta server CA');
  const clientCa = createCA('Delta client CA');
  const alice = client(clientCa, 'alice');
  const shop = server(ca, ['*.shop.test']);
  const mid = server(ca, ['mid.shop.test', 'spare.shop.test']);
  const secure = server(ca, ['secure.shop.test', 'mid.shop.test']);
  const gw = new Gateway();
  let port = 0;

  /** midOn: which object holds mid.shop.test; dflt: the listener's default_ssl. */
  const config = (midOn: 'mid' | 'secure', dflt: 'shop' | 'secure'): string => `
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: node, default_ssl: ${dflt} }]
ssls:
  - { id: shop, snis: ["*.shop.test"], cert: "$file://shop.crt", key: "$file://shop.key" }
  - { id: mid, snis: [${midOn === 'mid' ? 'mid.shop.test' : 'spare.shop.test'}], cert: "$file://mid.crt",
      key: "$file://mid.key" }
  - id: secure
    snis: [secure.shop.test${midOn === 'secure' ? ', mid.shop.test' : ''}]
    cert: "$file://secure.crt"
    key: "$file://secure.key"
    client: { ca: "$file://clients.pem" }
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`;
  const reload = async (midOn: 'mid' | 'secure', dflt: 'shop' | 'secure'): Promise<void> => {
    gw.write('gateway.yaml', config(midOn, dflt));
    const r = await gw.admin('POST', '/v1/reload');
    assert.equal(r.status, 200, JSON.stringify(r.body));
  };

  before(async () => {
    [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
    for (const [n, v] of [['shop', shop], ['mid', mid], ['secure', secure]] as const) {
      gw.write(`${n}.crt`, v.cert);
      gw.write(`${n}.key`, v.key);
    }
    gw.write('clients.pem', clientCa.cert);
    await gw.start(config('mid', 'shop'));
  });
  after(() => gw.stop());

  const moved = 'a name moved plain → mTLS → plain, and default_ssl switched to mTLS, on kept h1 and h2 connections';
  test(moved, async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    // An h2 client coalesces only onto a connection whose certificate covers the name.
    const s = await h2Session(port, { servername: 'mid.shop.test' });
    const noSni = await h2Session(port, { servername: '' });
    try {
      const h1 = (host: string): Promise<number> =>
        get(port, '/', { servername: 'www.shop.test', host, agent }).then((r) => r.status);
      const h2 = async (host: string, on = s): Promise<number> =>
        (await h2Request(on, { ':path': '/', ':authority': host })).status;
      const fresh = (sni: string, host = sni): Promise<number | string> =>
        get(port, '/', { servername: sni, host }).then((r) => r.status, () => 'refused');
      assert.equal(await h1('mid.shop.test'), 200);
      assert.equal(await h2('mid.shop.test'), 200);

      await reload('secure', 'shop');
      assert.equal(await h1('mid.shop.test'), 421, 'h1 kept connection, name now mTLS');
      assert.equal(await h2('mid.shop.test'), 421, 'h2 kept connection, name now mTLS');
      assert.equal(await fresh('mid.shop.test'), 'refused', 'fresh handshake without a certificate');
      const verified = await get(port, '/', { servername: 'mid.shop.test', cert: alice.cert, key: alice.key });
      assert.equal(verified.status, 200);

      await reload('mid', 'shop');
      assert.equal(await h1('mid.shop.test'), 200);
      assert.equal(await h2('mid.shop.test'), 200);
      assert.equal(await fresh('mid.shop.test'), 200);
      assert.equal(await fresh('spare.shop.test'), 200);

      // default_ssl → the mTLS object: an unclaimed name needs its certificate, also on a
      // connection made (without SNI) while the default was plain.
      assert.equal(await h2('unclaimed.test', noSni), 200);
      await reload('mid', 'secure');
      assert.equal(await h2('unclaimed.test', noSni), 421);
      assert.equal(await h1('unclaimed.test'), 421);
      assert.equal(await fresh('', 'unclaimed.test'), 'refused');
    } finally {
      agent.destroy();
      s.close();
      noSni.close();
    }
  });
});

describe('admin roles: request forms that might lift a viewer or editor key', () => {
  const ca = createCA('Admin attack CA');
  const site = server(ca, ['site.test']);
  const gw = new Gateway();
  const VIEWER = 'viewer-' + Math.random().toString(36).slice(2);
  const EDITOR = 'editor-' + Math.random().toString(36).slice(2);
  let port = 0;

  before(async () => {
    [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
    gw.write('site.crt', site.cert);
    gw.write('site.key', site.key);
    await gw.start(`
workers: 1
admin:
  listen: 127.0.0.1:${gw.adminPort}
  api_keys:
    - "${gw.apiKey}"
    - { id: dash, key: "${VIEWER}", role: viewer }
    - { id: ci, key: "${EDITOR}", role: editor }
listeners: [{ name: public, listen: 127.0.0.1:${port} }]
ssls: [{ id: site, snis: [site.test], cert: "$file://site.crt", key: "$file://site.key", labels: { team: a } }]
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`);
  });
  after(() => gw.stop());

  /** Exact bytes to the admin port; the status line of the answer. */
  const raw = (request: string): Promise<{ status: number; text: string }> =>
    new Promise((resolve, reject) => {
      const s = netConnect(gw.adminPort, '127.0.0.1');
      let text = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => (text += d));
      s.on('error', reject);
      s.on('close', () => resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text }));
      s.write(request);
    });

  test('method override headers, absolute-form and network-path targets, odd methods: no reload, no secrets', async () => {
    const before = (await gw.status()).version;
    const req = (line: string, key: string, extra = ''): string =>
      `${line}\r\nHost: admin\r\nX-API-KEY: ${key}\r\n${extra}Content-Length: 0\r\nConnection: close\r\n\r\n`;
    const tries: Array<[string, string]> = [
      [req('GET /v1/reload HTTP/1.1', VIEWER, 'X-HTTP-Method-Override: POST\r\n'), 'GET + override'],
      [req('POST /v1/reload HTTP/1.1', VIEWER, 'X-HTTP-Method-Override: GET\r\nX-Method-Override: GET\r\n'),
        'POST + override GET'],
      [req('POST http://admin/v1/reload HTTP/1.1', EDITOR), 'absolute-form'],
      [req('POST //admin/v1/reload HTTP/1.1', EDITOR), 'network-path'],
      [req('POST /v1/%72eload HTTP/1.1', EDITOR), 'encoded letter'],
      [req('POST /v1/ssls/../reload HTTP/1.1', EDITOR), 'dot segment from an editor collection'],
      [req('POST /v1/ssls/%2e%2e/reload HTTP/1.1', EDITOR), 'encoded dot segment'],
      [req('POST /v1/ssls%2F..%2Freload HTTP/1.1', EDITOR), 'encoded slashes'],
      [req('POST /v1/ssls\\..\\reload HTTP/1.1', EDITOR), 'backslashes'],
      [req('OPTIONS /v1/reload HTTP/1.1', VIEWER), 'OPTIONS'],
      [req('get /v1/secret_providers HTTP/1.1', VIEWER), 'lower-case method'],
      [req('GET //admin/v1/secret_providers HTTP/1.1', VIEWER), 'network-path read of the secrets area'],
      [req('GET http://admin/v1/secret_providers HTTP/1.1', VIEWER), 'absolute-form read of the secrets area'],
      [req('GET /v1/secret_providers%2F HTTP/1.1', VIEWER), 'trailing encoded slash'],
      [req('GET /v1/secret_providers;x HTTP/1.1', VIEWER), 'matrix param'],
    ];
    for (const [request, what] of tries) {
      const r = await raw(request);
      assert.ok(r.status === 0 || r.status >= 400, `${what}: ${r.status}`);
      assert.doesNotMatch(r.text, /"providers"|"ok": true/, what);
    }
    assert.equal((await gw.status()).version, before, 'no reload happened');
  });

  test('label filters: prototype keys and odd values match nothing and leak nothing', async () => {
    for (const q of ['label=__proto__', 'label=constructor', 'label=hasOwnProperty', 'label=team:a%00',
      'label=team:a&label=__proto__:x', 'label=team%3Aa']) {
      const r = await gw.admin('GET', `/v1/ssls?${q}`, VIEWER);
      assert.ok(r.status === 400 || (r.status === 200 && JSON.stringify(r.body).indexOf('"site"') < 0) ||
        q === 'label=team%3Aa', `${q}: ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`);
      assert.doesNotMatch(JSON.stringify(r.body), /PRIVATE KEY/);
    }
    const ok = await gw.admin('GET', '/v1/ssls?label=team:a', VIEWER);
    assert.equal(ok.status, 200);
    assert.match(JSON.stringify(ok.body), /"site"/);
  });
});
