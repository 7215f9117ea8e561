// Issue 15: HTTP/2 on the node engine. A shop with a wildcard `*.shop.test`, an mTLS
// `secure.shop.test` beneath it and a plain `other.test` with its own certificate, served
// over h2 and HTTP/1.1 on the same listener; real clients (node:http2, curl, h2load, nghttp)
// and a raw frame writer for what they never send.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { CLI, Gateway, freePort, handshake, waitFor } from './helpers/gateway';
import { client, createCA, server } from './helpers/pki';
import { rawRequest } from './helpers/raw-http';
import { h2Get, h2Request, h2Session } from './helpers/h2-client';
import { CODE, FLAG, FRAME, H2Raw, block, frame, statusOf } from './helpers/h2-raw';

const run = promisify(execFile);
const serverCa = createCA('Shop server CA');
const clientCa = createCA('Shop client CA');
const shop = server(serverCa, ['*.shop.test']);
const secure = server(serverCa, ['secure.shop.test']);
const other = server(serverCa, ['other.test']);
const alice = client(clientCa, 'alice');
const gw = new Gateway();
const uwsGw = new Gateway();
const ports = { public: 0, h1: 0, tight: 0, uws: 0 };

interface Seen {
  url: string;
  httpVersion: string;
  headers: IncomingMessage['headers'];
  bytes: number;
}
const seen: Seen[] = [];
let held: ServerResponse | undefined;
const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
  if (req.url === '/hang') return; // never answers: the stream stays open
  if (req.url === '/hold') {
    held = res; // answered when the test says so
    return;
  }
  let bytes = 0;
  req.on('data', (d: Buffer) => (bytes += d.length));
  req.on('end', () => {
    seen.push({ url: req.url ?? '', httpVersion: req.httpVersion, headers: req.headers, bytes });
    if (req.url === '/trailers') {
      res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
      res.write('with trailers');
      res.addTrailers({ 'x-checksum': 'abc123' });
      res.end();
      return;
    }
    if (req.url === '/hop') {
      res.writeHead(200, {
        'content-type': 'text/plain', connection: 'x-private, keep-alive', 'keep-alive': 'timeout=5',
        'x-private': 'hop', upgrade: 'h2c', 'proxy-connection': 'keep-alive', 'transfer-encoding': 'chunked',
        'set-cookie': ['a=1', 'b=2'],
      });
      res.end('hop body');
      return;
    }
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ url: req.url, v: req.httpVersion, bytes }));
  });
});

before(async () => {
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  [ports.public, ports.h1, ports.tight, ports.uws, gw.adminPort, uwsGw.adminPort] = await Promise.all([
    freePort(), freePort(), freePort(), freePort(), freePort(), freePort(),
  ]);
  for (const g of [gw, uwsGw]) {
    g.write('shop.crt', shop.cert);
    g.write('shop.key', shop.key);
  }
  gw.write('secure.crt', secure.cert);
  gw.write('secure.key', secure.key);
  gw.write('other.crt', other.cert);
  gw.write('other.key', other.key);
  gw.write('clients.pem', clientCa.cert);
  const up = (upstream.address() as AddressInfo).port;
  const tail = `
upstreams: [{ id: app, nodes: [{ host: 127.0.0.1, port: ${up} }] }]
routes:
  - { id: ping, paths: [/ping], respond: { status: 200, body: pong } }
  - { id: app, paths: [/], upstream: app }
`;
  await Promise.all([
    gw.start(`
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners:
  - { name: public, listen: 127.0.0.1:${ports.public}, default_ssl: shop }
  - { name: h1, listen: 127.0.0.1:${ports.h1}, default_ssl: shop, http2: false }
  - name: tight
    listen: 127.0.0.1:${ports.tight}
    default_ssl: shop
    limits: { h2_max_concurrent_streams: 4, max_body_size: 100, max_header_bytes: 2KiB }
    timeouts: { h2_stream_idle: 1s }
ssls:
  - { id: shop, snis: ["*.shop.test"], cert: "$file://shop.crt", key: "$file://shop.key" }
  - { id: other, snis: [other.test], cert: "$file://other.crt", key: "$file://other.key" }
  - id: secure
    snis: [secure.shop.test]
    cert: "$file://secure.crt"
    key: "$file://secure.key"
    client: { ca: "$file://clients.pem" }
${tail}`),
    uwsGw.start(`
workers: 1
admin: { listen: 127.0.0.1:${uwsGw.adminPort}, api_keys: ["${uwsGw.apiKey}"] }
listeners: [{ name: u, listen: 127.0.0.1:${ports.uws}, engine: uws, default_ssl: shop }]
ssls: [{ id: shop, snis: ["*.shop.test"], cert: "$file://shop.crt", key: "$file://shop.key" }]
${tail}`),
  ]);
});
after(async () => {
  await Promise.all([gw.stop(), uwsGw.stop()]);
  upstream.close();
});

