// An operator's scenario: one listener with exact, wildcard and default certificates,
// one listener with no default; routes by host and longest prefix. The same table runs
// against both engines (node:tls and uWebSockets.js).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { Gateway, freePort, get, handshake, waitFor } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

for (const engine of ['node', 'uws'] as const) describe(`SNI and routing, engine ${engine}`, () => {
  const ca = createCA('SNI Test CA');
  const exact = server(ca, ['a.example.com']);
  const wild = server(ca, ['*.example.com']);
  const fallback = server(ca, ['fallback.test']);
  const rsaOnly = server(ca, ['rsa.test'], { keyType: 'rsa' });
  const gw = new Gateway();
  let port = 0;
  let strictPort = 0;

  before(async () => {
    [port, strictPort, gw.adminPort] = await Promise.all([freePort(), freePort(), freePort()]);
    for (const [n, i] of Object.entries({ exact, wild, fallback, rsaOnly })) {
      gw.write(`${n}.crt`, i.cert);
      gw.write(`${n}.key`, i.key);
    }
    await gw.start(`
  workers: 2
  admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
  listeners:
    - { name: public, listen: 127.0.0.1:${port}, default_ssl: fallback }
    - { name: strict, listen: 127.0.0.1:${strictPort} }
  ssls:
    - { id: exact, snis: [a.example.com], cert: "$file://exact.crt", key: "$file://exact.key" }
    - { id: wild, snis: ["*.example.com"], cert: "$file://wild.crt", key: "$file://wild.key" }
    - { id: fallback, snis: [fallback.test], cert: "$file://fallback.crt", key: "$file://fallback.key" }
    - { id: rsa-only, snis: [rsa.test], cert: "$file://rsaOnly.crt", key: "$file://rsaOnly.key" }
  routes:
    - { id: api-exact, hosts: [a.example.com], paths: [/api], respond: { status: 200, body: exact-api } }
    - { id: api-wild, hosts: ["*.example.com"], paths: [/api], respond: { status: 200, body: wild-api } }
    - { id: api-v2, paths: [/api/v2], respond: { status: 200, body: v2 } }
    - { id: root, hosts: ["*"], paths: [/], respond: { status: 203, body: root, headers: { x-served-by: tlsgate } } }
    - { id: only-fallback, hosts: [fallback.test], paths: [/only], respond: { status: 200, body: only } }
  `);
  });
  after(() => gw.stop());

  const cn = async (servername: string | undefined, p = port): Promise<string | undefined> => {
    const r = await handshake(p, servername === undefined ? {} : { servername });
    return r.ok ? (r.cert!.subject as { CN?: string }).CN : `failed:${r.error}`;
  };

  test('an exact SNI beats a wildcard', async () => {
    assert.equal(await cn('a.example.com'), 'a.example.com');
  });

  test('a wildcard matches exactly one label', async () => {
    assert.equal(await cn('b.example.com'), '*.example.com');
    assert.equal(await cn('x.b.example.com'), 'fallback.test');
    assert.equal(await cn('example.com'), 'fallback.test');
  });

  test('SNI is matched case-insensitively and without a trailing dot', async () => {
    assert.equal(await cn('A.Example.COM'), 'a.example.com');
    assert.equal(await cn('B.EXAMPLE.com.'), '*.example.com');
  });

  test('no SNI or an unknown SNI gets the listener default_ssl', async () => {
    assert.equal(await cn(undefined), 'fallback.test');
    assert.equal(await cn('unknown.test'), 'fallback.test');
  });

  test('without default_ssl, no SNI and an unknown SNI fail the handshake', async () => {
    assert.match((await cn('unknown.test', strictPort)) ?? '', /^failed:/);
    assert.match((await cn(undefined, strictPort)) ?? '', /^failed:/);
    // The listener still serves a known name.
    assert.equal(await cn('a.example.com', strictPort), 'a.example.com');
  });

  test('an RSA-only object is presented for its SNI to ECDSA-preferring clients (node:tls, curl)', async () => {
    // The listener's default certificate is ECDSA: an ECDSA-capable client once got it.
    const r = await handshake(port, { servername: 'rsa.test' });
    assert.equal(r.cert?.subject?.CN, 'rsa.test');
    const tls12 = await handshake(port, { servername: 'rsa.test', maxVersion: 'TLSv1.2' });
    assert.equal(tls12.cert?.subject?.CN, 'rsa.test');
    const out = await new Promise<string>((resolve) => {
      const argv = ['-skv', '--resolve', `rsa.test:${port}:127.0.0.1`, `https://rsa.test:${port}/`];
      execFile('curl', argv, (_e, stdout, stderr) => resolve(stderr + stdout));
    });
    assert.match(out, /subject: CN=rsa\.test/, 'curl (default handshake) sees the RSA certificate');
    assert.match(out, /root/, 'and is served');
  });

  test('without default_ssl, an unknown SNI gets a fatal unrecognized_name alert', async () => {
    const out = await new Promise<string>((resolve) => {
      const argv = ['s_client', '-connect', `127.0.0.1:${strictPort}`, '-servername', 'unknown.test'];
      const p = execFile('openssl', argv, (_e, stdout, stderr) => resolve(stderr + stdout));
      p.stdin?.end();
    });
    assert.match(out, /unrecognized name|alert number 112/i);
  });

  test('an over-long or invalid SNI never matches', async () => {
    assert.equal(await cn('a'.repeat(63) + '.' + 'b'.repeat(63) + '.' + 'c'.repeat(63) + '.' + 'd'.repeat(63) + '.example.com'), 'fallback.test');
    if (engine === 'node') {
      assert.equal(await cn('bad_-.example.com'), 'fallback.test');
    } else {
      // Documented uws difference: uWS's own SNI tree matches `*.example.com` before
      // tlsgate sees the name, so once that wildcard is installed in a worker an invalid
      // label directly below it gets the wildcard certificate (which any valid name
      // there gets anyway). Names that never match a wildcard behave as on node.
      assert.ok(['fallback.test', '*.example.com'].includes((await cn('bad_-.example.com'))!));
      assert.equal(await cn('bad_-.test'), 'fallback.test');
    }
  });

  // uws keeps tickets per worker (see README); the node engine shares the keys.
  test('session tickets resume on any worker, TLS 1.3 and 1.2, and the resumed connection serves', { skip: engine !== 'node' && 'uws keeps session tickets per worker' }, async () => {
    /** One request; resolves its status line, the session to offer next and whether this one resumed. */
    const once = (maxVersion: 'TLSv1.2' | 'TLSv1.3', session?: Buffer): Promise<{ status: string; session?: Buffer; reused: boolean }> =>
      new Promise((resolve) => {
        let next: Buffer | undefined;
        let data = '';
        let reused = false;
        const s = tlsConnect({ host: '127.0.0.1', port, servername: 'a.example.com', rejectUnauthorized: false, maxVersion, ...(session ? { session } : {}) }, () => {
          reused = s.isSessionReused();
          s.write('GET /api HTTP/1.1\r\nhost: a.example.com\r\nconnection: close\r\n\r\n');
        });
        s.on('session', (b: Buffer) => (next = b));
        s.on('data', (d) => (data += d));
        s.on('error', () => undefined);
        s.on('close', () => resolve({ status: data.split('\r\n')[0] ?? '', ...(next ? { session: next } : {}), reused }));
      });
    for (const v of ['TLSv1.3', 'TLSv1.2'] as const) {
      const first = await once(v);
      assert.ok(first.session, `${v}: a ticket was issued`);
      // Two workers: several connections land on both.
      for (let i = 0; i < 6; i++) {
        const r = await once(v, first.session);
        assert.equal(r.reused, true, `${v}: resumed`);
        assert.equal(r.status, 'HTTP/1.1 200 OK', `${v}: a resumed connection is served`);
      }
    }
  });

  const nodeOnly = { skip: engine !== 'node' && 'uws keeps session tickets per worker' };
  test('a session resumes only on the SSL object that made it', nodeOnly, async () => {
    const first = await handshake(port, { servername: 'a.example.com', maxVersion: 'TLSv1.2', keep: true });
    const session = first.socket!.getSession();
    first.socket!.destroy();
    assert.ok(session);
    assert.equal((await handshake(port, { servername: 'a.example.com', maxVersion: 'TLSv1.2', session })).reused, true);
    // Same ticket keys, another object (wildcard): a full handshake with that object's certificate.
    const other = await handshake(port, { servername: 'b.example.com', maxVersion: 'TLSv1.2', session });
    assert.equal(other.reused, false);
    assert.equal(other.cert?.subject?.CN, '*.example.com');
  });

  test('routes: longest path prefix wins, then exact host over wildcard over any', async () => {
    const ask = async (host: string, path: string): Promise<string> => {
      const r = await get(port, path, { servername: host, host });
      return `${r.status} ${r.body}`;
    };
    assert.equal(await ask('a.example.com', '/api/x'), '200 exact-api');
    assert.equal(await ask('b.example.com', '/api/x'), '200 wild-api');
    assert.equal(await ask('b.example.com', '/api/v2/users'), '200 v2');
    assert.equal(await ask('other.test', '/api'), '203 root');
    assert.equal(await ask('fallback.test', '/only?x=1'), '200 only');
    assert.equal(await ask('a.example.com', '/only'), '203 root');
    const r = await get(port, '/', { servername: 'a.example.com' });
    assert.equal(r.headers['x-served-by'], 'tlsgate');
  });

  // uws: uWS 20.30 routes only origin-form targets ("/…"); an asterisk-form or absolute-form
  // target gets no answer and the connection closes at uWS's idle timeout (≈10 s). The
  // 404 itself is checked on uws in uws-engine.test.ts.
  test('no matching route → 404 with a stable JSON code', { skip: engine === 'uws' && 'uWS does not route asterisk-form targets (README: uws engine)' }, async () => {
    // The asterisk-form target (OPTIONS *) is under no path prefix.
    const r = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, method: 'OPTIONS', path: '*', servername: 'a.example.com', rejectUnauthorized: false, agent: false }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(r.status, 404);
    assert.equal(JSON.parse(r.body).error.code, 'TLSGATE_E_NO_ROUTE');
  });

  test('garbage on the socket closes that connection and nothing else', async () => {
    const pids = (await gw.status()).workers.map((w) => w.pid).sort();
    /** Write `bytes` on a fresh socket; resolve what came back once the server closes it (10 s deadline). */
    const closedAfter = (open: (onOpen: () => void) => import('node:net').Socket, bytes: Buffer): Promise<string> =>
      new Promise((resolve, reject) => {
        let data = '';
        const s = open(() => s.write(bytes));
        const timer = setTimeout(() => {
          s.destroy();
          reject(new Error(`the server kept the connection open; got ${JSON.stringify(data)}`));
        }, 10_000);
        s.on('data', (d: Buffer) => (data += d.toString('latin1')));
        s.on('error', () => undefined);
        s.on('close', () => {
          clearTimeout(timer);
          resolve(data);
        });
      });
    // A keep-alive connection opened before the garbage keeps serving after it.
    const kept = tlsConnect({ host: '127.0.0.1', port, servername: 'a.example.com', rejectUnauthorized: false });
    kept.on('error', () => undefined);
    let keptData = '';
    kept.on('data', (d: Buffer) => (keptData += d.toString('latin1')));
    const askKept = async (n: number): Promise<void> => {
      kept.write('GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n');
      const answered = (): boolean => keptData.split('HTTP/1.1 203').length - 1 === n && keptData.endsWith('root');
      await waitFor(answered, `answer ${n} on the kept connection`);
    };
    await askKept(1);

    // Bytes that are not TLS at all: no HTTP answer in clear text, the server closes.
    const notTls = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff garbage');
    const plain = await closedAfter((cb) => netConnect(port, '127.0.0.1', cb), notTls);
    assert.doesNotMatch(plain, /HTTP\/1\.1/);
    // Inside TLS: one valid request, then garbage. The valid one is answered, the garbage is
    // not (at most a 400), and the server closes the connection.
    const inTls = await closedAfter(
      (cb) => tlsConnect({ host: '127.0.0.1', port, servername: 'a.example.com', rejectUnauthorized: false }, cb),
      Buffer.from('GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n\x00\xff garbage\r\n\r\n', 'latin1'),
    );
    const statuses = [...inTls.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1]);
    assert.equal(statuses[0], '203', `the valid request is answered: ${JSON.stringify(inTls)}`);
    assert.ok(statuses.slice(1).every((c) => c === '400'), `garbage answered with ${statuses.slice(1).join(', ')}`);

    await askKept(2);
    assert.ok(!kept.destroyed, 'the keep-alive connection opened before the garbage still serves');
    kept.destroy();
    assert.equal(await cn('a.example.com'), 'a.example.com');
    assert.deepEqual((await gw.status()).workers.map((w) => w.pid).sort(), pids, 'no worker died');
  });

});