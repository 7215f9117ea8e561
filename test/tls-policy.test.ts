// TLS policy at the edge, as an attacker tries it: silent and slow clients, connection
// floods, renegotiation, weak ciphers, revoked and over-deep client certificates.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { CLI, Gateway, freePort, get, waitFor } from './helpers/gateway';
import { client, createCA, crl, issue, server, type Issued } from './helpers/pki';

const ca = createCA('Policy CA');
const site = server(ca, ['site.test']);
const strict = server(ca, ['strict.test']);

/** openssl s_client against 127.0.0.1:port; resolves stdout + stderr. `input` is typed after the handshake. */
function sClient(port: number, args: string[], input = ''): Promise<string> {
  return new Promise((resolve) => {
    const argv = ['s_client', '-connect', `127.0.0.1:${port}`, ...args];
    const p = execFile('openssl', argv, { timeout: 10_000 }, (_e, stdout, stderr) => resolve(stdout + stderr));
    p.stdin?.end(input);
  });
}

const cipherOf = (out: string): string =>
  /Cipher is (\S+)/.exec(out)?.[1] ?? /Cipher\s*:\s*(\S+)/.exec(out)?.[1] ?? 'refused';
const refused = (out: string): boolean => ['refused', '0000', '(NONE)'].includes(cipherOf(out));
/** The TLS 1.2 cipher the server picks for `sni` when the client offers `ciphers`, or 'refused'. */
const tls12 = async (port: number, sni: string, ciphers: string): Promise<string> => {
  const out = await sClient(port, ['-servername', sni, '-tls1_2', '-cipher', ciphers]);
  return refused(out) ? 'refused' : cipherOf(out);
};

/** A real ClientHello (first TCP read), captured from node:tls by a plain TCP server. */
function captureHello(servername: string, maxVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.3'): Promise<Buffer> {
  return new Promise<Buffer>((resolve) => {
    const srv = createServer((c) => c.once('data', (d: Buffer) => (resolve(d), c.destroy(), srv.close())));
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      const t = tlsConnect({ host: '127.0.0.1', port, servername, maxVersion });
      t.on('error', () => undefined);
    });
  });
}

async function failures(gw: Gateway, reason: string, listener = 'public'): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`, { headers: { 'x-api-key': gw.apiKey } });
  const name = `tlsgate_handshake_failures_total{listener="${listener}",reason="${reason}"}`;
  const line = (await res.text()).split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

/** Resolves when the socket closes, or rejects after deadlineMs (a hang, not a timing threshold). */
function closed(s: Socket, deadlineMs: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed && s.closed) return resolve();
    const t = setTimeout(() => reject(new Error(`${what}: still open after ${deadlineMs} ms`)), deadlineMs);
    s.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

function tlsOpen(port: number, servername: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => resolve(s));
    s.once('error', reject);
    s.once('close', () => reject(new Error('closed before the handshake finished')));
  });
}

/** One keep-alive request on an open socket; resolves the status line. */
function request(s: TLSSocket, host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    const onData = (d: Buffer): void => {
      data += d.toString();
      if (/\r\n\r\n/.test(data) && data.includes('\r\n\r\nok')) done();
    };
    const done = (): void => {
      s.off('data', onData);
      resolve(data.split('\r\n')[0]!);
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(`GET / HTTP/1.1\r\nhost: ${host}\r\n\r\n`);
  });
}

for (const engine of ['node', 'uws'] as const) describe(`TLS policy, engine ${engine}`, () => {
  const gw = new Gateway();
  let port = 0;
  let longPort = 0;
  let cappedPort = 0;

  before(async () => {
    [port, longPort, cappedPort, gw.adminPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    gw.write('site.crt', site.cert);
    gw.write('site.key', site.key);
    gw.write('strict.crt', strict.cert);
    gw.write('strict.key', strict.key);
    await gw.start(`
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners:
  - name: public
    listen: 127.0.0.1:${port}
    engine: ${engine}
    default_ssl: site
    timeouts: { handshake: 300ms, request_header: 300ms, keepalive: 300ms }
  - { name: long, listen: 127.0.0.1:${longPort}, engine: ${engine}, default_ssl: site, timeouts: { keepalive: 60s } }
  - { name: capped, listen: 127.0.0.1:${cappedPort}, engine: ${engine}, default_ssl: site, max_connections: 2 }