async function alpn(port: number, offer: string[]): Promise<string | false | null> {
  const { connect } = await import('node:tls');
  return new Promise((resolve, reject) => {
    const s = connect({
      host: '127.0.0.1', port, servername: 'www.shop.test', ALPNProtocols: offer, rejectUnauthorized: false,
    });
    s.once('secureConnect', () => {
      resolve(s.alpnProtocol);
      s.destroy();
    });
    s.once('error', reject);
  });
}

test('ALPN: node listeners offer h2 then http/1.1; http2: false and the uws engine offer http/1.1 only', async () => {
  assert.equal(await alpn(ports.public, ['h2', 'http/1.1']), 'h2');
  assert.equal(await alpn(ports.public, ['http/1.1']), 'http/1.1');
  assert.equal(await alpn(ports.h1, ['h2', 'http/1.1']), 'http/1.1');
  // uWS negotiates no ALPN at all: the client falls back to HTTP/1.1.
  assert.notEqual(await alpn(ports.uws, ['h2', 'http/1.1']), 'h2');
  // A client that speaks only h2 is told so by an http/1.1-only listener (RFC 7301
  // no_application_protocol), not served HTTP/1.1 it did not offer.
  const out = await new Promise<string>((resolve) => {
    const argv = ['s_client', '-connect', `127.0.0.1:${ports.h1}`, '-servername', 'www.shop.test', '-alpn', 'h2'];
    const p = execFile('openssl', argv, { timeout: 10_000 }, (_e, stdout, stderr) => resolve(stdout + stderr));
    p.stdin?.end();
  });
  assert.match(out, /no application protocol/i);
});

test('node:http2 gets h2 answers from a direct route and a proxied one (upstream stays HTTP/1.1)', async () => {
  const s = await h2Session(ports.public, { servername: 'www.shop.test' });
  try {
    const ping = await h2Request(s, { ':path': '/ping' });
    assert.equal(ping.status, 200);
    assert.equal(ping.body, 'pong');
    const proxied = await h2Request(s, { ':path': '/api/x?q=1', 'x-trace': 'abc' });
    assert.equal(proxied.status, 200);
    assert.deepEqual(JSON.parse(proxied.body), { url: '/api/x?q=1', v: '1.1', bytes: 0 });
    const up = seen.at(-1)!;
    // node:http2 sends the port in :authority; it is the Host, as an HTTP/1.1 client's would be.
    assert.equal(up.headers.host, `www.shop.test:${ports.public}`);
    assert.equal(up.headers['x-forwarded-proto'], 'https');
    assert.equal(up.headers['x-forwarded-host'], `www.shop.test:${ports.public}`);
    assert.equal(up.headers['x-trace'], 'abc');
    // h2 body without content-length: sent upstream chunked, length unknown until the end.
    const post = await h2Request(s, { ':path': '/upload', ':method': 'POST' }, 'hello h2');
    assert.equal(post.status, 200);
    assert.equal(JSON.parse(post.body).bytes, 8);
    // Cookies split in several fields (RFC 9113 §8.2.3) reach the upstream as one header.
    await h2Request(s, { ':path': '/cookie', cookie: ['a=1', 'b=2'] });
    assert.equal(seen.at(-1)!.headers.cookie, 'a=1; b=2');
  } finally {
    s.close();
  }
});

