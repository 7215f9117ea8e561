// Per SSL object: RSA + ECDSA pairs on one object, and ssl_protocols.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { connect } from 'node:tls';
import { Gateway, freePort, get, handshake } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

const ca = createCA('Options CA');
const ec = server(ca, ['dual.test'], { keyType: 'ec' });
const rsa = server(ca, ['dual.test'], { keyType: 'rsa' });
const modern = server(ca, ['modern.test']);
const gw = new Gateway();
let port = 0;

before(async () => {
  [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
  gw.write('ec.crt', ec.cert);
  gw.write('ec.key', ec.key);
  gw.write('rsa.crt', rsa.cert);
  gw.write('rsa.key', rsa.key);
  gw.write('modern.crt', modern.cert);
  gw.write('modern.key', modern.key);
  await gw.start(`
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port} }]
ssls:
  - { id: dual, snis: [dual.test], cert: "$file://ec.crt", key: "$file://ec.key", certs: ["$file://rsa.crt"], keys: ["$file://rsa.key"] }
  - { id: modern, snis: [modern.test], cert: "$file://modern.crt", key: "$file://modern.key", ssl_protocols: [TLSv1.3] }
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`);
});
after(() => gw.stop());

function keyTypeFor(ciphers: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'dual.test', rejectUnauthorized: false, maxVersion: 'TLSv1.2', ciphers }, () => {
      const c = s.getPeerX509Certificate();
      s.destroy();
      resolve(c?.publicKey.asymmetricKeyType ?? 'none');
    });
    s.on('error', reject);
  });
}

/** Key type of the certificate openssl s_client gets with only these signature algorithms. */
function keyTypeForSigalgs(sigalgs: string, tls: '-tls1_2' | '-tls1_3'): Promise<string> {
  return new Promise((resolve) => {
    const argv = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'dual.test', tls, '-sigalgs', sigalgs];
    const p = execFile('openssl', argv, (_e, stdout) => {
      // s_client prints the server certificate as PEM.
      const pem = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(stdout)?.[0];
      resolve(pem ? new X509Certificate(pem).publicKey.asymmetricKeyType ?? 'none' : 'refused');
    });
    p.stdin?.end();
  });
}

test('an SNI-selected object with ECDSA + RSA pairs presents the pair the client can verify', async () => {
  // One context holds both pairs: OpenSSL picks by the client's cipher / signature algorithms.
  assert.equal(await keyTypeFor('ECDHE-ECDSA-AES128-GCM-SHA256'), 'ec');
  assert.equal(await keyTypeFor('ECDHE-RSA-AES128-GCM-SHA256'), 'rsa');
  assert.equal(await keyTypeForSigalgs('RSA-PSS+SHA256:RSA+SHA256', '-tls1_3'), 'rsa');
  assert.equal(await keyTypeForSigalgs('ECDSA+SHA256', '-tls1_3'), 'ec');
  assert.equal(await keyTypeForSigalgs('RSA+SHA256', '-tls1_2'), 'rsa');
  // Both pairs are served on node listeners: no limit to warn about.
  assert.ok(!gw.logs.some((l) => l.code === 'TLSGATE_E_DUAL_CERT_SNI'));
});

test('ssl_protocols [TLSv1.3]: a TLS 1.2 client is refused before any HTTP byte, TLS 1.3 works', async () => {
  const ok = await handshake(port, { servername: 'modern.test', maxVersion: 'TLSv1.3' });
  assert.equal(ok.protocol, 'TLSv1.3');
  const refused = await get(port, '/', { servername: 'modern.test' }).then(
    () => 'served',
    () => 'refused',
  );
  assert.equal(refused, 'served');
  const old = await new Promise<string>((resolve) => {
    const s = connect({ host: '127.0.0.1', port, servername: 'modern.test', rejectUnauthorized: false, maxVersion: 'TLSv1.2' }, () => {
      s.write('GET / HTTP/1.1\r\nhost: modern.test\r\n\r\n');
    });
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('error', () => resolve('refused'));
    s.on('close', () => resolve(data.startsWith('HTTP/1.1 200') ? 'served' : 'refused'));
  });
  assert.equal(old, 'refused');
  // Other objects keep TLS 1.2.
  assert.equal((await handshake(port, { servername: 'dual.test', maxVersion: 'TLSv1.2' })).protocol, 'TLSv1.2');
});
