// Upstream transport settings on real sockets, both engines: keepalive.size and
// keepalive.idle_timeout (seen as connections opened and closed at the upstream),
// timeout.send (an upstream that stops reading a request body → 504), retries and
// retry_timeout (how many nodes a failing request tries, read from the failure log).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import { createServer as netServer, type Server as NetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { Gateway, freePort, waitFor, type LogLine } from './helpers/gateway';
import { createCA, server } from './helpers/pki';
import { rawRequest } from './helpers/raw-conn';

const ca = createCA('transport CA');
const site = server(ca, ['a.test']);
const upstreamCert = server(ca, ['localhost']);

/** A keep-alive HTTP upstream that numbers its connections and records which are closed. */
class Counted {
  readonly server: http.Server;
  port = 0;
  opened = 0;
  readonly closed = new Set<number>();
  readonly byRequest: number[] = [];
  constructor() {
    this.server = http.createServer({ keepAliveTimeout: 600_000 }, (req, res) => {
      this.byRequest.push((req.socket as Socket & { n: number }).n);
      req.resume();
      req.on('end', () => res.end('ok'));
    });
    this.server.on('connection', (s: Socket & { n: number }) => {
      s.n = ++this.opened;
      s.on('close', () => this.closed.add(s.n));
    });
  }
  async listen(): Promise<void> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    this.port = (this.server.address() as AddressInfo).port;
  }
}

async function listenNet(s: NetServer): Promise<number> {
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return (s.address() as AddressInfo).port;
}

const failures = (gw: Gateway, upstream: string): LogLine[] =>
  gw.logs.filter((l) => l.msg === 'upstream request failed' && l['upstream'] === upstream);