test('HTTP/1.1 on the same listener is unchanged', async () => {
  const r = await rawRequest(ports.public, 'GET /ping HTTP/1.1\r\nHost: www.shop.test\r\nConnection: close\r\n\r\n', {
    servername: 'www.shop.test',
  });
  assert.equal(r[0]!.status, 200);
  assert.equal(r[0]!.body, 'pong');
  const p = await rawRequest(ports.public, 'GET /h1 HTTP/1.1\r\nHost: www.shop.test\r\nConnection: close\r\n\r\n', {
    servername: 'www.shop.test',
  });
  assert.equal(p[0]!.status, 200);
  assert.equal(JSON.parse(p[0]!.body).url, '/h1');
});

test('curl --http2 gets h2 from direct and proxied routes', async () => {
  for (const path of ['/ping', '/curl']) {
    const { stdout } = await run('curl', [
      '-sk', '--http2', '-o', '/dev/null', '-w', '%{http_version} %{http_code}',
      '--resolve', `www.shop.test:${ports.public}:127.0.0.1`, `https://www.shop.test:${ports.public}${path}`,
    ]);
    assert.equal(stdout, '2 200', path);
  }
});

test('h2load (100 streams on one connection) and nghttp get h2 answers from direct and proxied routes', async () => {
  for (const path of ['/ping', '/load']) {
    const url = `https://127.0.0.1:${ports.public}${path}`;
    const { stdout } = await run('h2load', ['-n', '200', '-c', '1', '-m', '100', url]);
    assert.match(stdout, /Application protocol: h2/, stdout);
    assert.match(stdout, /requests: 200 total, 200 started, 200 done, 200 succeeded/, stdout);
    assert.match(stdout, /status codes: 200 2xx/, stdout);
  }
  const { stdout } = await run('nghttp', ['-v', `https://127.0.0.1:${ports.public}/nghttp`]);
  assert.match(stdout, /:status: 200/);
  assert.match(stdout, /"url":"\/nghttp"/);
});

test('coalescing: a request for a name of another SSL object on this connection gets 421', async () => {
  // Wildcard connection (no client certificate) → the mTLS name beneath it: 421.
  const s = await h2Session(ports.public, { servername: 'www.shop.test' });
  try {
    const mtls = await h2Request(s, { ':path': '/ping', ':authority': 'secure.shop.test' });
    assert.equal(mtls.status, 421);
    assert.equal(JSON.parse(mtls.body).error.code, 'TLSGATE_E_MISDIRECTED');
    // Another certificate (a client never coalesces there unless fooled): 421.
    assert.equal((await h2Request(s, { ':path': '/ping', ':authority': 'other.test' })).status, 421);
    // Another name under the same wildcard certificate: served on this connection.
    assert.equal((await h2Request(s, { ':path': '/ping', ':authority': 'api.shop.test' })).status, 200);
  } finally {
    s.close();
  }
  // Verified mTLS connection: its own name is served, a name beneath the wildcard is not.
  const v = await h2Session(ports.public, { servername: 'secure.shop.test', cert: alice.cert, key: alice.key });
  try {
    assert.equal((await h2Request(v, { ':path': '/ping' })).status, 200);
    assert.equal((await h2Request(v, { ':path': '/ping', ':authority': 'www.shop.test' })).status, 421);
  } finally {
    v.close();
  }
  const text = (await gw.admin('GET', '/metrics')).body as string;
  assert.match(text, /tlsgate_requests_refused_total\{[^}]*reason="misdirected_cert"[^}]*\} [1-9]/);
  assert.match(text, /tlsgate_requests_refused_total\{[^}]*reason="misdirected_mtls"[^}]*\} [1-9]/);
});

