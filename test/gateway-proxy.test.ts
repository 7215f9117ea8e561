// End to end through the real gateway: routes proxied to an HTTP upstream and to an
// HTTPS upstream that wants the gateway's client certificate; mTLS identity passed
// upstream; passive health in the admin API; SIGTERM drains an in-flight request.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttp, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Gateway, freePort, get, waitFor } from './helpers/gateway';
import { client, createCA, server } from './helpers/pki';

const ca = createCA('Proxy E2E CA');
const clientCa = createCA('Proxy E2E Client CA');
const front = server(ca, ['app.test']);
const secureFront = server(ca, ['secure.app.test']);
const upstreamCert = server(ca, ['backend.internal']);
const gatewayClient = client(ca, 'tlsgate-gateway');
const alice = client(clientCa, 'alice');
const gw = new Gateway();
let port = 0;
let deadPort = 0;
const held: ServerResponse[] = [];
let heldArrived: (() => void) | undefined;

const plain = createHttp((req: IncomingMessage, res: ServerResponse) => {
  if (req.url === '/api/slow') {
    held.push(res);
    heldArrived?.();
    return;
  }
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ via: 'plain', url: req.url, headers: req.headers }));
});
// The upstream wants a client certificate from the gateway (upstream mTLS).
const tlsUp = createHttps({ cert: upstreamCert.cert, key: upstreamCert.key, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
  const peer = (req.socket as TLSSocket).getPeerCertificate();
  res.end(JSON.stringify({ via: 'tls', client: peer.subject?.CN ?? null, headers: req.headers }));
});

before(async () => {
  await Promise.all([new Promise<void>((r) => plain.listen(0, '127.0.0.1', r)), new Promise<void>((r) => tlsUp.listen(0, '127.0.0.1', r))]);
  [port, gw.adminPort, deadPort] = await Promise.all([freePort(), freePort(), freePort()]);
  for (const [n, i] of Object.entries({ front, secureFront, gatewayClient })) {
    gw.write(`${n}.crt`, i.cert);
    gw.write(`${n}.key`, i.key);
  }
  gw.write('ca.pem', ca.cert);
  gw.write('clients.pem', clientCa.cert);
  await gw.start(`
workers: 2
drain_timeout: 10s
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port} }]
ssls:
  - { id: front, snis: [app.test], cert: "$file://front.crt", key: "$file://front.key" }
  - { id: secure-front, snis: [secure.app.test], cert: "$file://secureFront.crt", key: "$file://secureFront.key", client: { ca: "$file://clients.pem" } }
  - { id: gw-client, type: client, cert: "$file://gatewayClient.crt", key: "$file://gatewayClient.key" }
upstreams:
  # APISIX's nodes mapping {"host:port": weight}: read as the list form
  - { id: plain, nodes: { "127.0.0.1:${deadPort}": 1, "127.0.0.1:${(plain.address() as AddressInfo).port}": 1 }, client_identity_headers: true }
  - { id: tls, scheme: https, nodes: [{ host: 127.0.0.1, port: ${(tlsUp.address() as AddressInfo).port} }], tls: { ca: "$file://ca.pem", sni: backend.internal, client_ssl: gw-client } }
routes:
  - { id: api, paths: [/api], upstream: plain }
  - { id: backend, paths: [/backend], upstream: tls }
`);
});
after(async () => {
  await gw.stop();
  plain.close();
  tlsUp.close();
});

test('a proxied route reaches the HTTP upstream, skipping the dead node, with X-Forwarded-* set', async () => {
  const r = await get(port, '/api/items?x=1', { servername: 'app.test', headers: { connection: 'keep-alive, x-hop', 'x-hop': 'drop me' } });
  assert.equal(r.status, 200);
  const body = JSON.parse(r.body);
  assert.equal(body.url, '/api/items?x=1');
  assert.equal(body.headers['x-forwarded-proto'], 'https');
  assert.equal(body.headers['x-forwarded-host'], 'app.test');
  assert.equal(body.headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(body.headers['x-hop'], undefined);
});

test('re-encryption: the HTTPS upstream verifies the gateway client certificate', async () => {
  const r = await get(port, '/backend', { servername: 'app.test' });
  assert.equal(r.status, 200, r.body);
  assert.equal(JSON.parse(r.body).client, 'tlsgate-gateway');
});

test('an mTLS client identity reaches the upstream; a forged one never does', async () => {
  const forged = { 'x-client-cert-subject': 'CN=root', 'x-client-verify': 'SUCCESS' };
  const open = JSON.parse((await get(port, '/api/who', { servername: 'app.test', headers: forged })).body);
  assert.equal(open.headers['x-client-cert-subject'], undefined);
  assert.equal(open.headers['x-client-verify'], undefined);
  const verified = JSON.parse((await get(port, '/api/who', { servername: 'secure.app.test', cert: alice.cert, key: alice.key, headers: forged })).body);
  assert.match(verified.headers['x-client-cert-subject'], /CN=alice/);
  assert.equal(verified.headers['x-client-verify'], 'SUCCESS');
  assert.match(verified.headers['x-client-cert-fingerprint'], /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
});

test('GET /v1/upstreams shows the dead node in back-off; metrics have upstream latency', async () => {
  const u = await waitFor(async () => {
    const b = (await gw.admin('GET', '/v1/upstreams')).body;
    return b.upstreams.find((x: { id: string }) => x.id === 'plain').nodes.find((n: { port: number; healthy: boolean }) => n.port === deadPort && !n.healthy) ? b : undefined;
  }, 'dead node unhealthy');
  assert.ok(u.upstreams[0].nodes.some((n: { healthy: boolean }) => n.healthy));
  const m = (await gw.admin('GET', '/metrics')).body as string;
  assert.match(m, /tlsgate_upstream_duration_seconds_count\{upstream="plain"\} [1-9]/);
});

test('SIGTERM: an in-flight request finishes, then the gateway exits 0', async () => {
  const arrived = new Promise<void>((r) => (heldArrived = r));
  const pending = get(port, '/api/slow', { servername: 'app.test' });
  await arrived;
  gw.proc!.kill('SIGTERM');
  // New connections are refused once the workers stop accepting.
  await waitFor(async () => get(port, '/api/x', { servername: 'app.test' }).then(() => false, () => true), 'listener closed');
  held[0]!.end('finished after SIGTERM');
  const r = await pending;
  assert.equal(r.status, 200);
  assert.equal(r.body, 'finished after SIGTERM');
  assert.equal(await gw.waitExit(), 0);
});
