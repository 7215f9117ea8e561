// uws: a rotation of an installed name starts a new generation; the retired one is freed
// (closed, its names removed) once no request ran on it for 30 s, which is past uWS's own
// idle timeout, so no connection is cut. Before, each generation was kept until exit: memory
// grew with every rotation. The worker must survive the free (a name removed while a
// connection uses it crashes uWS) and keep serving the new certificate.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Agent } from 'node:https';
import { Gateway, freePort, get, handshake, waitFor } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;

describe('uws: retired generations are freed', () => {
  const ca = createCA('Reap CA');
  let cert = server(ca, ['s0.test']);
  const gw = new Gateway();
  let port = 0;

  before(async () => {
    [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
    gw.write('s0.crt', cert.cert);
    gw.write('s0.key', cert.key);
    await gw.start(`
  workers: 1
  standby_worker: false
  log: { level: debug }
  admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
  listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: uws }]
  ssls: [{ id: s0, snis: [s0.test], cert: "$file://s0.crt", key: "$file://s0.key" }]
  routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
  `);
  });
  after(() => gw.stop());

  test('a rotated-away generation is freed after its connections idle out; the worker keeps serving', async () => {
    // A keep-alive connection on the first generation (its handshake installs s0.test there).
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const first = await get(port, '/', { servername: 's0.test', agent });
    assert.equal(first.status, 200);
    assert.equal(first.fingerprint, fp(cert.cert));
    const { workers, version } = await gw.status();
    cert = server(ca, ['s0.test']);
    gw.write('s0.key', cert.key);
    gw.write('s0.crt', cert.cert);
    await gw.waitVersion(version + 1, 15_000);
    await waitFor(() => gw.logs.some((l) => l.msg === 'uws generation rotated'), 'a new generation');
    // The open connection still answers on the retired generation, with the certificate it shook hands with.
    const again = await get(port, '/', { servername: 's0.test', agent });
    assert.equal(again.status, 200);
    const freed = await waitFor(
      () => gw.logs.find((l) => l.msg === 'uws generation freed'),
      'the retired generation freed',
      90_000,
      250,
    );
    assert.equal(freed.generation, 1);
    agent.destroy();
    // Same worker (no crash), new certificate for new handshakes, requests answered.
    assert.deepEqual((await gw.status()).workers.map((w) => w.pid), workers.map((w) => w.pid));
    for (let i = 0; i < 3; i++) {
      const h = await handshake(port, { servername: 's0.test' });
      assert.equal(h.cert?.fingerprint256, fp(cert.cert));
      assert.equal((await get(port, '/', { servername: 's0.test' })).body, 'ok');
    }
  });

  test('the freed app listens again as the next generation, with the new certificate', async () => {
    const { version } = await gw.status();
    cert = server(ca, ['s0.test']);
    gw.write('s0.key', cert.key);
    gw.write('s0.crt', cert.cert);
    await gw.waitVersion(version + 1, 15_000);
    const rotated = await waitFor(
      () => gw.logs.find((l) => l.msg === 'uws generation rotated' && l.generation === 3),
      'a third generation',
    );
    assert.equal(rotated.uses, 2, 'the spare app of generation 1 was reused');
    for (let i = 0; i < 3; i++) {
      const h = await handshake(port, { servername: 's0.test' });
      assert.equal(h.ok, true, h.error);
      assert.equal(h.cert?.fingerprint256, fp(cert.cert));
      assert.equal((await get(port, '/', { servername: 's0.test' })).body, 'ok');
    }
    // Unknown names still get no certificate from a reused app (its SNI tree was emptied).
    const other = await handshake(port, { servername: 'other.test' });
    assert.equal(other.ok, false);
  });
});