ssls:
  - { id: site, snis: [site.test], cert: "$file://site.crt", key: "$file://site.key" }
  - id: strict
    snis: [strict.test]
    cert: "$file://strict.crt"
    key: "$file://strict.key"
    ssl_ciphers: "ECDHE-ECDSA-AES256-GCM-SHA384"
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`);
  });
  after(() => gw.stop());

  const onlyUws = { skip: engine !== 'uws' && 'node applies them' };
  test('uws: timeouts and max_connections it cannot apply are warned about, not ignored silently', onlyUws, () => {
    const warned = (path: string): boolean =>
      gw.logs.some((l) => l.code === 'TLSGATE_E_ENGINE_UNSUPPORTED' && l.path === path);
    assert.ok(warned('listeners[0].timeouts'));
    assert.ok(warned('listeners[2].max_connections'));
  });

  test('a silent TCP client (no ClientHello) is closed, not kept forever', async () => {
    const s = netConnect({ host: '127.0.0.1', port });
    s.on('error', () => undefined);
    // node: timeouts.handshake (300 ms here); uws: uWS's compiled-in idle timeout (~10 s, README).
    await closed(s, engine === 'node' ? 5_000 : 30_000, 'silent TCP client');
  });

  const nodeOnly = (why: string): { skip: string | false } => ({ skip: engine === 'uws' && why });
  test('a partial ClientHello followed by silence is closed', nodeOnly('uws: same idle timeout as above'), async () => {
    const s = netConnect({ host: '127.0.0.1', port }, () => s.write(Buffer.from([22, 3, 1, 2, 0, 1, 0])));
    s.on('error', () => undefined);
    await closed(s, 5_000, 'partial ClientHello');
  });

  test('a whole ClientHello followed by silence is closed, counted as a handshake timeout', async () => {
    const hello = await captureHello('site.test');
    const s = netConnect({ host: '127.0.0.1', port }, () => s.write(hello));
    let answered = 0;
    s.on('data', (d: Buffer) => (answered += d.length));
    s.on('error', () => undefined);
    const before = await failures(gw, 'timeout');
    await closed(s, engine === 'node' ? 5_000 : 30_000, 'silent after ClientHello');
    assert.ok(answered > 0, 'the server answered the ClientHello before closing');
    if (engine === 'node') {
      await waitFor(async () => (await failures(gw, 'timeout')) > before || undefined, 'timeout counted');
    }
  });

  const split = 'a ClientHello split over two TLS records, sent in pieces, still selects its object';
  test(split, nodeOnly('node parser'), async () => {
    // TLS 1.2: the server's certificate travels in clear, so the selection is visible.
    const hello = await captureHello('strict.test', 'TLSv1.2');
    const der = new X509Certificate(strict.cert).raw;
    // Re-frame the handshake message into two records (legal, RFC 8446 §5.1).
    const body = hello.subarray(5);
    const cut = 40;
    const rec = (b: Buffer): Buffer => Buffer.concat([Buffer.from([22, 3, 1, b.length >> 8, b.length & 0xff]), b]);
    const bytes = Buffer.concat([rec(body.subarray(0, cut)), rec(body.subarray(cut))]);
    const s = netConnect({ host: '127.0.0.1', port });
    s.setNoDelay(true);
    s.on('error', () => undefined);
    let answer = Buffer.alloc(0);
    s.on('data', (d: Buffer) => (answer = Buffer.concat([answer, d])));
    await new Promise<void>((resolve) => s.once('connect', () => resolve()));
    for (let i = 0; i < bytes.length; i += 64) s.write(bytes.subarray(i, i + 64));
    await waitFor(() => answer.includes(der) || undefined, 'strict.test certificate in the server flight', 5_000);
    // A handshake record (22) with a ServerHello (2).
    assert.equal(answer[0], 22);
    assert.equal(answer[5], 2);
    s.destroy();
  });

  test('headers too slow → 408 Request Timeout', nodeOnly('uws closes without a status (README)'), async () => {
    const s = await tlsOpen(port, 'site.test');
    let data = '';
    s.on('data', (d) => (data += d));
    s.on('error', () => undefined);
    s.write('GET / HTTP/1.1\r\nhost: site.test\r\n');
    await closed(s, 5_000, 'slow headers');
    assert.match(data, /^HTTP\/1\.1 408 /);
  });

  test('keep-alive idle timeout is the configured one, per listener', nodeOnly('uWS: compiled in'), async () => {
    const [short, long] = await Promise.all([tlsOpen(port, 'site.test'), tlsOpen(longPort, 'site.test')]);
    for (const s of [short, long]) s.on('error', () => undefined);
    assert.equal(await request(short, 'site.test'), 'HTTP/1.1 200 OK');
    assert.equal(await request(long, 'site.test'), 'HTTP/1.1 200 OK');
    await closed(short, 5_000, 'idle keep-alive (300ms)');
    // The 60 s listener still holds its connection after the 300 ms one closed its own.
    assert.equal(long.destroyed, false);
    assert.equal(await request(long, 'site.test'), 'HTTP/1.1 200 OK');
    long.destroy();
  });

  const cap = 'max_connections: 2 → a third is refused at accept, the first two keep being served';
  test(cap, nodeOnly('uWS: no accept hook'), async () => {
    const a = await tlsOpen(cappedPort, 'site.test');
    const b = await tlsOpen(cappedPort, 'site.test');
    for (const s of [a, b]) s.on('error', () => undefined);
    const third = await tlsOpen(cappedPort, 'site.test').then(
      (s) => (s.destroy(), 'served'),
      () => 'refused',
    );
    assert.equal(third, 'refused');
    assert.equal(await request(a, 'site.test'), 'HTTP/1.1 200 OK');
    assert.equal(await request(b, 'site.test'), 'HTTP/1.1 200 OK');
    a.destroy();
    // A slot is free again once one closes.
    const again = (): Promise<true | undefined> =>
      tlsOpen(cappedPort, 'site.test').then((s) => (s.destroy(), true as const), () => undefined);
    await waitFor(again, 'a new connection once one closed');
    b.destroy();
  });

  test('client-initiated renegotiation is refused (openssl s_client -tls1_2, R)', async () => {
    const out = await sClient(port, ['-servername', 'site.test', '-tls1_2'], 'R\n');
    assert.match(out, /RENEGOTIATING/);
    assert.match(out, /no renegotiation|alert|errno|error/i);
    // And from node:tls: the renegotiation fails.
    const s = await tlsOpen(port, 'site.test');
    s.on('error', () => undefined);
    const res = await new Promise<string>((resolve) => {
      const ok = s.renegotiate({}, (err) => resolve(err ? 'refused' : 'renegotiated'));
      if (!ok) resolve('refused');
      s.once('close', () => resolve('refused'));
    });
    s.destroy();
    assert.equal(res, 'refused');
  });

  test('cipher policy: static RSA and CBC refused, ECDHE + AEAD accepted, server preference', async () => {
    assert.equal(await tls12(port, 'site.test', 'AES128-SHA'), 'refused', 'static RSA, CBC');
    assert.equal(await tls12(port, 'site.test', 'AES128-GCM-SHA256'), 'refused', 'static RSA');
    assert.equal(await tls12(port, 'site.test', 'ECDHE-ECDSA-AES128-SHA'), 'refused', 'CBC');
    assert.equal(await tls12(port, 'site.test', 'ECDHE-ECDSA-AES128-GCM-SHA256'), 'ECDHE-ECDSA-AES128-GCM-SHA256');
    // The client prefers AES-256; on node the server's order (AES-128 first) wins. uWS 20.30
    // sets no server preference and has no option for it (README).
    const pref = await tls12(port, 'site.test', 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256');
    assert.equal(pref, engine === 'node' ? 'ECDHE-ECDSA-AES128-GCM-SHA256' : 'ECDHE-ECDSA-AES256-GCM-SHA384');
    assert.match(cipherOf(await sClient(port, ['-servername', 'site.test', '-tls1_3'])), /^TLS_/);
  });

  test('ssl_ciphers per SSL object', async () => {
    assert.equal(await tls12(port, 'strict.test', 'ECDHE-ECDSA-AES128-GCM-SHA256'), 'refused');
    assert.equal(await tls12(port, 'strict.test', 'ECDHE-ECDSA-AES256-GCM-SHA384'), 'ECDHE-ECDSA-AES256-GCM-SHA384');
    assert.equal(await tls12(port, 'site.test', 'ECDHE-ECDSA-AES128-GCM-SHA256'), 'ECDHE-ECDSA-AES128-GCM-SHA256');
  });

  test('ALPN h2, then http/1.1, is negotiated', { skip: engine === 'uws' && 'uWS 20.30 has no ALPN (README)' }, async () => {
    // Issue 15: node listeners offer h2 first (http2: true by default); test/h2.test.ts covers http2: false.
    assert.match(await sClient(port, ['-servername', 'site.test', '-alpn', 'h2,http/1.1']), /ALPN protocol: h2/);
    assert.match(await sClient(port, ['-servername', 'site.test', '-alpn', 'http/1.1']), /ALPN protocol: http\/1\.1/);
  });
});

// --- Client certificates: revocation and depth (node engine: uws refuses client.ca) ---

describe('client certificates: revocation and client.depth (node engine)', () => {
  const clientCa = createCA('Client Root');
  const int1 = issue({ cn: 'Client Int 1', ca: true, issuer: clientCa });
  const int2 = issue({ cn: 'Client Int 2', ca: true, issuer: int1 });
  const direct = client(clientCa, 'direct');
  const revoked = client(clientCa, 'revoked');
  const viaOne = client(int1, 'via-one');
  const viaTwo = client(int2, 'via-two');
  const gw = new Gateway();
  let port = 0;

  before(async () => {
    [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
    for (const n of ['d0', 'd1', 'd2', 'crl']) {
      const s = server(ca, [`${n}.test`]);
      gw.write(`${n}.crt`, s.cert);
      gw.write(`${n}.key`, s.key);
    }
    gw.write('clients.pem', clientCa.cert);
    // With a CRL, OpenSSL checks every CA of the chain: one CRL per issuing CA.
    gw.write('clients.crl', crl(clientCa, [revoked]));
    const obj = (n: string, client: string): string =>
      `  - { id: ${n}, snis: [${n}.test], cert: "$file://${n}.crt", key: "$file://${n}.key", client: ${client} }`;
    await gw.start(`
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port} }]
ssls:
${obj('d0', '{ ca: "$file://clients.pem", depth: 0 }')}
${obj('d1', '{ ca: "$file://clients.pem", depth: 1 }')}
${obj('d2', '{ ca: "$file://clients.pem", depth: 2 }')}
${obj('crl', '{ ca: "$file://clients.pem", crl: "$file://clients.crl" }')}
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`);
  });
  after(() => gw.stop());

  const ask = (sni: string, id: Issued, chain: Issued[] = []): Promise<string> =>
    get(port, '/', { servername: sni, cert: id.cert + chain.map((c) => c.cert).join(''), key: id.key }).then(
      (r) => String(r.status),
      () => 'refused',
    );

  test('client.crl: a revoked client certificate is refused at the handshake and counted as mtls_invalid', async () => {
    assert.equal(await ask('crl.test', direct), '200');
    const before = await failures(gw, 'mtls_invalid');
    assert.equal(await ask('crl.test', revoked), 'refused');
    await waitFor(async () => (await failures(gw, 'mtls_invalid')) > before || undefined, 'mtls_invalid counted');
    // Without the CRL the same certificate passes: the refusal is the revocation.
    assert.equal(await ask('d1.test', revoked), '200');
  });

  test('client.crl is re-read with its file: a newly revoked certificate is refused after the change', async () => {
    assert.equal(await ask('crl.test', direct), '200');
    gw.write('clients.crl', crl(clientCa, [revoked, direct]));
    await waitFor(async () => (await ask('crl.test', direct)) === 'refused' || undefined, 'the new CRL served', 15_000);
    // Other certificates of the CA still pass.
    assert.equal(await ask('crl.test', client(clientCa, 'fresh')), '200');
  });

  test('client.depth 0: only a leaf issued by the CA itself', async () => {
    assert.equal(await ask('d0.test', direct), '200');
    assert.equal(await ask('d0.test', viaOne, [int1]), 'refused');
  });

  test('client.depth 1: one intermediate, not two', async () => {
    assert.equal(await ask('d1.test', direct), '200');
    assert.equal(await ask('d1.test', viaOne, [int1]), '200');
    assert.equal(await ask('d1.test', viaTwo, [int2, int1]), 'refused');
  });

  test('client.depth 2: two intermediates', async () => {
    assert.equal(await ask('d2.test', direct), '200');
    assert.equal(await ask('d2.test', viaOne, [int1]), '200');
    assert.equal(await ask('d2.test', viaTwo, [int2, int1]), '200');
  });
});

test('a flood of idle TCP connections under a low open-files limit: the worker survives and serves again', async () => {
  const gw = new Gateway();
  const [port, adminPort] = await Promise.all([freePort(), freePort()]);
  gw.write('site.crt', site.cert);
  gw.write('site.key', site.key);
  gw.write(
    'gateway.yaml',
    `