test('hop-by-hop and HTTP/1-only headers are never sent on h2 responses', async () => {
  const r = await h2Get(ports.public, { servername: 'www.shop.test', headers: { ':path': '/hop' } });
  assert.equal(r.status, 200);
  assert.equal(r.body, 'hop body');
  for (const h of ['connection', 'keep-alive', 'x-private', 'upgrade', 'proxy-connection', 'transfer-encoding']) {
    assert.equal(r.headers[h], undefined, h);
  }
  assert.deepEqual(r.headers['set-cookie'], ['a=1', 'b=2']);
  // Error answers (the stage adds `connection: close` to some) too.
  const bad = await h2Get(ports.public, { servername: 'www.shop.test', headers: { ':path': '/a/../../x' } });
  assert.equal(bad.status, 400);
  assert.equal(bad.headers.connection, undefined);
});

test('connection-specific request headers are refused; te: trailers is the one te allowed', async () => {
  const c = await H2Raw.connect(ports.public, { servername: 'www.shop.test' });
  try {
    const bad: Array<[string, string]> = [
      ['connection', 'keep-alive'], ['keep-alive', 'timeout=5'], ['transfer-encoding', 'chunked'],
      ['upgrade', 'websocket'], ['proxy-connection', 'keep-alive'], ['te', 'gzip'],
    ];
    let id = 1;
    for (const h of bad) {
      c.send(c.get(id, 'www.shop.test', '/bad', [h]));
      const f = await c.waitFrame((x) => x.stream === id && x.type !== FRAME.WINDOW_UPDATE, h[0]);
      assert.equal(f.type, FRAME.RST_STREAM, `${h[0]} must reset the stream, not be answered`);
      assert.equal(f.code, CODE.PROTOCOL_ERROR, h[0]);
      id += 2;
    }
    c.send(c.get(id, 'www.shop.test', '/ping', [['te', 'trailers']]));
    const ok = await c.waitFrame((x) => x.stream === id && x.type === FRAME.HEADERS, 'te: trailers answer');
    assert.equal(statusOf(ok.payload), 200);
    assert.equal(c.goaway(), undefined, 'stream errors keep the connection');
  } finally {
    c.close();
  }
  assert.ok(!seen.some((s) => s.url === '/bad'), 'no refused request reached the upstream');
});

test('pseudo-headers are validated; :authority and Host must agree', async () => {
  const c = await H2Raw.connect(ports.public, { servername: 'www.shop.test' });
  const answer = async (id: number, fields: Array<[string, string]>, what: string): Promise<number | string> => {
    c.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, block(fields)));
    const f = await c.waitFrame((x) => x.stream === id && x.type !== FRAME.WINDOW_UPDATE, what);
    return f.type === FRAME.HEADERS ? statusOf(f.payload) ?? 'headers' : `rst ${f.code}`;
  };
  try {
    const base: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'https'], [':path', '/ping']];
    assert.equal(await answer(1, [...base, [':authority', 'www.shop.test']], 'valid'), 200);
    const noPath: Array<[string, string]> = [[':method', 'GET'], [':scheme', 'https'], [':authority', 'www.shop.test']];
    assert.equal(await answer(3, noPath, 'no :path'), `rst ${CODE.PROTOCOL_ERROR}`);
    assert.equal(await answer(5, [[':method', 'GET'], ['x-a', '1'], [':scheme', 'https'], [':path', '/ping'],
      [':authority', 'www.shop.test']], 'pseudo after regular'), `rst ${CODE.PROTOCOL_ERROR}`);
    assert.equal(await answer(7, [...base, [':authority', 'www.shop.test'], [':foo', 'x']], 'unknown pseudo'),
      `rst ${CODE.PROTOCOL_ERROR}`);
    assert.equal(await answer(9, [...base, [':authority', 'www.shop.test'], ['X-Upper', 'x']], 'upper-case name'),
      `rst ${CODE.PROTOCOL_ERROR}`);
    assert.equal(await answer(11, [[':method', 'GET'], [':scheme', 'http'], [':path', '/ping'],
      [':authority', 'www.shop.test']], ':scheme http'), 400);
    assert.equal(await answer(13, [...base, [':authority', 'www.shop.test'], ['host', 'secure.shop.test']],
      ':authority vs host'), 400);
    assert.equal(await answer(15, [...base, [':authority', 'www.shop.test'], ['host', 'WWW.shop.test']],
      'same host, other case'), 200);
    // Host alone (allowed by RFC 9113 §8.3.1) is the authority, with the same authority rule.
    assert.equal(await answer(17, [...base, ['host', 'api.shop.test']], 'host only'), 200);
    assert.equal(await answer(19, [...base, ['host', 'secure.shop.test']], 'host only, mTLS name'), 421);
    // Refused by nghttp2 (stream reset) or by the gateway (400): never served.
    assert.ok([400, `rst ${CODE.PROTOCOL_ERROR}`].includes(await answer(21, base, 'no authority at all')));
    assert.ok([400, `rst ${CODE.PROTOCOL_ERROR}`].includes(
      await answer(23, [[':method', 'CONNECT'], [':authority', 'www.shop.test:443']], 'CONNECT')));
  } finally {
    c.close();
  }
});

