// Issue 15: the known HTTP/2 attacks, sent as raw frames against a real gateway, each
// followed by a request from another client on another connection (the worker must stay
// responsive) and, where the gateway closes the attacker, the counter that says why.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gateway, freePort } from './helpers/gateway';
import { createCA, server } from './helpers/pki';
import { h2Get, h2Request, h2Session } from './helpers/h2-client';
import { CODE, FLAG, FRAME, H2Raw, block, frame, indexed, indexedLiteral, literal } from './helpers/h2-raw';

const ca = createCA('Attack test CA');
const shop = server(ca, ['*.shop.test']);
const gw = new Gateway();
const ports = { open: 0, slow: 0 };
let upstreamRequests = 0;
const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
  upstreamRequests++;
  req.resume();
  req.on('end', () => res.end('ok'));
});

before(async () => {
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  [ports.open, ports.slow, gw.adminPort] = await Promise.all([freePort(), freePort(), freePort()]);
  gw.write('shop.crt', shop.cert);
  gw.write('shop.key', shop.key);
  await gw.start(`
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners:
  - { name: open, listen: 127.0.0.1:${ports.open}, default_ssl: shop }
  - name: slow
    listen: 127.0.0.1:${ports.slow}
    default_ssl: shop
    timeouts: { request_header: 1s, keepalive: 1s }
ssls: [{ id: shop, snis: ["*.shop.test"], cert: "$file://shop.crt", key: "$file://shop.key" }]
upstreams: [{ id: app, nodes: [{ host: 127.0.0.1, port: ${(upstream.address() as AddressInfo).port} }] }]
routes:
  - { id: ping, paths: [/ping], respond: { status: 200, body: pong } }
  - { id: app, paths: [/], upstream: app }
`);
});
after(async () => {
  await gw.stop();
  upstream.close();
});

async function workerPids(): Promise<number[]> {
  return (await gw.status()).workers.map((w) => w.pid).sort();
}