for (const engine of ['node', 'uws'] as const) {
  describe(`${engine} engine: upstream transport settings`, () => {
    const gw = new Gateway(`tlsgate-transport-${engine}-`);
    let port = 0;
    const short = new Counted();
    const long = new Counted();
    const none = new Counted();
    const servers: Array<http.Server | NetServer | https.Server> = [short.server, long.server, none.server];
    const sockets = new Set<Socket>();

    before(async () => {
      await Promise.all([short.listen(), long.listen(), none.listen()]);
      // Reads the request head, then nothing: its socket buffers fill with the body.
      const stuck = netServer((s) => {
        sockets.add(s);
        s.once('data', () => s.pause());
        s.on('error', () => undefined);
      });
      // Accepts TCP, never answers a ClientHello: a TLS connect that times out.
      const silent = netServer((s) => {
        sockets.add(s);
        s.on('error', () => undefined);
      });
      const live = https.createServer({ cert: upstreamCert.cert, key: upstreamCert.key }, (_q, r) => r.end('live'));
      servers.push(stuck, silent, live);
      const [stuckPort, silentPort, livePort] = await Promise.all([listenNet(stuck), listenNet(silent), listenNet(live)]);
      const dead = await Promise.all([freePort(), freePort(), freePort()]);
      const deadNodes = dead.map((p) => `{ host: 127.0.0.1, port: ${p} }`).join(', ');
      port = await freePort();
      gw.write('a.crt', site.cert);
      gw.write('a.key', site.key);
      await gw.start(`
workers: 1
listeners: [{ name: edge, listen: 127.0.0.1:${port}, engine: ${engine}, default_ssl: a }]
ssls: [{ id: a, snis: [a.test], cert: "$file://a.crt", key: "$file://a.key" }]
upstreams:
  - { id: short, nodes: [{ host: 127.0.0.1, port: ${short.port} }], keepalive: { idle_timeout: 300ms } }
  - { id: long, nodes: [{ host: 127.0.0.1, port: ${long.port} }], keepalive: { idle_timeout: 10m } }
  - { id: none, nodes: [{ host: 127.0.0.1, port: ${none.port} }], keepalive: { size: 0 } }
  - { id: stuck, nodes: [{ host: 127.0.0.1, port: ${stuckPort} }], timeout: { send: 300ms } }
  - { id: r0, nodes: [${deadNodes}], retries: 0 }
  - { id: r1, nodes: [${deadNodes}], retries: 1 }
  - { id: rdef, nodes: [${deadNodes}] }
  - id: budget
    scheme: https
    tls: { verify: false }
    nodes: [{ host: 127.0.0.1, port: ${silentPort} }, { host: 127.0.0.1, port: ${silentPort} }]
    timeout: { connect: 300ms }
    retry_timeout: 100ms
  - id: nobudget
    scheme: https
    tls: { verify: false }
    nodes: [{ host: 127.0.0.1, port: ${silentPort} }, { host: 127.0.0.1, port: ${livePort} }]
    timeout: { connect: 300ms }
routes:
  - { id: short, paths: [/short], upstream: short }
  - { id: long, paths: [/long], upstream: long }
  - { id: none, paths: [/none], upstream: none }
  - { id: stuck, paths: [/stuck], upstream: stuck }
  - { id: r0, paths: [/r0], upstream: r0 }
  - { id: r1, paths: [/r1], upstream: r1 }
  - { id: rdef, paths: [/rdef], upstream: rdef }
  - { id: budget, paths: [/budget], upstream: budget }
  - { id: nobudget, paths: [/nobudget], upstream: nobudget }
`);
    });

    after(async () => {
      await gw.stop();
      for (const s of sockets) s.destroy();
      for (const s of servers) {
        (s as http.Server).closeAllConnections?.();
        s.close();
      }
    });

    const get = (path: string) => rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: a.test\r\n\r\n`);

    test('keepalive.idle_timeout: a short one closes its idle connection while a long one keeps its own', async () => {
      assert.equal((await get('/long')).status, 200);
      assert.equal((await get('/short')).status, 200);
      await waitFor(() => short.closed.has(1) || undefined, 'the 300 ms idle connection closed');
      assert.equal(long.closed.size, 0, 'the 10 min idle connection was closed');
      // and the long one is still the one used
      assert.equal((await get('/long')).status, 200);
      assert.deepEqual(long.byRequest, [1, 1]);
    });

    test('keepalive.size: 0 keeps no idle connection; the default reuses one', async () => {
      for (let i = 0; i < 3; i++) assert.equal((await get('/none')).status, 200);
      assert.deepEqual(none.byRequest, [1, 2, 3]);
      await waitFor(() => none.closed.size === 3 || undefined, 'every size-0 connection closed');
      const before = long.byRequest.length;
      for (let i = 0; i < 3; i++) assert.equal((await get('/long')).status, 200);
      assert.deepEqual(long.byRequest.slice(before), [1, 1, 1]);
    });

    test('timeout.send: an upstream that stops reading the body → 504, logged as a send timeout', async () => {
      const chunk = Buffer.alloc(64 * 1024, 'b');
      let left = 512; // 32 MiB: more than the socket buffers between the gateway and the upstream
      const body = new Readable({
        read() {
          this.push(left-- > 0 ? chunk : null);
        },
      });
      const req = https.request({
        host: '127.0.0.1', port, method: 'POST', path: '/stuck', servername: 'a.test', rejectUnauthorized: false,
        headers: { host: 'a.test', 'content-length': String(512 * chunk.length) },
      });
      req.on('error', () => undefined);
      body.pipe(req);
      const [res] = (await once(req, 'response')) as [http.IncomingMessage];
      req.destroy();
      assert.equal(res.statusCode, 504);
      const f = await waitFor(() => failures(gw, 'stuck')[0], 'failure log');
      assert.equal(f['code'], 'TLSGATE_E_UPSTREAM_TIMEOUT');
      assert.match(String(f['reason']), /SEND_TIMEOUT/);
    });

    for (const [path, retries] of [['/r0', undefined], ['/r1', 1], ['/rdef', 2]] as const) {
      test(`retries (${path}): a connect failure tries ${retries ?? 0} other node(s)`, async () => {
        const r = await get(path);
        assert.equal(r.status, 502);
        const f = await waitFor(() => failures(gw, path.slice(1))[0], 'failure log');
        assert.equal(f['retries'], retries);
      });
    }

    test('retry_timeout: no retry starts once the budget is spent; without one, the next node answers', async () => {
      const r = await get('/budget');
      assert.equal(r.status, 504);
      const f = await waitFor(() => failures(gw, 'budget')[0], 'failure log');
      assert.equal(f['retries'], undefined, 'a retry started after retry_timeout');
      assert.match(String(f['reason']), /CONNECT_TIMEOUT/);
      // Control: the same connect timeout, no budget: the request goes on to the live node.
      const ok = await get('/nobudget');
      assert.equal(ok.status, 200);
      assert.equal(ok.body.toString(), 'live');
    });
  });
}
