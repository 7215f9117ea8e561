// Attack round after issues 13-16 were merged: the authority / mTLS rule over HTTP/2 as an
// edge attacker tries it. The layout is the common one (plain `*.shop.test`, mTLS
// `secure.shop.test` beneath it, default_ssl = the plain object) plus a plain `other.test`
// with another certificate. Every request comes over a connection that is NOT verified for
// secure.shop.test, and must never be served for it; a request for other.test on the
// wildcard connection must be sent back (421) whatever form its authority takes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gateway, freePort } from './helpers/gateway';
import { client, createCA, server } from './helpers/pki';
import { h2Request, h2Session } from './helpers/h2-client';
import { FLAG, FRAME, H2Raw, block, frame, statusOf, type H2RawOptions } from './helpers/h2-raw';
import { rawRequest } from './helpers/raw-http';

const serverCa = createCA('Attack h2 server CA');
const clientCa = createCA('Attack h2 client CA');
const shop = server(serverCa, ['*.shop.test']);
const secure = server(serverCa, ['secure.shop.test', 'new.shop.test']);
const other = server(serverCa, ['other.test']);
const alice = client(clientCa, 'alice');
const gw = new Gateway();
let port = 0;
const seen: string[] = [];
const got: Array<{ url: string; headers: IncomingMessage['headers']; body: string }> = [];
const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
  seen.push(`${String(req.headers.host)} ${String(req.url)}`);
  let body = '';
  req.setEncoding('latin1');
  req.on('data', (d: string) => (body += d));
  req.on('end', () => {
    got.push({ url: String(req.url), headers: req.headers, body });
    res.end('from upstream');
  });
});

function config(secureSnis: string): string {
  return `
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port}, default_ssl: shop }]
ssls:
  - { id: shop, snis: ["*.shop.test"], cert: "$file://shop.crt", key: "$file://shop.key" }
  - { id: other, snis: [other.test], cert: "$file://other.crt", key: "$file://other.key" }
  - id: secure
    snis: [${secureSnis}]
    cert: "$file://secure.crt"
    key: "$file://secure.key"
    client: { ca: "$file://clients.pem" }
upstreams:
  - id: app
    nodes: [{ host: 127.0.0.1, port: ${(upstream.address() as AddressInfo).port} }]
    client_identity_headers: true
routes:
  - { id: ping, paths: [/ping], respond: { status: 200, body: pong } }
  - { id: app, paths: [/], upstream: app }
`;
}

before(async () => {
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
  for (const [n, v] of [['shop', shop], ['secure', secure], ['other', other]] as const) {
    gw.write(`${n}.crt`, v.cert);
    gw.write(`${n}.key`, v.key);
  }
  gw.write('clients.pem', clientCa.cert);
  await gw.start(config('secure.shop.test'));
});
after(async () => {
  await gw.stop();
  upstream.close();
});

type Fields = Array<[string, string]>;
const GET: Fields = [[':method', 'GET'], [':scheme', 'https']];

/**
 * The answer to one raw request, each on its own connection (statusOf reads a literal or
 * static-table :status; a second answer on a connection may reference the dynamic table).
 */
async function answer(o: H2RawOptions, fields: Fields, what: string): Promise<number | 'rst'> {
  const c = await H2Raw.connect(port, o);
  try {
    c.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, block(fields)));
    const f = await c.waitFrame(
      (x) => (x.stream === 1 && (x.type === FRAME.HEADERS || x.type === FRAME.RST_STREAM)) || x.type === FRAME.GOAWAY,
      what,
    );
    if (f.type === FRAME.HEADERS) return statusOf(f.payload) ?? 0;
    return 'rst';
  } finally {
    c.close();
  }
}

const plain: H2RawOptions = { servername: 'www.shop.test' };

/** Anything but a served answer. */
function refused(r: number | 'rst', what: string): void {
  assert.ok(r === 'rst' || r === 400 || r === 421, `${what}: got ${r}`);
}

