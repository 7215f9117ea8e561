// A hostile or broken upstream (a net.Server writing raw bytes), on both engines: what the
// gateway's upstream client (src/proxy/h1-client.ts) must refuse. Ambiguous framing (two
// Content-Length, Content-Length with Transfer-Encoding, bad chunk sizes) is never relayed as a
// complete response; a connection is reused only after a clean response to a fully written
// request — never after an early answer, extra bytes, `Connection: close`, HTTP/1.0 or a
// Keep-Alive timeout too short to trust. Each reuse is checked on the upstream's own sockets.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Gateway, freePort, waitFor } from './helpers/gateway';
import { createCA, server } from './helpers/pki';
import { RawConnection, rawRequest } from './helpers/raw-conn';

const ca = createCA('hostile upstream CA');
const site = server(ca, ['a.test']);

const base = 'HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbase';

/** Raw response bytes per path; a second element is written in a later write. */
function answer(path: string): [string, string?] {
  switch (path) {
    case '/two-cl':
      return ['HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 5\r\n\r\nokevil'];
    case '/two-cl-same':
      return ['HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nok'];
    case '/cl-te':
      return ['HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'];
    case '/bad-chunk':
      return ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'];
    case '/chunk-overflow':
      return ['HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10000000000000001\r\nA\r\n0\r\n\r\n'];
    case '/extra':
      return ['HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil'];
    case '/extra-later':
      return ['HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok', 'HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil'];
    case '/conn-close':
      return ['HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok'];
    case '/http10':
      return ['HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok'];
    case '/short-hint':
      return ['HTTP/1.1 200 OK\r\nkeep-alive: timeout=1\r\ncontent-length: 2\r\n\r\nok'];
    default:
      return [base];
  }
}

interface Seen {
  conn: number;
  line: string;
}