test('limits: max concurrent streams, header list size and max_body_size on h2', async () => {
  const c = await H2Raw.connect(ports.tight, { servername: 'www.shop.test' });
  try {
    const settings = await c.waitFrame((f) => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0, 'SETTINGS');
    const values = new Map<number, number>();
    for (let i = 0; i + 6 <= settings.payload.length; i += 6) {
      values.set(settings.payload.readUInt16BE(i), settings.payload.readUInt32BE(i + 2));
    }
    assert.equal(values.get(3), 4, 'SETTINGS_MAX_CONCURRENT_STREAMS');
    assert.ok((values.get(6) ?? 0) > 2048, 'SETTINGS_MAX_HEADER_LIST_SIZE above the stage limit');
    // Five streams waiting on an upstream that never answers: the fifth is beyond the
    // acknowledged limit, a connection error for nghttp2 (RFC 9113 §5.1.2 allows a stream
    // error too): the connection ends and stream 9 is never served.
    for (let id = 1; id <= 9; id += 2) c.send(c.get(id, 'www.shop.test', '/hang'));
    await c.waitClosed('the connection ended');
    assert.ok(!c.frames.some((f) => f.stream === 9 && f.type === FRAME.HEADERS), 'stream 9 not answered');
  } finally {
    c.close();
  }
  // Headers over max_header_bytes (2 KiB): 431 from the stage, as over HTTP/1.1.
  const big = await h2Get(ports.tight, {
    servername: 'www.shop.test', headers: { ':path': '/ping', 'x-big': 'a'.repeat(3000) },
  });
  assert.equal(big.status, 431);
  // max_body_size 100: declared larger → 413; undeclared and larger → 413 while it streams.
  const declared = await h2Get(ports.tight, {
    servername: 'www.shop.test',
    headers: { ':path': '/up', ':method': 'POST', 'content-length': '1000' },
    body: 'x'.repeat(1000),
  });
  assert.equal(declared.status, 413);
  const streamed = await h2Get(ports.tight, {
    servername: 'www.shop.test', headers: { ':path': '/up', ':method': 'POST' }, body: 'x'.repeat(1000),
  });
  assert.ok(streamed.status === 413 || streamed.rstCode !== undefined, `413 or a reset, got ${streamed.status}`);
  assert.ok(!seen.some((s) => s.url === '/up' && s.bytes > 100), 'no body over the limit reached the upstream');
  const small = await h2Get(ports.tight, {
    servername: 'www.shop.test', headers: { ':path': '/up', ':method': 'POST' }, body: 'x'.repeat(50),
  });
  assert.equal(small.status, 200);
});

test('a stream with no frame either way for h2_stream_idle is reset; the connection stays', async () => {
  const c = await H2Raw.connect(ports.tight, { servername: 'www.shop.test' });
  try {
    c.send(c.get(1, 'www.shop.test', '/hang'));
    const rst = await c.waitFrame((f) => f.stream === 1 && f.type === FRAME.RST_STREAM, 'idle stream reset');
    assert.equal(rst.code, CODE.CANCEL);
    c.send(c.get(3, 'www.shop.test', '/ping'));
    const ok = await c.waitFrame((f) => f.stream === 3 && f.type === FRAME.HEADERS, 'next stream');
    assert.equal(statusOf(ok.payload), 200);
  } finally {
    c.close();
  }
});

