// Issue 16: the request stage keeps per-snapshot work out of the request path (a direct
// answer is built once per route object, the SSL object serving a Host is looked up once
// per worker state). A reload must never leave a stale decision behind, on a keep-alive
// connection opened before it either: a Host that becomes an mTLS name is refused on the
// next request (the attacker's case: a cached "not mTLS" surviving the reload), and a
// changed direct answer is served at once, on both engines.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { Agent, request } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { Gateway, freePort } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

const serverCa = createCA('Cache server CA');
const clientCa = createCA('Cache client CA');
const shop = server(serverCa, ['*.shop.test']);
const secure = server(serverCa, ['secure.shop.test', 'new.shop.test']);
// uws refuses a snapshot with any mTLS object: its own gateway, without one.
const gws = { node: new Gateway(), uws: new Gateway() };
const ports = { node: 0, uws: 0 };
const upstream = createServer((_req: IncomingMessage, res: ServerResponse) => res.end('from upstream'));

function config(engine: 'node' | 'uws', secureSnis: string, body: string): string {
  const g = gws[engine];
  const secureSsl = `
  - id: secure
    snis: [${secureSnis}]
    cert: "$file://secure.crt"
    key: "$file://secure.key"
    client: { ca: "$file://clients.pem" }`;
  return `
workers: 1
admin: { listen: 127.0.0.1:${g.adminPort}, api_keys: ["${g.apiKey}"] }
listeners:
  - { name: l, listen: 127.0.0.1:${ports[engine]}, engine: ${engine}, default_ssl: shop }
ssls:
  - { id: shop, snis: ["*.shop.test"], cert: "$file://shop.crt", key: "$file://shop.key" }${
    engine === 'node' ? secureSsl : ''
  }
upstreams:
  - id: app
    nodes: [{ host: 127.0.0.1, port: ${(upstream.address() as AddressInfo).port} }]
routes:
  - { id: direct, paths: [/direct], respond: { status: 200, body: "${body}" } }
  - { id: app, paths: [/], upstream: app }
`;
}

before(async () => {
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  [ports.node, ports.uws, gws.node.adminPort, gws.uws.adminPort] = await Promise.all([
    freePort(),
    freePort(),
    freePort(),
    freePort(),
  ]);
  for (const engine of ['node', 'uws'] as const) {
    const g = gws[engine];
    g.write('shop.crt', shop.cert);
    g.write('shop.key', shop.key);
    g.write('secure.crt', secure.cert);
    g.write('secure.key', secure.key);
    g.write('clients.pem', clientCa.cert);
    await g.start(config(engine, 'secure.shop.test', 'first'));
  }
});
after(async () => {
  await Promise.all([gws.node.stop(), gws.uws.stop()]);
  upstream.close();
});

interface Answer {
  status: number;
  body: string;
  /** The request went over a connection an earlier request used. */
  reused: boolean;
  socket: TLSSocket;
}

/** One request over `agent` (keep-alive, one socket): a second call reuses the connection. */
function get(agent: Agent, port: number, servername: string, host: string, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const r = request(
      { host: '127.0.0.1', port, servername, path, agent, rejectUnauthorized: false, headers: { host } },
      (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (c: string) => (body += c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, body, reused: r.reusedSocket, socket: res.socket as TLSSocket }),
        );
      },
    );
    r.setTimeout(10_000, () => r.destroy(new Error('request timed out')));
    r.on('error', reject);
    r.end();
  });
}

async function reload(engine: 'node' | 'uws', secureSnis: string, body: string): Promise<void> {
  gws[engine].write('gateway.yaml', config(engine, secureSnis, body));
  assert.equal((await gws[engine].admin('POST', '/v1/reload')).status, 200);
}

const becomesMtls = 'a Host that becomes an mTLS name in a reload is refused (421), on a connection from before it too';
test(becomesMtls, async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const a = await get(agent, ports.node, 'www.shop.test', 'new.shop.test', '/');
    assert.equal(a.status, 200, 'served by the plain *.shop.test before the reload');
    assert.equal(a.body, 'from upstream');
    const again = await get(agent, ports.node, 'www.shop.test', 'new.shop.test', '/');
    assert.equal(again.status, 200);
    assert.ok(again.reused, 'same connection');
    await reload('node', 'secure.shop.test, new.shop.test', 'first');
    const b = await get(agent, ports.node, 'www.shop.test', 'new.shop.test', '/');
    assert.ok(b.reused, 'the connection from before the reload');
    assert.equal(b.status, 421);
    assert.match(b.body, /TLSGATE_E_MISDIRECTED/);
    const fresh = new Agent({ keepAlive: false });
    assert.equal((await get(fresh, ports.node, 'www.shop.test', 'NEW.shop.test.', '/')).status, 421);
    // Other names under the wildcard are still plain.
    assert.equal((await get(fresh, ports.node, 'www.shop.test', 'www.shop.test', '/')).status, 200);
  } finally {
    agent.destroy();
    await reload('node', 'secure.shop.test', 'first');
  }
});

for (const engine of ['node', 'uws'] as const) {
  test(`${engine}: a direct answer changed by a reload is served at once, on a kept connection too`, async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const sni = 'www.shop.test';
    try {
      const a = await get(agent, ports[engine], sni, sni, '/direct');
      assert.deepEqual([a.status, a.body], [200, 'first']);
      const same = await get(agent, ports[engine], sni, sni, '/direct');
      assert.deepEqual([same.status, same.body, same.reused], [200, 'first', true]);
      await reload(engine, 'secure.shop.test', 'second answer');
      const b = await get(agent, ports[engine], sni, sni, '/direct');
      assert.deepEqual([b.status, b.body], [200, 'second answer']);
    } finally {
      agent.destroy();
      await reload(engine, 'secure.shop.test', 'first');
    }
  });
}
