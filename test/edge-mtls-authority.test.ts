// Issue 11 §1: mTLS cannot be bypassed. The commonest real layout: a plain wildcard
// `*.shop.test` with an mTLS `secure.shop.test` beneath it, and default_ssl = the plain
// object. A client with no certificate that handshakes with any other SNI (a plain name,
// none, an unknown one served by default_ssl) and then asks for secure.shop.test gets 421
// before routing; each refusal is counted in tlsgate_requests_refused_total.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gateway, freePort, handshake, waitFor } from './helpers/gateway';
import { client, createCA, server } from './helpers/pki';
import { rawRequest } from './helpers/raw-http';
import { SniMap } from '../src/routing/sni-map';
import { checkAuthority } from '../src/proxy/authority';
import type { SslSnapshot } from '../src/snapshot/types';

const serverCa = createCA('Shop server CA');
const clientCa = createCA('Shop client CA');
const foreignCa = createCA('Foreign client CA');
const shop = server(serverCa, ['*.shop.test']);
const secure = server(serverCa, ['secure.shop.test']);
const alice = client(clientCa, 'alice');
const mallory = client(foreignCa, 'mallory');
const gw = new Gateway();
let port = 0;
const seen: Array<Record<string, string | string[] | undefined>> = [];
const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
  seen.push(req.headers);
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ url: req.url, headers: req.headers }));
});

before(async () => {
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
  gw.write('shop.crt', shop.cert);
  gw.write('shop.key', shop.key);
  gw.write('secure.crt', secure.cert);
  gw.write('secure.key', secure.key);
  gw.write('clients.pem', clientCa.cert);
  await gw.start(`
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port}, default_ssl: shop }]
ssls:
  - { id: shop, snis: ["*.shop.test"], cert: "$file://shop.crt", key: "$file://shop.key" }
  - id: secure
    snis: [secure.shop.test]
    cert: "$file://secure.crt"
    key: "$file://secure.key"
    client: { ca: "$file://clients.pem" }
upstreams:
  - id: app
    nodes: [{ host: 127.0.0.1, port: ${(upstream.address() as AddressInfo).port} }]
    client_identity_headers: true
routes:
  - { id: app, paths: [/], upstream: app }
`);
});
after(async () => {
  await gw.stop();
  upstream.close();
});

const req = (host: string, target = '/', extra = ''): string =>
  `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n` +
  `X-Client-Verify: SUCCESS\r\nX-Client-Cert-Subject: CN=admin\r\n${extra}Connection: close\r\n\r\n`;

type Id = { cert: string; key: string };
async function status(servername: string | undefined, request: string, id?: Id): Promise<number> {
  const r = await rawRequest(port, request, { ...(servername ? { servername } : {}), ...(id ?? {}) });
  assert.equal(r.length, 1, `one response expected, got: ${JSON.stringify(r.raw.slice(0, 200))}`);
  return r[0]!.status;
}