test('metrics label requests with the protocol', async () => {
  const text = (await gw.admin('GET', '/metrics')).body as string;
  assert.match(text, /tlsgate_protocol_requests_total\{[^}]*listener="public"[^}]*protocol="h2"[^}]*\} [1-9]/);
  assert.match(text, /tlsgate_protocol_requests_total\{[^}]*listener="public"[^}]*protocol="http\/1.1"[^}]*\} [1-9]/);
  // Sanity: the handshake helper still sees the wildcard certificate for an h2-capable name.
  const h = await handshake(ports.public, { servername: 'www.shop.test' });
  assert.ok(h.ok);
});

test('Expect: 100-continue over h2: 100 once the upstream is ready, then the body', async () => {
  const s = await h2Session(ports.public, { servername: 'www.shop.test' });
  try {
    const req = s.request({ ':method': 'POST', ':path': '/continue', expect: '100-continue' }, { endStream: false });
    await new Promise<void>((resolve, reject) => {
      req.once('continue', resolve);
      req.once('response', (h) => reject(new Error(`final status ${String(h[':status'])} before 100`)));
    });
    req.end('after continue');
    const status = await new Promise<number>((resolve) => req.once('response', (h) => resolve(Number(h[':status']))));
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    await new Promise((r) => req.once('end', r));
    assert.equal(status, 200);
    assert.equal(JSON.parse(body).bytes, 14);
  } finally {
    s.close();
  }
});

test('config: http2 is a per-listener switch; http2: true on a uws listener is refused', async () => {
  const yaml = `
listeners:
  - { name: n, listen: 127.0.0.1:${ports.public}, http2: false }
  - { name: u, listen: 127.0.0.1:${ports.uws}, engine: uws, http2: true }
ssls: [{ id: shop, snis: ["*.shop.test"], cert: "$file://shop.crt", key: "$file://shop.key" }]
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`;
  gw.write('h2-validate.yaml', yaml);
  const out = await new Promise<{ code: number; text: string }>((resolve) => {
    execFile(process.execPath, [CLI, 'validate', '--config', `${gw.dir}/h2-validate.yaml`], (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, text: stdout + stderr }));
  });
  assert.notEqual(out.code, 0);
  assert.match(out.text, /listeners\[1\]\.http2/);
  assert.match(out.text, /TLSGATE_E_ENGINE_UNSUPPORTED/);
  assert.doesNotMatch(out.text, /listeners\[0\]/);
});

test('response trailers announced by the upstream are relayed as an h2 trailer HEADERS frame', async () => {
  const s = await h2Session(ports.public, { servername: 'www.shop.test' });
  try {
    const req = s.request({ ':path': '/trailers' });
    let trailers: Record<string, unknown> | undefined;
    req.once('trailers', (t) => (trailers = t));
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    // 'trailers' comes before 'end' (the trailer HEADERS frame carries END_STREAM).
    await new Promise((r) => req.once('close', r));
    assert.equal(body, 'with trailers');
    assert.equal(trailers?.['x-checksum'], 'abc123');
  } finally {
    s.close();
  }
});

// Last: it stops the gateway.
test('drain (SIGTERM): GOAWAY to h2 clients, the stream in flight still completes', async () => {
  const s = await h2Session(ports.public, { servername: 'www.shop.test' });
  try {
    const goaway = new Promise<void>((r) => s.once('goaway', () => r()));
    const reply = h2Request(s, { ':path': '/hold' });
    await waitFor(() => held, 'the upstream holds the request');
    gw.proc!.kill('SIGTERM');
    await goaway;
    held!.end('released');
    const r = await reply;
    assert.equal(r.status, 200);
    assert.equal(r.body, 'released');
  } finally {
    s.close();
  }
});