for (const engine of ['node', 'uws'] as const) {
  describe(`${engine} engine: a hostile upstream`, () => {
    const gw = new Gateway(`tlsgate-hostile-${engine}-`);
    let port = 0;
    let upstream: Server;
    const seen: Seen[] = [];
    const sockets = new Map<number, Socket>();
    const closed = new Set<number>();
    let nextConn = 0;

    before(async () => {
      // Request heads only: a body is left unread, so its bytes are what the upstream would
      // take for a next request — the smuggling an upstream client must never allow.
      upstream = createServer((s) => {
        const id = ++nextConn;
        sockets.set(id, s);
        s.on('close', () => closed.add(id));
        let buf = Buffer.alloc(0);
        let early = false;
        s.on('data', (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          for (;;) {
            const end = buf.indexOf('\r\n\r\n');
            if (end < 0) return;
            const head = buf.subarray(0, end).toString('latin1');
            const [method = '', path = ''] = head.split('\r\n')[0]!.split(' ');
            const len = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
            if (path === '/early' && !early) {
              // Answered on its head; the body is still read by its Content-Length, as a real
              // server does: a request sent next on this connection would be taken as body bytes.
              early = true;
              seen.push({ conn: id, line: `${method} ${path}` });
              s.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nearly');
            }
            if (buf.length < end + 4 + len) return;
            buf = buf.subarray(end + 4 + len);
            if (path === '/early') {
              early = false;
              continue;
            }
            seen.push({ conn: id, line: `${method} ${path}` });
            const [first, later] = answer(path);
            s.write(first);
            if (later !== undefined) setImmediate(() => s.write(later));
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
# A long idle time: only the client's own checks close a connection in these tests.
upstreams: [{ id: raw, nodes: [{ host: 127.0.0.1, port: ${upPort} }], keepalive: { idle_timeout: 5m } }]
routes: [{ id: all, paths: [/], upstream: raw }]
`);
    });

    after(async () => {
      await gw.stop();
      for (const s of sockets.values()) s.destroy();
      await new Promise<void>((r) => upstream.close(() => r()));
    });

    const connOf = (line: string): number => {
      const all = seen.filter((s) => s.line === line);
      assert.ok(all.length > 0, `the upstream never got ${line}`);
      return all[all.length - 1]!.conn;
    };

    /** After a request on `path`: the connection that carried it is closed and never carries another. */
    async function notReused(path: string, method = 'GET', closedFirst = false): Promise<void> {
      const conn = connOf(`${method} ${path}`);
      const at = seen.length;
      // Bytes that come after the response in a later read: seen only once they arrive.
      if (closedFirst) await waitFor(() => closed.has(conn) || undefined, `upstream connection of ${path} closed`, 5_000);
      // At once: a connection kept idle would carry it (no waiting for an idle timeout to close it).
      const r = await rawRequest(port, 'GET /base HTTP/1.1\r\nHost: a.test\r\n\r\n');
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'base', 'stray upstream bytes were served as a response');
      assert.notEqual(connOf('GET /base'), conn);
      assert.deepEqual(seen.slice(at).filter((s) => s.conn === conn), [], 'the connection carried another request');
      await waitFor(() => closed.has(conn) || undefined, `upstream connection of ${path} closed`, 5_000);
    }

    test('control: a clean response keeps its connection for the next request', async () => {
      await rawRequest(port, 'GET /base HTTP/1.1\r\nHost: a.test\r\n\r\n');
      const first = connOf('GET /base');
      const r = await rawRequest(port, 'GET /base HTTP/1.1\r\nHost: a.test\r\n\r\n');
      assert.equal(r.body.toString(), 'base');
      assert.equal(connOf('GET /base'), first, 'the keep-alive connection was not reused');
      assert.equal(closed.has(first), false);
    });

    for (const path of ['/two-cl', '/two-cl-same', '/cl-te']) {
      test(`${path}: ambiguous response framing → 502, the connection dropped`, async () => {
        const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: a.test\r\n\r\n`);
        assert.equal(r.status, 502, `got ${r.statusLine || '(close)'}`);
        assert.doesNotMatch(r.body.toString(), /evil/);
        await notReused(path);
      });
    }

    for (const path of ['/bad-chunk', '/chunk-overflow']) {
      test(`${path}: never a complete response to the client, the connection dropped`, async () => {
        const c = new RawConnection(port, { deadlineMs: 5_000 });
        try {
          const r = await c.send(`GET ${path} HTTP/1.1\r\nHost: a.test\r\n\r\n`);
          // The head may have been committed before the bad chunk: then the only signal is a cut
          // (with or without the status line, as the engine had flushed it).
          if (r.status === 502) assert.equal(r.body.toString().includes('hello'), false);
          else assert.equal(r.closed, true, `a broken chunked body was relayed as complete: ${r.statusLine}`);
          assert.ok(r.status === 0 || r.status === 200 || r.status === 502, `got ${r.statusLine}`);
          assert.equal(r.body.toString().includes('hello'), false);
        } finally {
          c.close();
        }
        await notReused(path);
      });
    }

    for (const path of ['/extra', '/extra-later']) {
      test(`${path}: bytes after a complete response → that connection is not reused`, async () => {
        const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: a.test\r\n\r\n`);
        assert.equal(r.status, 200);
        assert.equal(r.body.toString(), 'ok');
        await notReused(path, 'GET', path === '/extra-later');
      });
    }

    for (const path of ['/conn-close', '/http10', '/short-hint']) {
      test(`${path}: the upstream did not allow keep-alive → the connection is not reused`, async () => {
        const r = await rawRequest(port, `GET ${path} HTTP/1.1\r\nHost: a.test\r\n\r\n`);
        assert.equal(r.status, 200);
        assert.equal(r.body.toString(), 'ok');
        await notReused(path);
      });
    }

    test('an answer before the request body ended: relayed, the rest of the body never goes upstream', async () => {
      const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n';
      const rest = `${'y'.repeat(20)}${smuggled}`;
      // The upstream's view: it answered and waits for 5 + rest.length body bytes. A reused
      // connection would feed it the next request as those bytes (or the rest, as a request).
      const c = new RawConnection(port, { deadlineMs: 5_000 });
      try {
        const head = `POST /early HTTP/1.1\r\nHost: a.test\r\nContent-Length: ${5 + rest.length}\r\n\r\n`;
        const r = await c.send(`${head}xxxxx`);
        assert.equal(r.status, 200);
        assert.equal(r.body.toString(), 'early');
        c.socket.write(rest);
        await notReused('/early', 'POST');
      } finally {
        c.close();
      }
      assert.equal(seen.some((s) => s.line === 'GET /smuggled'), false, 'the rest of a body became a request');
    });
  });
}
