// Attack round after issues 13-16 were merged: what the new config sources and admin roles
// let an attacker who controls a certificate directory (an ACME client's output) or a
// low-role admin key do.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Gateway, freePort, get } from './helpers/gateway';
import { client, createCA, server } from './helpers/pki';

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
  - { id: secure, path: secure, client: { ca: "$file://clients.pem" } }
  - { id: drop, path: drop }
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