test('spellings of the mTLS name in :authority / host are refused on the wildcard connection', async () => {
  const before = seen.length;
  {
    const tries: Array<[string, Fields]> = [
      ['upper case', [...GET, [':authority', 'SECURE.shop.test'], [':path', '/x']]],
      ['trailing dot', [...GET, [':authority', 'secure.shop.test.'], [':path', '/x']]],
      ['port', [...GET, [':authority', 'secure.shop.test:443'], [':path', '/x']]],
      ['empty port', [...GET, [':authority', 'secure.shop.test:'], [':path', '/x']]],
      ['userinfo', [...GET, [':authority', 'u@secure.shop.test'], [':path', '/x']]],
      ['host only, trailing dot', [...GET, [':path', '/x'], ['host', 'Secure.Shop.Test.']]],
      ['empty :authority, host mTLS', [...GET, [':authority', ''], [':path', '/x'], ['host', 'secure.shop.test']]],
      ['plain :authority, host mTLS + dot', [...GET, [':authority', 'www.shop.test'], [':path', '/x'],
        ['host', 'secure.shop.test.']]],
      ['mTLS :authority, plain host', [...GET, [':authority', 'secure.shop.test'], [':path', '/x'],
        ['host', 'www.shop.test']]],
      ['two :authority', [...GET, [':authority', 'www.shop.test'], [':authority', 'secure.shop.test'],
        [':path', '/x']]],
      ['two host', [...GET, [':path', '/x'], ['host', 'www.shop.test'], ['host', 'secure.shop.test']]],
      ['absolute :path, https', [...GET, [':authority', 'www.shop.test'], [':path', 'https://secure.shop.test/x']]],
      ['absolute :path, http', [...GET, [':authority', 'www.shop.test'], [':path', 'http://secure.shop.test/x']]],
      ['pseudo after host', [...GET, ['host', 'secure.shop.test'], [':authority', 'www.shop.test'], [':path', '/x']]],
      ['upper-case Host name', [...GET, [':authority', 'www.shop.test'], [':path', '/x'],
        ['Host', 'secure.shop.test']]],
      ['CONNECT', [[':method', 'CONNECT'], [':authority', 'secure.shop.test:443']]],
      ['extended CONNECT', [[':method', 'CONNECT'], [':protocol', 'websocket'], [':scheme', 'https'],
        [':authority', 'secure.shop.test'], [':path', '/x']]],
    ];
    for (const [what, fields] of tries) {
      refused(await answer(plain, fields, what), what);
    }
  }
  assert.deepEqual(seen.slice(before), [], 'nothing reached the upstream');
});

test('odd :path forms: absolute-form naming another certificate is 421 (no coalescing around the check)', async () => {
  {
    // RFC 9113 §8.3.1: :path is origin-form, or `*` for OPTIONS. An absolute :path would carry
    // an authority the coalescing check never saw (it reads :authority / host).
    const abs = await answer(plain, [...GET, [':authority', 'www.shop.test'], [':path', 'https://other.test/ping']],
      'absolute :path naming other.test');
    assert.ok(abs === 400 || abs === 421 || abs === 'rst', `absolute :path naming other.test: got ${abs}`);
    refused(await answer(plain, [...GET, [':authority', 'www.shop.test'], [':path', '*']], 'GET *'), 'GET *');
    refused(await answer(plain, [...GET, [':authority', 'www.shop.test'], [':path', 'ping']], 'relative'), 'relative');
    // `//x` is an origin-form path of this authority (normalized to /x), not a network path.
    assert.equal(await answer(plain, [...GET, [':authority', 'www.shop.test'], [':path', '//other.test/ping']],
      '//other.test/ping'), 200);
    const opt = await answer(plain, [[':method', 'OPTIONS'], [':scheme', 'https'], [':authority', 'www.shop.test'],
      [':path', '*']], 'OPTIONS *');
    assert.notEqual(opt, 'rst');
    // An IP literal is served by default_ssl (the plain object): served here, and no mTLS name.
    assert.equal(await answer(plain, [...GET, [':authority', '127.0.0.1'], [':path', '/ping']], 'IP'), 200);
    assert.equal(await answer(plain, [...GET, [':authority', '[::1]:443'], [':path', '/ping']], 'IPv6'), 200);
  }
});

test('a name that becomes an mTLS name in a reload is refused on an open h2 connection (same authority)', async () => {
  const s = await h2Session(port, { servername: 'www.shop.test' });
  try {
    // Twice: the second answer comes from the connection's "checked" cache.
    assert.equal((await h2Request(s, { ':path': '/ping', ':authority': 'new.shop.test' })).status, 200);
    assert.equal((await h2Request(s, { ':path': '/ping', ':authority': 'new.shop.test' })).status, 200);
    gw.write('gateway.yaml', config('secure.shop.test, new.shop.test'));
    assert.equal((await gw.admin('POST', '/v1/reload')).status, 200);
    const r = await h2Request(s, { ':path': '/ping', ':authority': 'new.shop.test' });
    assert.equal(r.status, 421);
    // And back: plain again on the same connection.
    gw.write('gateway.yaml', config('secure.shop.test'));
    assert.equal((await gw.admin('POST', '/v1/reload')).status, 200);
    assert.equal((await h2Request(s, { ':path': '/ping', ':authority': 'new.shop.test' })).status, 200);
  } finally {
    s.close();
    gw.write('gateway.yaml', config('secure.shop.test'));
    await gw.admin('POST', '/v1/reload');
  }
});