workers: 1
admin: { listen: 127.0.0.1:${adminPort}, api_keys: ["k"] }
listeners: [{ name: public, listen: 127.0.0.1:${port}, default_ssl: site, timeouts: { handshake: 500ms } }]
ssls: [{ id: site, snis: [site.test], cert: "$file://site.crt", key: "$file://site.key" }]
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`,
  );
  // 256 fds (soft and hard, as `ulimit -n 256` sets): fewer than the connections below.
  const argv = ['--nofile=256:256', process.execPath, CLI, 'start', '--config', gw.configPath];
  const proc = spawn('prlimit', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const flood: Socket[] = [];
  try {
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d));
    await waitFor(() => out.includes('tlsgate started') || undefined, 'gateway start', 20_000);
    const logged = out.split('\n').some((l) => l.includes('open files limit') && l.includes('"open_files":256'));
    assert.ok(logged, 'the limit is logged');
    assert.ok(out.includes('holds fewer connections than max_connections'), 'a cap that does not fit is warned about');
    const worker = readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim().split(/\s+/)[0];
    for (let i = 0; i < 400; i++) {
      const s = netConnect({ host: '127.0.0.1', port });
      s.on('error', () => undefined);
      flood.push(s);
    }
    // Every one is closed: refused at the cap, or after the handshake timeout.
    await Promise.all(flood.map((s, i) => closed(s, 15_000, `flood connection ${i}`)));
    assert.equal((await get(port, '/', { servername: 'site.test' })).status, 200);
    const after = readFileSync(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8').trim().split(/\s+/)[0];
    assert.equal(after, worker, 'the same worker serves: it never died');
  } finally {
    for (const s of flood) s.destroy();
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    await gw.stop();
  }
});

test('validate: unknown ssl_ciphers and a client.crl that is not a CRL are refused with their paths', async () => {
  const gw = new Gateway();
  try {
    gw.write('site.crt', site.cert);
    gw.write('site.key', site.key);
    gw.write('ca.pem', ca.cert);
    gw.write('bad.crl', '-----BEGIN X509 CRL-----\nbm90IGEgQ1JM\n-----END X509 CRL-----\n');
    const validate = (ssl: string): Promise<string> => {
      gw.write(
        'gateway.yaml',
        `
listeners: [{ name: public, listen: 127.0.0.1:1 }]
ssls:
  - { id: a, snis: [a.test], cert: "$file://site.crt", key: "$file://site.key", ${ssl} }
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`,
      );
      return new Promise<string>((resolve) => {
        const argv = [CLI, 'validate', '--config', gw.configPath];
        execFile(process.execPath, argv, (_e, stdout, stderr) => resolve(stdout + stderr));
      });
    };
    assert.match(await validate('ssl_ciphers: "NOT-A-CIPHER"'), /ssls\[0\]\.ssl_ciphers: .*OpenSSL knows none/);
    const crl = (file: string): Promise<string> => validate(`client: { ca: "$file://ca.pem", crl: "$file://${file}" }`);
    assert.match(await crl('bad.crl'), /ssls\[0\]\.client\.crl: OpenSSL cannot load it/);
    assert.match(await crl('ca.pem'), /ssls\[0\]\.client\.crl: holds no PEM CRL/);
  } finally {
    await gw.stop();
  }
});
