// etcd with authentication on (a root user and a role set up by the test with etcdctl) and
// TLS with client certificates: a gateway with config_store.etcd.auth lists and watches as
// its user; a wrong password or a user without the role is named in store.errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Gateway, freePort, handshake, waitFor } from './helpers/gateway';
import { Etcd, storeBlock } from './helpers/etcd';
import { createCA, server } from './helpers/pki';

const ca = createCA('Auth Test CA');
const site = server(ca, ['site.test']);
const late = server(ca, ['late.test']);
const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;
const ROOT = 'root:root-pw-3c1f';
const GW_PASSWORD = 'gw-pw-8e2a4b';

let etcd: Etcd;
const good = new Gateway('tlsgate-auth-ok-');
let port = 0;

/** etcdctl as root once auth is on (the test's client certificate names no etcd user). */
const asRoot = (...args: string[]): Promise<string> => etcd.ctl('--user', ROOT, ...args);

function config(gw: Gateway, listen: number, password: string, user = 'gw'): string {
  gw.write('etcd-password', password);
  // A node that cannot list starts without the store's objects: no default_ssl to name.
  const dflt = user === 'gw' && password === GW_PASSWORD ? ', default_ssl: site' : '';
  return `
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${listen}${dflt} }]
${storeBlock(etcd, gw.dir, { startTimeout: '500ms' })}
    auth: { username: ${user}, password: "$file://etcd-password" }
`;
}

before(async () => {
  etcd = await Etcd.start();
  await etcd.put('/tlsgate/ssls/site', { snis: ['site.test'], cert: site.cert, key: site.key });
  const [user, pw] = ROOT.split(':') as [string, string];
  await etcd.ctl('user', 'add', user, '--new-user-password', pw);
  await etcd.ctl('user', 'grant-role', 'root', 'root');
  await etcd.ctl('role', 'add', 'tlsgate-rw');
  await etcd.ctl('role', 'grant-permission', 'tlsgate-rw', '--prefix=true', 'readwrite', '/tlsgate/');
  await etcd.ctl('user', 'add', 'gw', '--new-user-password', GW_PASSWORD);
  await etcd.ctl('user', 'grant-role', 'gw', 'tlsgate-rw');
  // A user with no role: authenticates, may not read the prefix.
  await etcd.ctl('user', 'add', 'nobody', '--new-user-password', 'nobody-pw-11');
  await etcd.ctl('auth', 'enable');
  // Auth is on: the test's own certificate (CN tlsgate, no such user) may no longer read.
  await assert.rejects(etcd.ctl('get', '/tlsgate/ssls/site'));
  [port, good.adminPort] = await Promise.all([freePort(), freePort()]);
  await good.start(config(good, port, GW_PASSWORD));
});

after(async () => {
  if (process.env.TLSGATE_TEST_DEBUG) console.log(good.stderr, good.stdout.slice(-6000));
  await good.stop();
  await etcd?.close();
});

test('with auth on, the gateway lists as its user and watches: a later put is served', async () => {
  const h = await handshake(port, { servername: 'site.test' });
  assert.equal(h.cert?.fingerprint256, fp(site.cert));
  const s = (await good.admin('GET', '/v1/status')).body.store;
  assert.equal(s.connected, true);
  assert.deepEqual(s.errors, []);
  await asRoot('put', '/tlsgate/ssls/late', JSON.stringify({ snis: ['late.test'], cert: late.cert, key: late.key }));
  await waitFor(async () => (await handshake(port, { servername: 'late.test' })).cert?.fingerprint256 === fp(late.cert),
    'the watched change is served');
  assert.ok(!good.stdout.includes(GW_PASSWORD) && !good.stderr.includes(GW_PASSWORD), 'the password is not logged');
});

test('a wrong password, or a user without read on the prefix: the cause is in store.errors', async () => {
  const cases = [
    { name: 'wrong-pw', password: 'not-the-pw', user: 'gw', want: /authentication failed.*config_store\.etcd\.auth/ },
    { name: 'no-role', password: 'nobody-pw-11', user: 'nobody', want: /user "nobody".*permission denied/ },
  ];
  for (const c of cases) {
    const g = new Gateway(`tlsgate-auth-${c.name}-`);
    try {
      const listen = await freePort();
      g.adminPort = await freePort();
      await g.start(config(g, listen, c.password, c.user));
      const st = await waitFor(async () => {
        const s = (await g.admin('GET', '/v1/status')).body.store;
        return s.errors.length ? s : undefined;
      }, `${c.name}: store error`);
      assert.equal(st.connected, false);
      assert.match(st.errors[0].message, c.want, JSON.stringify(st.errors));
      assert.ok(!JSON.stringify(st).includes(c.password), 'the password is not shown');
      assert.ok(g.logs.some((l) => l.code === 'TLSGATE_E_STORE_UNAVAILABLE' && c.want.test(String(l.error))));
      assert.ok(!g.stdout.includes(c.password));
    } finally {
      await g.stop();
    }
  }
});