test('a verified mTLS h2 connection serves its own name only, in every spelling of another', async () => {
  const verified: H2RawOptions = { servername: 'secure.shop.test', cert: alice.cert, key: alice.key };
  {
    assert.equal(await answer(verified, [...GET, [':authority', 'SECURE.shop.test.'], [':path', '/ping']], 'own'), 200);
    for (const a of ['www.shop.test', 'other.test', '127.0.0.1', 'secure.shop.test.evil']) {
      refused(await answer(verified, [...GET, [':authority', a], [':path', '/ping']], a), a);
    }
    const abs: Fields = [...GET, [':authority', 'secure.shop.test'], [':path', 'https://www.shop.test/ping']];
    refused(await answer(verified, abs, 'absolute :path to the wildcard'), 'absolute :path to the wildcard');
  }
});

// uws refuses a snapshot with an mTLS object: its own gateway, plain objects only.
const plainGw = new Gateway();
let uwsPort = 0;
before(async () => {
  [uwsPort, plainGw.adminPort] = await Promise.all([freePort(), freePort()]);
  plainGw.write('shop.crt', shop.cert);
  plainGw.write('shop.key', shop.key);
  await plainGw.start(`
workers: 1
admin: { listen: 127.0.0.1:${plainGw.adminPort}, api_keys: ["${plainGw.apiKey}"] }
listeners: [{ name: u, listen: 127.0.0.1:${uwsPort}, engine: uws, default_ssl: shop }]
ssls: [{ id: shop, snis: ["*.shop.test"], cert: "$file://shop.crt", key: "$file://shop.key" }]
routes: [{ id: ping, paths: [/], respond: { status: 200, body: pong } }]
`);
});
after(() => plainGw.stop());

for (const engine of ['node', 'uws'] as const) {
  test(`${engine}: HTTP/1.1 Upgrade (h2c, websocket) and the h2 preface on TLS h1 are not honoured`, async () => {
    const p = engine === 'node' ? port : uwsPort;
    const o = { servername: 'www.shop.test', responses: 1 };
    const up = await rawRequest(p,
      'GET /ping HTTP/1.1\r\nHost: www.shop.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n' +
      'HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n', o);
    assert.ok(up.length === 1 && up[0]!.status !== 101, up.raw.slice(0, 200));
    const ws = await rawRequest(p,
      'GET /ping HTTP/1.1\r\nHost: www.shop.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n' +
      'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n', o);
    assert.ok(ws.length === 1 && ws[0]!.status !== 101, ws.raw.slice(0, 200));
    // The h2 preface over a connection whose ALPN chose http/1.1 (no ALPN sent): a bad request.
    const pri = await rawRequest(p, 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', { servername: 'www.shop.test' });
    assert.ok(pri.length === 0 || pri[0]!.status === 400, `got ${pri[0]?.status}`);
  });
}

const smuggle = 'h2 → HTTP/1.1 upstream: forged identity headers dropped, a body past content-length never sent';
test(smuggle, async () => {
  const c = await H2Raw.connect(port, plain);
  try {
    const forged: Fields = [['x-client-verify', 'SUCCESS'], ['x_client_cert_subject', 'CN=admin'],
      ['x-client-cert-fingerprint', 'AA'], ['x-forwarded-for', '10.0.0.1'], ['x-forwarded-host', 'secure.shop.test']];
    c.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1,
      block([...GET, [':authority', 'www.shop.test'], [':path', '/forged'], ...forged])));
    await c.waitFrame((x) => x.stream === 1 && x.type === FRAME.HEADERS, 'forged answer');
    const f = got.find((g) => g.url === '/forged');
    assert.ok(f, 'reached the upstream');
    assert.notEqual(f.headers['x-client-verify'], 'SUCCESS');
    assert.equal(f.headers['x-client-cert-subject'], undefined);
    assert.equal(f.headers.x_client_cert_subject, undefined);
    assert.equal(f.headers['x-client-cert-fingerprint'], undefined);
    assert.match(String(f.headers['x-forwarded-for']), /, 127\.0\.0\.1$/, 'appended (README)');
    assert.equal(f.headers['x-forwarded-host'], 'www.shop.test');
    // content-length: 3, then 3 bytes and a second request in the same DATA: nghttp2 resets
    // the stream (RFC 9113 §8.1.1); nothing past the 3 bytes may reach the upstream.
    const post: Fields = [[':method', 'POST'], [':scheme', 'https'], [':authority', 'www.shop.test'],
      [':path', '/cl'], ['content-length', '3']];
    c.send(frame(FRAME.HEADERS, FLAG.END_HEADERS, 3, block(post)),
      frame(FRAME.DATA, FLAG.END_STREAM, 3, Buffer.from('abcGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n')));
    await c.waitFrame((x) => x.stream === 3 && (x.type === FRAME.RST_STREAM || x.type === FRAME.HEADERS), 'cl');
    c.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 5,
      block([...GET, [':authority', 'www.shop.test'], [':path', '/after']])));
    await c.waitFrame((x) => x.stream === 5 && (x.type === FRAME.HEADERS || x.type === FRAME.RST_STREAM), 'after');
  } finally {
    c.close();
  }
  assert.ok(!got.some((g) => g.url.includes('smuggled') || g.body.includes('smuggled')), JSON.stringify(got));
});
