// Engine parity (issue 11 §3): one gateway with a node listener and a uws listener over
// the same snapshot; every HTTP case below runs against both. Both engines are adapters
// over one request stage, so a case that passes on one and fails on the other is a bug
// in an adapter. Raw TLS sockets send the exact bytes (early, late and pipelined bodies,
// forged headers, Expect: 100-continue).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer as createHttp, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import { createServer as createNet, type AddressInfo, type Server as NetServer } from 'node:net';
import { connect } from 'node:tls';
import { Agent, request } from 'undici';
import { Gateway, freePort, waitFor } from './helpers/gateway';
import { startTwoEngineGateway, type EnginePorts } from './helpers/two-engines';
import { createCA, server } from './helpers/pki';
import { rawRequest, parseResponses } from './helpers/raw-http';
import { streamBody } from './helpers/stream-body';

const ca = createCA('Parity CA');
const front = server(ca, ['*.parity.test']);
const backend = server(ca, ['backend.internal']);
const gw = new Gateway();
const ports: EnginePorts = { node: 0, uws: 0 };

interface Seen {
  node: string;
  method: string;
  url: string;
  rawHeaders: string[];
  bytes: number;
  sha: string;
}

/** An upstream that answers with what it received; /big/N answers N bytes. */
function echo(name: string) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const h = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      h.update(c);
    });
    req.on('end', () => {
      const big = /\/big\/(\d+)/.exec(req.url ?? '');
      if (big) {
        const n = Number(big[1]);
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': n });
        streamBody(res, n);
        return;
      }
      const seen: Seen = {
        node: name,
        method: req.method!,
        url: req.url!,
        rawHeaders: req.rawHeaders,
        bytes,
        sha: h.digest('hex'),
      };
      const body = JSON.stringify(seen);
      const len = Buffer.byteLength(body);
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': len, 'X-Upstream-Case': 'Kept' });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  };
}

/** A node of `flaky` that holds requests on /flaky/hold until it is killed. */
const held: ServerResponse[] = [];
let heldArrived: (() => void) | undefined;
const flakyHandler = (req: IncomingMessage, res: ServerResponse): void => {
  if ((req.url ?? '').includes('/hold')) {
    held.push(res);
    heldArrived?.();
    return;
  }
  echo('c')(req, res);
};
let c = createHttp(flakyHandler);
const a = createHttp(echo('a'));
const b = createHttp(echo('b'));
const tlsUp = createHttps({ cert: backend.cert, key: backend.key }, echo('tls'));
/** Accepts, reads the request, then resets: a node that dies with the request in flight. */
let resets = 0;
const resetter: NetServer = createNet((s) => {
  s.once('data', () => {
    resets++;
    s.resetAndDestroy();
  });
});
let deadPort = 0;

type Listenable = { listen(port: number, host: string, cb: () => void): unknown };
const listen = (s: Listenable): Promise<void> => new Promise((r) => s.listen(0, '127.0.0.1', r));
const portOf = (s: { address(): unknown }): number => (s.address() as AddressInfo).port;

before(async () => {
  await Promise.all([listen(a), listen(b), listen(tlsUp), listen(resetter), listen(c)]);
  deadPort = await freePort();
  gw.write('ca.pem', ca.cert);
  Object.assign(ports, await startTwoEngineGateway(gw, front, '["*.parity.test"]', `upstreams:
  - { id: echo, nodes: [{ host: 127.0.0.1, port: ${portOf(a)} }, { host: 127.0.0.1, port: ${portOf(b)} }] }
  - { id: one, nodes: [{ host: 127.0.0.1, port: ${portOf(a)} }] }
  - { id: failover, nodes: [{ host: 127.0.0.1, port: ${deadPort} }, { host: 127.0.0.1, port: ${portOf(a)} }] }
  - { id: resetting, nodes: [{ host: 127.0.0.1, port: ${portOf(resetter)} }, { host: 127.0.0.1, port: ${portOf(b)} }] }
  - id: flaky
    nodes:
      - { host: 127.0.0.1, port: ${portOf(a)} }
      - { host: 127.0.0.1, port: ${portOf(b)} }
      - { host: 127.0.0.1, port: ${portOf(c)} }
  - id: tls
    scheme: https
    nodes: [{ host: 127.0.0.1, port: ${portOf(tlsUp)} }]
    tls: { ca: "$file://ca.pem", sni: backend.internal }
routes:
  - { id: echo, paths: [/echo], upstream: echo }
  - { id: one, paths: [/one], upstream: one }
  - { id: failover, paths: [/failover], upstream: failover }
  - { id: reset, paths: [/reset], upstream: resetting }
  - { id: tls, paths: [/tls], upstream: tls }
  - { id: flaky, paths: [/flaky], upstream: flaky }
  - { id: limited, paths: [/limited], upstream: one, max_body_size: 1000 }
  - { id: trace, paths: [/trace], methods: [GET, TRACE], respond: { status: 200, body: traced } }
  - { id: direct, paths: [/direct], respond: { status: 200, body: direct } }
  - { id: empty, paths: [/empty], respond: { status: 204, body: "" } }
`));
});
after(async () => {
  await gw.stop();
  for (const s of [a, b, tlsUp, resetter, c]) s.close();
});

const SNI = 'app.parity.test';
const head = (method: string, path: string, extra = ''): string =>
  `${method} ${path} HTTP/1.1\r\nHost: ${SNI}\r\n${extra}\r\n`;
const sha = (buf: Buffer): string => createHash('sha256').update(buf).digest('hex');

for (const engine of ['node', 'uws'] as const) {
  describe(`engine ${engine}`, () => {
    const port = (): number => ports[engine];
    const one = async (request: string | Buffer, o: Parameters<typeof rawRequest>[2] = {}) => {
      const r = await rawRequest(port(), request, { servername: SNI, responses: 1, ...o });
      assert.ok(r.length >= 1, `no response: ${JSON.stringify(r.raw.slice(0, 300))}`);
      return r[0]!;
    };
    const seen = (body: string): Seen => JSON.parse(body) as Seen;

    test('no implementation banner: no uWebSockets (or similar) response header', async () => {
      for (const path of ['/direct', '/one/x', '/nowhere']) {
        const r = await one(head('GET', path));
        for (const name of Object.keys(r.headers)) {
          assert.doesNotMatch(name, /uwebsockets|server|x-powered-by/i, `${path}: ${name}`);
        }
      }
    });

    test('headers reach the upstream in order with duplicates kept (no Cookie merging)', async () => {
      const r = await one(head('GET', '/one/h?q=1&q=2', 'Cookie: a=1\r\nX-Dup: one\r\nCookie: b=2\r\nX-Dup: two\r\n'));
      assert.equal(r.status, 200);
      const s = seen(r.body);
      assert.equal(s.url, '/one/h?q=1&q=2');
      const lower = s.rawHeaders.map((x, i) => (i % 2 === 0 ? x.toLowerCase() : x));
      const pairs: string[] = [];
      for (let i = 0; i < lower.length; i += 2) {
        if (lower[i] === 'cookie' || lower[i] === 'x-dup') pairs.push(`${lower[i]}=${lower[i + 1]}`);
      }
      assert.deepEqual(pairs, ['cookie=a=1', 'x-dup=one', 'cookie=b=2', 'x-dup=two']);
      assert.equal(r.headers['x-upstream-case'], 'Kept');
    });

    test('forged identity headers and Connection-named headers never reach the upstream', async () => {
      const forged =
        'X-Client-Verify: SUCCESS\r\nX-Client-Cert-Subject: CN=root\r\nX-Client-Cert-Fingerprint: AA\r\n' +
        'Connection: keep-alive, X-Secret\r\nX-Secret: s\r\nX-Forwarded-For: 6.6.6.6\r\n';
      const s = seen((await one(head('GET', '/one/f', forged))).body);
      const names = s.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      for (const n of ['x-client-verify', 'x-client-cert-subject', 'x-client-cert-fingerprint', 'x-secret']) {
        assert.ok(!names.includes(n), n);
      }
      const at = s.rawHeaders.findIndex((n, i) => i % 2 === 0 && n.toLowerCase() === 'x-forwarded-for');
      const xff = s.rawHeaders[at + 1];
      assert.equal(xff, '6.6.6.6, 127.0.0.1');
    });

    test('a body that arrives with the headers (early), 100 KiB with Content-Length, is forwarded whole', async () => {
      const body = Buffer.alloc(100 * 1024, 'e');
      const req = Buffer.concat([Buffer.from(head('POST', '/one/early', `Content-Length: ${body.length}\r\n`)), body]);
      const r = await one(req);
      assert.equal(r.status, 200, r.body);
      assert.equal(seen(r.body).bytes, body.length);
      assert.equal(seen(r.body).sha, sha(body));
    });

    test('keep-alive: 100 KiB uploads in a row on one connection (the client is resumed after each body)', async () => {
      const agent = new Agent({ connections: 1, connect: { rejectUnauthorized: false, servername: SNI } });
      try {
        for (let i = 0; i < 4; i++) {
          const body = Buffer.alloc(100_000, String(i));
          const url = `https://127.0.0.1:${port()}/one/up${i}`;
          const r = await request(url, { dispatcher: agent, method: 'POST', body, headers: { host: SNI } });
          const s = seen(await r.body.text());
          assert.equal(r.statusCode, 200);
          assert.equal(s.sha, sha(body), `upload ${i}`);
        }
      } finally {
        await agent.close();
      }
    });

    test('a body that arrives 300 ms after the headers is forwarded', async () => {
      const body = Buffer.alloc(20_000, 'l');
      const first = head('POST', '/one/late', `Content-Length: ${body.length}\r\n`);
      const r = await one('', { parts: [first, body], pauseMs: 300 });
      assert.equal(r.status, 200, r.body);
      assert.equal(seen(r.body).sha, sha(body));
    });

    test('a chunked request body is forwarded', async () => {
      const chunks = ['a'.repeat(5000), 'b'.repeat(30_000)];
      const wire = chunks.map((c) => `${c.length.toString(16)}\r\n${c}\r\n`).join('') + '0\r\n\r\n';
      const r = await one(head('POST', '/one/chunked', 'Transfer-Encoding: chunked\r\n') + wire);
      assert.equal(r.status, 200, r.body);
      assert.equal(seen(r.body).sha, sha(Buffer.from(chunks.join(''))));
    });

    test('Expect: 100-continue: the client gets 100, sends the body, and the upstream gets it', async () => {
      const body = Buffer.alloc(50_000, 'c');
      const r = await new Promise<string>((resolve, reject) => {
        const s = connect({ host: '127.0.0.1', port: port(), servername: SNI, rejectUnauthorized: false });
        let raw = '';
        let sent = false;
        const h = head('POST', '/one/continue', `Content-Length: ${body.length}\r\nExpect: 100-continue\r\n`);
        s.on('secureConnect', () => s.write(h));
        s.on('data', (d: Buffer) => {
          raw += d.toString('latin1');
          if (!sent && raw.startsWith('HTTP/1.1 100')) {
            sent = true;
            s.write(body);
          }
          if (parseResponses(raw).length > 0) {
            s.destroy();
            resolve(raw);
          }
        });
        s.on('error', reject);
        setTimeout(() => {
          s.destroy();
          resolve(raw);
        }, 5_000).unref();
      });
      assert.match(r, /^HTTP\/1\.1 100 Continue\r\n/);
      const res = parseResponses(r)[0]!;
      assert.equal(res.status, 200, r.slice(0, 300));
      assert.equal(seen(res.body).sha, sha(body));
    });

    test('pipelined requests answered directly are all answered, in order', async () => {
      const three = head('GET', '/direct') + head('GET', '/nowhere') + head('GET', '/direct');
      const r = await rawRequest(port(), three, { servername: SNI, responses: 3 });
      assert.deepEqual(r.map((x) => x.status), [200, 404, 200], JSON.stringify(r.raw.slice(0, 1500)));
    });

    test('a direct 204 has no body and no Content-Length, and the connection goes on', async () => {
      const two = head('GET', '/empty') + head('GET', '/direct');
      const r = await rawRequest(port(), two, { servername: SNI, responses: 2, bodiless: [0] });
      assert.deepEqual(r.map((x) => x.status), [204, 200], JSON.stringify(r.raw.slice(0, 600)));
      assert.equal(r[0]!.headers['content-length'], undefined);
      assert.equal(r[1]!.body, 'direct');
    });

    test('pipelined proxied requests: node answers all in order; uws closes at once (uWS 20.30, README)', async () => {
      const three = head('GET', '/one/p1') + head('GET', '/direct') + head('GET', '/one/p3');
      const r = await rawRequest(port(), three, { servername: SNI, responses: 3 });
      if (engine === 'uws') {
        // uWS closes a connection whose next request arrives while a response is pending.
        assert.equal(r.closed, true, 'uws must close, not hang');
        assert.equal((await one(head('GET', '/one/after'))).status, 200);
        return;
      }
      assert.equal(r.length, 3, JSON.stringify(r.raw.slice(0, 1500)));
      assert.equal(seen(r[0]!.body).url, '/one/p1');
      assert.equal(r[1]!.body, 'direct');
      assert.equal(seen(r[2]!.body).url, '/one/p3');
    });

    test('a 3 MiB response streams whole; HEAD gets the length and no body', async () => {
      const n = 3 * 1024 * 1024;
      const r = await one(head('GET', `/one/big/${n}`), { timeoutMs: 20_000 });
      assert.equal(r.status, 200);
      assert.equal(r.body.length, n);
      const h = await rawRequest(port(), head('HEAD', '/one/x'), { servername: SNI, responses: 1, bodiless: [0] });
      assert.equal(h[0]!.status, 200);
      assert.ok(Number(h[0]!.headers['content-length']) > 0, h.raw);
      assert.equal(h[0]!.body, '');
      assert.notEqual(h[0]!.headers['connection'], 'close', 'the connection is kept after HEAD');
    });

    test('TRACE is refused (405 + Allow) unless the route lists it; a method outside methods → 405', async () => {
      const t = await one(head('TRACE', '/one/x'));
      assert.equal(t.status, 405);
      assert.match(t.headers['allow'] ?? '', /GET/);
      assert.doesNotMatch(t.headers['allow'] ?? '', /TRACE/);
      assert.equal((await one(head('TRACE', '/trace'))).status, 200);
      const p = await one(head('POST', '/trace', 'Content-Length: 0\r\n'));
      assert.equal(p.status, 405);
      assert.equal(p.headers['allow'], 'GET, TRACE');
    });

    test('max_body_size: Content-Length over it → 413 before the upstream; a chunked body past it → 413', async () => {
      const r = await one(head('POST', '/limited', 'Content-Length: 2000\r\n') + 'x'.repeat(2000));
      assert.equal(r.status, 413);
      assert.equal(JSON.parse(r.body).error.code, 'TLSGATE_E_BODY_TOO_LARGE');
      const small = await one(head('POST', '/limited', 'Content-Length: 10\r\n') + 'x'.repeat(10));
      assert.equal(small.status, 200);
      const wire = `3e8\r\n${'y'.repeat(1000)}\r\n3e8\r\n${'y'.repeat(1000)}\r\n0\r\n\r\n`;
      const c = await one(head('POST', '/limited', 'Transfer-Encoding: chunked\r\n') + wire);
      assert.equal(c.status, 413);
    });

    test('a node that refuses connections is skipped: every request answered', async () => {
      for (let i = 0; i < 4; i++) assert.equal((await one(head('GET', '/failover/x'))).status, 200);
    });

    test('an idempotent request whose upstream connection is reset before any byte is retried elsewhere', async () => {
      const r0 = resets;
      const results: number[] = [];
      for (let i = 0; i < 4; i++) results.push((await one(head('GET', '/reset/x'))).status);
      assert.deepEqual(results, [200, 200, 200, 200]);
      assert.ok(resets > r0, 'the resetting node was tried');
      // A POST is not replayed: it may have had an effect.
      const posts: number[] = [];
      for (let i = 0; i < 4; i++) {
        posts.push((await one(head('POST', '/reset/x', 'Content-Length: 2\r\n') + 'hi')).status);
      }
      assert.ok(posts.includes(502), `some POST reached the resetting node: ${posts.join(',')}`);
    });

    test('one of three nodes dies with requests in flight and comes back: no request fails', async () => {
      const cPort = portOf(c);
      // The other engine's run may have left c in passive-health back-off: wait until it is back.
      await waitFor(async () => {
        type Ups = { upstreams: Array<{ id: string; nodes: Array<{ port: number; healthy: boolean }> }> };
        const ups = (await gw.admin('GET', '/v1/upstreams')).body as Ups;
        return ups.upstreams.find((u) => u.id === 'flaky')?.nodes.find((n) => n.port === cPort)?.healthy;
      }, 'node c healthy');
      // Requests held by node c when it dies are reset before any response byte: retried.
      const arrived = new Promise<void>((r) => (heldArrived = r));
      const inFlight: Array<Promise<number>> = [];
      for (let i = 0; i < 3; i++) {
        inFlight.push(one(head('GET', `/flaky/hold${i}`), { timeoutMs: 10_000 }).then((r) => r.status));
      }
      await arrived;
      c.closeAllConnections();
      await new Promise<void>((r) => c.close(() => r()));
      held.length = 0;
      const during: number[] = [];
      for (let i = 0; i < 6; i++) during.push((await one(head('GET', '/flaky/down'))).status);
      assert.deepEqual(await Promise.all(inFlight), [200, 200, 200]);
      assert.deepEqual(during, [200, 200, 200, 200, 200, 200]);
      c = createHttp(flakyHandler);
      await new Promise<void>((r) => c.listen(cPort, '127.0.0.1', r));
    });

    test('tls.sni: the upstream is verified against tls.sni, not the client Host', async () => {
      const r = await one(head('GET', '/tls/x'));
      assert.equal(r.status, 200, r.body);
      assert.equal(seen(r.body).node, 'tls');
    });

    test('smooth WRR spreads requests over both nodes', async () => {
      const who: string[] = [];
      for (let i = 0; i < 4; i++) who.push(seen((await one(head('GET', '/echo/x'))).body).node);
      assert.equal(who.filter((n) => n === 'a').length, 2, who.join(','));
      assert.equal(who.filter((n) => n === 'b').length, 2, who.join(','));
    });

    test('a head larger than the parser allows: node answers 431 with a JSON body; uws answers or closes', async () => {
      // Default limits: 32 KiB of headers + 8 KiB request line; Node's parser bounds both together.
      const big = head('GET', '/one/x', `X-Big: ${'b'.repeat(48 * 1024)}\r\n`);
      const r = await rawRequest(port(), big, { servername: SNI, responses: 1, timeoutMs: 4_000 });
      if (engine === 'uws') {
        const what = JSON.stringify(r.raw.slice(0, 200));
        assert.ok(r.length === 1 ? r[0]!.status >= 400 : r.closed, `uws must answer 4xx or close: ${what}`);
        return;
      }
      assert.equal(r[0]?.status, 431, JSON.stringify(r.raw.slice(0, 300)));
      assert.equal(JSON.parse(r[0]!.body).error.code, 'TLSGATE_E_HEADERS_TOO_LARGE');
      assert.equal(r[0]!.headers['connection'], 'close');
    });

    test('the client closing mid-response does not take the worker down', async () => {
      const before = (await gw.status()).workers.map((w) => w.pid);
      const s = connect({ host: '127.0.0.1', port: port(), servername: SNI, rejectUnauthorized: false });
      await new Promise<void>((r) => s.once('secureConnect', () => r()));
      s.write(head('GET', `/one/big/${8 * 1024 * 1024}`));
      await new Promise<void>((r) => s.once('data', () => r()));
      s.destroy();
      // Early body on a request answered without reading it, then gone.
      const early = head('POST', '/direct', 'Content-Length: 100000\r\n') + 'z'.repeat(50_000);
      await rawRequest(port(), early, { servername: SNI, responses: 1 });
      assert.equal((await one(head('GET', '/direct'))).status, 200);
      await waitFor(async () => (await gw.status()).workers.map((w) => w.pid).join() === before.join(), 'same workers');
    });
  });
}