async function closedCount(reason: string): Promise<number> {
  const text = (await gw.admin('GET', '/metrics')).body as string;
  const m = new RegExp(`tlsgate_h2_sessions_closed_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

/** Another client, on its own connection, is served by the same worker. */
async function othersServed(): Promise<void> {
  const direct = await h2Get(ports.open, { servername: 'www.shop.test', headers: { ':path': '/ping' } });
  assert.equal(direct.status, 200);
  const proxied = await h2Get(ports.open, { servername: 'www.shop.test', headers: { ':path': '/after' } });
  assert.equal(proxied.status, 200);
}

test('Rapid Reset (CVE-2023-44487): HEADERS + RST_STREAM pairs → GOAWAY ENHANCE_YOUR_CALM', async () => {
  const pids = await workerPids();
  const before = upstreamRequests;
  // A client already connected before the attack keeps being served during and after it.
  const bystander = await h2Session(ports.open, { servername: 'www.shop.test' });
  const c = await H2Raw.connect(ports.open, { servername: 'www.shop.test' });
  try {
    const pairs = 1000;
    for (let i = 0, id = 1; i < pairs && !c.closed; i += 100) {
      const burst: Buffer[] = [];
      for (let j = 0; j < 100; j++, id += 2) burst.push(c.get(id, 'www.shop.test', '/reset'), c.rst(id));
      c.send(...burst);
      assert.equal((await h2Request(bystander, { ':path': '/ping' })).status, 200);
    }
    const goaway = await c.waitFrame((f) => f.type === FRAME.GOAWAY, 'GOAWAY');
    assert.equal(goaway.code, CODE.ENHANCE_YOUR_CALM);
    await c.waitClosed('the attacker closed');
  } finally {
    c.close();
  }
  assert.equal((await h2Request(bystander, { ':path': '/during' })).status, 200);
  bystander.close();
  await othersServed();
  assert.ok(await closedCount('rapid_reset') >= 1);
  // The allowance (100 resets) stopped the attack long before its 1000 streams reached the upstream.
  assert.ok(upstreamRequests - before < 1000, `${upstreamRequests - before} upstream requests`);
  assert.deepEqual(await workerPids(), pids, 'no worker restarted');
});

test('a client that resets a few streams (a browser navigating away) keeps its connection', async () => {
  const c = await H2Raw.connect(ports.open, { servername: 'www.shop.test' });
  try {
    for (let id = 1; id <= 39; id += 2) c.send(c.get(id, 'www.shop.test', '/nav'), c.rst(id));
    c.send(c.get(41, 'www.shop.test', '/ping'));
    const ok = await c.waitFrame((f) => f.stream === 41 && f.type === FRAME.HEADERS, 'answer after 20 resets');
    assert.ok(ok);
    assert.equal(c.goaway(), undefined);
  } finally {
    c.close();
  }
});

test('CONTINUATION flood: a header block that never ends is cut off; others served', async () => {
  const pids = await workerPids();
  for (const payload of [literal('x-flood', 'a'.repeat(100)), Buffer.alloc(0)]) {
    const c = await H2Raw.connect(ports.open, { servername: 'www.shop.test' });
    try {
      const first = block([[':method', 'GET'], [':scheme', 'https'], [':authority', 'www.shop.test'], [':path', '/']]);
      c.send(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, first));
      for (let i = 0; i < 10 && !c.closed; i++) {
        c.send(...Array.from({ length: 100 }, () => frame(FRAME.CONTINUATION, 0, 1, payload)));
      }
      await c.waitClosed('the flooding connection closed');
      assert.ok(!c.frames.some((f) => f.type === FRAME.HEADERS), 'never answered');
    } finally {
      c.close();
    }
    await othersServed();
  }
  assert.deepEqual(await workerPids(), pids, 'no worker restarted');
});

test('HPACK bomb: a small block that decodes to megabytes is refused; others served', async () => {
  const pids = await workerPids();
  const c = await H2Raw.connect(ports.open, { servername: 'www.shop.test' });
  try {
    // One 4000-byte field in the dynamic table, then 2000 one-byte references to it: ~2 KB
    // on the wire, ~8 MB decoded.
    const b = Buffer.concat([
      block([[':method', 'GET'], [':scheme', 'https'], [':authority', 'www.shop.test'], [':path', '/bomb']]),
      indexedLiteral('x-bomb', 'a'.repeat(4000)),
      ...Array.from({ length: 2000 }, () => indexed(62)),
    ]);
    c.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, b));
    const f = await c.waitFrame(
      (x) => (x.stream === 1 && (x.type === FRAME.RST_STREAM || x.type === FRAME.HEADERS)) || x.type === FRAME.GOAWAY,
      'the bomb refused',
    );
    assert.notEqual(f.type, FRAME.HEADERS, 'the bomb must not be answered');
  } finally {
    c.close();
  }
  await othersServed();
  assert.deepEqual(await workerPids(), pids, 'no worker restarted');
});

test('idle: a connection that never completes a request is closed, whatever PINGs it sends', async () => {
  const before = await closedCount('idle');
  // A header block started and never finished, kept "active" with PINGs: closed at request_header (1 s).
  const c = await H2Raw.connect(ports.slow, { servername: 'www.shop.test' });
  try {
    const first = block([[':method', 'GET'], [':scheme', 'https'], [':authority', 'www.shop.test'], [':path', '/']]);
    c.send(frame(FRAME.HEADERS, FLAG.END_STREAM, 1, first));
    for (let i = 0; i < 100 && !c.closed; i++) {
      c.send(frame(FRAME.PING, 0, 0, Buffer.alloc(8, i)));
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(c.closed, 'closed while pinging');
    assert.ok(!c.frames.some((f) => f.type === FRAME.HEADERS), 'never answered');
  } finally {
    c.close();
  }
  // After a request, the connection idles for keepalive (1 s) and is closed with GOAWAY NO_ERROR.
  const k = await H2Raw.connect(ports.slow, { servername: 'www.shop.test' });
  try {
    k.send(k.get(1, 'www.shop.test', '/ping'));
    await k.waitFrame((f) => f.stream === 1 && f.type === FRAME.HEADERS, 'the answer');
    const g = await k.waitFrame((f) => f.type === FRAME.GOAWAY, 'GOAWAY at keepalive');
    assert.equal(g.code, CODE.NO_ERROR);
    await k.waitClosed('closed at keepalive');
  } finally {
    k.close();
  }
  assert.ok(await closedCount('idle') >= before + 2);
});
