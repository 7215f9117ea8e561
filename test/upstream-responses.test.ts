// Upstreams answer in every way HTTP/1.1 allows, byte for byte (a net.Server writing raw
// responses), on both engines: interim 1xx responses do not make the gateway send the
// request twice; 204 / 304 / HEAD responses that carry a Content-Length have no body and
// the client's connection stays usable; trailers are passed or dropped, never a 502; a
// response with more header bytes than the gateway takes is a 502, not a truncated 200.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Gateway, freePort } from './helpers/gateway';
import { createCA, server } from './helpers/pki';
import { RawConnection, rawRequest } from './helpers/raw-conn';

const ca = createCA('upstream responses CA');
const site = server(ca, ['a.test']);

/** Raw response bytes per request path. */
function answer(method: string, path: string): string {
  const manyHeaders = (n: number): string =>
    Array.from({ length: n }, (_, i) => `X-Up-${i}: ${'v'.repeat(20)}\r\n`).join('');
  const ok = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok';
  switch (path) {
    case '/continue':
      return 'HTTP/1.1 100 Continue\r\n\r\n' + ok;
    case '/early-hints':
      return 'HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n' + ok;
    case '/not-modified':
      return 'HTTP/1.1 304 Not Modified\r\ncontent-length: 1234\r\netag: "x"\r\n\r\n';
    case '/no-content':
      return 'HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n';
    case '/head':
      // Content-Length of the GET body, no body bytes (RFC 9110 §9.3.2).
      return 'HTTP/1.1 200 OK\r\ncontent-length: 1234\r\n\r\n' + (method === 'HEAD' ? '' : 'x'.repeat(1234));
    case '/trailers':
      return (
        'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-checksum\r\n\r\n' +
        '5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n'
      );
    case '/some-headers':
      return `HTTP/1.1 200 OK\r\n${manyHeaders(200)}content-length: 2\r\n\r\nok`;
    case '/too-many-headers':
      // ~110 KiB of header lines: over what the gateway's HTTP client takes.
      return `HTTP/1.1 200 OK\r\n${manyHeaders(4000)}content-length: 2\r\n\r\nok`;
    default:
      return 'HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbase';
  }
}

for (const engine of ['node', 'uws'] as const) {
  describe(`${engine} engine: upstream responses`, () => {
    const gw = new Gateway(`tlsgate-upresp-${engine}-`);
    let port = 0;
    let upstream: Server;
    const seen: string[] = [];
    const sockets = new Set<Socket>();

    before(async () => {
      // Minimal HTTP/1.1 server: request head, then the body by Content-Length.
      upstream = createServer((s) => {
        sockets.add(s);
        s.on('close', () => sockets.delete(s));
        let buf = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          for (;;) {
            const end = buf.indexOf('\r\n\r\n');
            if (end < 0) return;
            const head = buf.subarray(0, end).toString('latin1');
            const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
            if (buf.length < end + 4 + len) return;
            buf = buf.subarray(end + 4 + len);
            const [method = '', path = ''] = head.split('\r\n')[0]!.split(' ');
            seen.push(`${method} ${path}`);
            s.write(answer(method, path));
          }
        });
        s.on('error', () => undefined);
      });
      await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
      const upPort = (upstream.address() as AddressInfo).port;
      port = await freePort();
      gw.write('a.crt', site.cert);
      gw.write('a.key', site.key);
      await gw.start(`
workers: 1
listeners: [{ name: edge, listen: 127.0.0.1:${port}, engine: ${engine}, default_ssl: a }]
ssls: [{ id: a, snis: [a.test], cert: "$file://a.crt", key: "$file://a.key" }]
upstreams: [{ id: raw, nodes: [{ host: 127.0.0.1, port: ${upPort} }] }]
routes: [{ id: all, paths: [/], upstream: raw }]
`);
    });

    after(async () => {
      await gw.stop();
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => upstream.close(() => r()));
    });

    const count = (what: string): number => seen.filter((s) => s === what).length;

    // undici 7 cannot read a 100 from an upstream (it destroys the connection on it); the
    // gateway never forwards Expect, so a conforming upstream never sends one. An upstream
    // that does gets its request once, and the client one final answer.
    for (const method of ['POST', 'GET'] as const) {
      test(`100 Continue from the upstream (${method}): one final answer, the request sent once`, async () => {
        const body = method === 'POST' ? 'Content-Length: 3\r\n\r\nabc' : '\r\n';
        const r = await rawRequest(port, `${method} /continue HTTP/1.1\r\nHost: a.test\r\n${body}`);
        assert.equal(r.hung, false);
        assert.ok(r.status === 200 || r.status === 502, `got ${r.statusLine || '(close)'}`);
        if (r.status === 200) assert.equal(r.body.toString(), 'ok');
        assert.equal(count(`${method} /continue`), 1, 'the request was sent again');
      });
    }

    test('103 Early Hints: the final 200 arrives, the request sent once', async () => {
      const r = await rawRequest(port, 'GET /early-hints HTTP/1.1\r\nHost: a.test\r\n\r\n');
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'ok');
      assert.equal(count('GET /early-hints'), 1);
    });

    for (const [path, status] of [['/not-modified', 304], ['/no-content', 204]] as const) {
      test(`${status} with Content-Length: no body, and the connection keeps working`, async () => {
        const c = new RawConnection(port);
        try {
          const r = await c.send(`GET ${path} HTTP/1.1\r\nHost: a.test\r\n\r\n`);
          assert.equal(r.status, status);
          assert.equal(r.body.length, 0);
          assert.equal(r.closed, false);
          // Any stray body bytes would be read as the start of this response.
          const next = await c.send('GET /base HTTP/1.1\r\nHost: a.test\r\n\r\n');
          assert.equal(next.statusLine, 'HTTP/1.1 200 OK');
          assert.equal(next.body.toString(), 'base');
        } finally {
          c.close();
        }
      });
    }

    test('HEAD with Content-Length: no body, the length kept, the connection keeps working', async () => {
      const c = new RawConnection(port);
      try {
        const r = await c.send('HEAD /head HTTP/1.1\r\nHost: a.test\r\n\r\n', true);
        assert.equal(r.status, 200);
        assert.equal(r.headers['content-length'], '1234');
        assert.equal(r.closed, false);
        const next = await c.send('GET /base HTTP/1.1\r\nHost: a.test\r\n\r\n');
        assert.equal(next.statusLine, 'HTTP/1.1 200 OK');
        assert.equal(next.body.toString(), 'base');
      } finally {
        c.close();
      }
    });

    test('trailers are passed or dropped, never a 502', async () => {
      const r = await rawRequest(port, 'GET /trailers HTTP/1.1\r\nHost: a.test\r\n\r\n');
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'hello');
      if (r.trailers.length > 0) assert.deepEqual(r.trailers.map((t) => t.toLowerCase()), ['x-checksum: abc']);
    });

    test('200 response headers arrive complete (none dropped)', async () => {
      const r = await rawRequest(port, 'GET /some-headers HTTP/1.1\r\nHost: a.test\r\n\r\n');
      assert.equal(r.status, 200);
      assert.equal(r.headerLines.filter((l) => /^x-up-\d+:/i.test(l)).length, 200);
      assert.equal(r.body.toString(), 'ok');
    });

    test('too many response headers → 502, not a truncated 200', async () => {
      const r = await rawRequest(port, 'GET /too-many-headers HTTP/1.1\r\nHost: a.test\r\n\r\n');
      assert.equal(r.status, 502, `got ${r.statusLine || '(close)'}`);
    });
  });
}