async function refusedCount(reason: string): Promise<number> {
  const text = (await gw.admin('GET', '/metrics')).body as string;
  const m = new RegExp(`tlsgate_requests_refused_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

test('no certificate, plain SNI www.shop.test, Host: secure.shop.test → 421', async () => {
  const before = seen.length;
  assert.equal(await status('www.shop.test', req('secure.shop.test')), 421);
  assert.equal(seen.length, before, 'the request must not reach the upstream');
});

test('no certificate, no SNI (default_ssl), Host: secure.shop.test → 421', async () => {
  assert.equal(await status(undefined, req('secure.shop.test')), 421);
});

test('no certificate, unknown SNI served by default_ssl, Host: secure.shop.test → 421', async () => {
  assert.equal(await status('nowhere.example', req('secure.shop.test')), 421);
});

test('spellings of the mTLS name do not get around the rule (case, port, trailing dot)', async () => {
  for (const host of ['SECURE.Shop.Test', 'secure.shop.test:443', `secure.shop.test:${port}`, 'secure.shop.test.']) {
    assert.equal(await status('www.shop.test', req(host)), 421, host);
  }
});

test('absolute-form target naming the mTLS host → 421', async () => {
  assert.equal(await status('www.shop.test', req('www.shop.test', 'https://secure.shop.test/')), 421);
});

test('a verified client on secure.shop.test is served, with its identity and no forged one', async () => {
  const r = await rawRequest(port, req('secure.shop.test'), { servername: 'secure.shop.test', ...alice });
  assert.equal(r[0]?.status, 200, r.raw.slice(0, 300));
  const h = JSON.parse(r[0]!.body).headers as Record<string, string>;
  assert.match(h['x-client-cert-subject']!, /CN=alice/);
  assert.doesNotMatch(h['x-client-cert-subject']!, /admin/);
  assert.equal(h['x-client-verify'], 'SUCCESS');
});

test('a verified mTLS connection cannot be used for another host, even one the listener serves (421)', async () => {
  assert.equal(await status('secure.shop.test', req('www.shop.test'), alice), 421);
});

test('plain names keep working without a certificate, and forged identity headers are stripped', async () => {
  const r = await rawRequest(port, req('www.shop.test'), { servername: 'www.shop.test' });
  assert.equal(r[0]?.status, 200);
  const h = JSON.parse(r[0]!.body).headers as Record<string, string>;
  assert.equal(h['x-client-verify'], undefined);
  assert.equal(h['x-client-cert-subject'], undefined);
});

test('refusals are counted: tlsgate_requests_refused_total{reason="misdirected_mtls"|"misdirected_host"}', async () => {
  const mtls0 = await refusedCount('misdirected_mtls');
  const host0 = await refusedCount('misdirected_host');
  assert.equal(await status('www.shop.test', req('secure.shop.test')), 421);
  assert.equal(await status('secure.shop.test', req('www.shop.test'), alice), 421);
  await waitFor(async () => (await refusedCount('misdirected_mtls')) === mtls0 + 1, 'misdirected_mtls counted');
  await waitFor(async () => (await refusedCount('misdirected_host')) === host0 + 1, 'misdirected_host counted');
});

test('a client certificate from a foreign CA is a handshake failure with reason mtls_invalid', async () => {
  const count = async (): Promise<number> => {
    const text = (await gw.admin('GET', '/metrics')).body as string;
    const m = /tlsgate_handshake_failures_total\{[^}]*reason="mtls_invalid"[^}]*\} (\d+)/.exec(text);
    return m ? Number(m[1]) : 0;
  };
  const n0 = await count();
  const o = { servername: 'secure.shop.test', cert: mallory.cert, key: mallory.key };
  const r = await rawRequest(port, req('secure.shop.test'), o).catch((e: Error) => e);
  assert.ok(r instanceof Error || r.length === 0, 'the foreign certificate must not get a response');
  await waitFor(async () => (await count()) > n0, 'mtls_invalid counted');
  const h = await handshake(port, { servername: 'secure.shop.test' });
  assert.equal(h.ok, true); // the handshake alone (TLS 1.3) completes; the request above was refused
  h.socket?.destroy();
});

// The rule itself, over the real SNI map: which object serves a name decides.
test('checkAuthority: the object serving the authority decides, whatever the connection SNI was', () => {
  const mk = (id: string, snis: string[], ca?: string): SslSnapshot => ({
    id,
    type: 'server',
    snis,
    pairs: [],
    ...(ca !== undefined ? { clientCa: ca } : {}),
    clientDepth: 1,
    protocols: ['TLSv1.2', 'TLSv1.3'],
    ciphers: '',
    hash: id,
  });
  const plain = mk('shop', ['*.shop.test']);
  const sec = mk('secure', ['secure.shop.test'], 'CA-A');
  const sameCa = mk('secure2', ['admin.shop.test'], 'CA-A');
  const otherCa = mk('secure3', ['ops.shop.test'], 'CA-B');
  const sni = new SniMap([plain, sec, sameCa, otherCa], [
    ['*.shop.test', 'shop'],
    ['secure.shop.test', 'secure'],
    ['admin.shop.test', 'secure2'],
    ['ops.shop.test', 'secure3'],
  ]);
  const conn = (ssl: SslSnapshot | undefined, authorized: boolean) => ({
    ssl,
    authorized,
    remoteAddress: '',
    clientIdentity: () => undefined,
  });
  assert.equal(checkAuthority(sni, conn(plain, false), 'secure.shop.test'), 'misdirected_mtls');
  assert.equal(checkAuthority(sni, conn(undefined, false), 'secure.shop.test'), 'misdirected_mtls');
  assert.equal(checkAuthority(sni, conn(sec, true), 'secure.shop.test'), null);
  assert.equal(checkAuthority(sni, conn(sec, false), 'secure.shop.test'), 'misdirected_mtls');
  assert.equal(checkAuthority(sni, conn(sec, true), 'www.shop.test'), 'misdirected_host');
  assert.equal(checkAuthority(sni, conn(sec, true), null), 'misdirected_host');
  assert.equal(checkAuthority(sni, conn(sameCa, true), 'secure.shop.test'), 'misdirected_host');
  assert.equal(checkAuthority(sni, conn(plain, false), 'www.shop.test'), null);
  assert.equal(checkAuthority(sni, conn(plain, false), null), null);
  assert.equal(checkAuthority(sni, conn(plain, false), 'ops.shop.test'), 'misdirected_mtls');
  // A default_ssl with mTLS serves every unclaimed name: an unverified connection cannot
  // reach such a name (or an IP literal) by Host, a verified one for that object can.
  assert.equal(checkAuthority(sni, conn(plain, false), 'unknown.test', 'secure'), 'misdirected_mtls');
  assert.equal(checkAuthority(sni, conn(plain, false), '127.0.0.1', 'secure'), 'misdirected_mtls');
  assert.equal(checkAuthority(sni, conn(undefined, false), 'unknown.test', 'secure'), 'misdirected_mtls');
  assert.equal(checkAuthority(sni, conn(plain, false), 'unknown.test', 'shop'), null);
  assert.equal(checkAuthority(sni, conn(plain, false), 'www.shop.test', 'secure'), null);
});

test('default_ssl with mTLS: an unclaimed Host over an unverified connection gets 421 (the handshake would ask)', async () => {
  const cfg = readFileSync(gw.configPath, 'utf8');
  gw.write('gateway.yaml', cfg.replace('default_ssl: shop', 'default_ssl: secure'));
  assert.equal((await gw.admin('POST', '/v1/reload')).status, 200);
  try {
    assert.equal(await status('www.shop.test', req('unknown.test')), 421);
    assert.equal(await status('www.shop.test', req('127.0.0.1')), 421);
    assert.equal(await status('www.shop.test', req('www.shop.test')), 200);
    // Verified for the default object: its own names pass; other hosts stay 421 (an mTLS
    // connection serves only its object's SNIs).
    assert.equal(await status(undefined, req('secure.shop.test'), alice), 200);
    assert.equal(await status(undefined, req('unknown.test'), alice), 421);
  } finally {
    gw.write('gateway.yaml', cfg);
    assert.equal((await gw.admin('POST', '/v1/reload')).status, 200);
  }
});
