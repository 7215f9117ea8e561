// mTLS exemptions (issue 17): a partner API `partner.test` requires a client certificate
// except on `/health` (a monitor without one), `= /exact` and `/status/*`. The handshake asks
// for a certificate without requiring it; every request without a verified one is then served
// only on an exempt path, and every trick to reach another path (issue 11's edge rules:
// escapes, dot segments, `//`, `;params`, case, absolute form, another Host or SNI, HTTP/2,
// pipelining, renegotiation) gets a refusal, never the upstream. Node engine: the uws engine
// cannot serve exemptions (uWS 20.30 gives a request no access to the client certificate), so
// `validate` refuses them there (last tests).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { CLI, Gateway, freePort, handshake, waitFor } from './helpers/gateway';
import { h2Request, h2Session } from './helpers/h2-client';
import { client, createCA, issue, server, type Issued } from './helpers/pki';
import { rawRequest } from './helpers/raw-http';

const serverCa = createCA('Exempt server CA');
const clientCa = createCA('Exempt client CA');
const foreignCa = createCA('Exempt foreign CA');
const inter = issue({ cn: 'Exempt client int', ca: true, issuer: clientCa });
const alice = client(clientCa, 'alice');
const mallory = client(foreignCa, 'mallory');
/** One intermediate: more than the partner object's depth 0 allows. */
const deep = client(inter, 'deep');
const withChain = (id: Issued, chain: Issued[] = []): { cert: string; key: string } => ({
  cert: id.cert + chain.map((c) => c.cert).join(''),
  key: id.key,
});
const gw = new Gateway();
let port = 0;
/** Every request the upstream received: its target and identity headers. */
const seen: Array<{ url: string; verify?: string; subject?: string }> = [];
const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
  const verify = req.headers['x-client-verify'];
  const subject = req.headers['x-client-cert-subject'];
  seen.push({
    url: req.url ?? '', ...(typeof verify === 'string' ? { verify } : {}),
    ...(typeof subject === 'string' ? { subject } : {}),
  });
  req.resume();
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ url: req.url }));
});

const config = (skip: string): string => `
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port}, default_ssl: plain }]
ssls:
  - { id: plain, snis: [plain.test], cert: "$file://plain.crt", key: "$file://plain.key" }
  - id: partner
    snis: [partner.test]
    cert: "$file://partner.crt"
    key: "$file://partner.key"
    client: { ca: "$file://clients.pem", depth: 0${skip} }
  - id: strict
    snis: [strict.test]
    cert: "$file://strict.crt"
    key: "$file://strict.key"
    client: { ca: "$file://clients.pem", depth: 0 }
upstreams:
  - id: app
    nodes: [{ host: 127.0.0.1, port: ${(upstream.address() as AddressInfo).port} }]
    client_identity_headers: true
routes:
  - { id: health, paths: [/health], upstream: app }
  - { id: app, paths: [/], upstream: app }
`;
const SKIP = ', skip_mtls_paths: [/health, "= /exact", "/status/*"]';

before(async () => {
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
  for (const [id, sni] of [['plain', 'plain.test'], ['partner', 'partner.test'], ['strict', 'strict.test']]) {
    const s = server(serverCa, [sni!]);
    gw.write(`${id}.crt`, s.cert);
    gw.write(`${id}.key`, s.key);
  }
  gw.write('clients.pem', clientCa.cert);
  await gw.start(config(SKIP));
});
after(async () => {
  await gw.stop();
  upstream.close();
});

type Id = { cert: string; key: string };
const get = (target: string, host = 'partner.test', close = true): string =>
  `GET ${target} HTTP/1.1\r\nHost: ${host}\r\n` +
  `X-Client-Verify: SUCCESS\r\nX-Client-Cert-Subject: CN=admin\r\n${close ? 'Connection: close\r\n' : ''}\r\n`;

/** Status and error code of one request; how many requests reached the upstream meanwhile. */
async function ask(
  request: string, id?: Id, servername = 'partner.test',
): Promise<{ status: number; code: string | undefined; reached: number }> {
  const before = seen.length;
  const r = await rawRequest(port, request, { ...(servername ? { servername } : {}), ...(id ?? {}) });
  assert.equal(r.length, 1, `one response expected, got: ${JSON.stringify(r.raw.slice(0, 200))}`);
  const body = r[0]!.body;
  const code = body.startsWith('{"error"') ? (JSON.parse(body) as { error: { code: string } }).error.code : undefined;
  return { status: r[0]!.status, code, reached: seen.length - before };
}

async function refusedCount(reason: string): Promise<number> {
  const text = (await gw.admin('GET', '/metrics')).body as string;
  const m = new RegExp(`tlsgate_requests_refused_total\\{[^}]*reason="${reason}"[^}]*\\} (\\d+)`).exec(text);
  return m ? Number(m[1]) : 0;
}

test('without a certificate: the handshake succeeds, exempt paths are served without identity headers', async () => {
  const hs = await handshake(port, { servername: 'partner.test', maxVersion: 'TLSv1.2' });
  assert.equal(hs.ok, true, 'a certificate is asked for, not required');
  for (const path of ['/health', '/health/', '/health/deep/x', '/exact', '/status/ok', '/health?probe=1']) {
    const r = await ask(get(path));
    assert.equal(r.status, 200, path);
    assert.equal(r.reached, 1, path);
    const last = seen[seen.length - 1]!;
    assert.equal(last.verify, undefined, `${path}: forged X-Client-Verify stripped, none added`);
    assert.equal(last.subject, undefined, `${path}: forged subject stripped`);
  }
});

test('without a certificate: any other path is 400 CLIENT_CERT_REQUIRED, counted, never upstream', async () => {
  const before = await refusedCount('mtls_required');
  for (const path of ['/', '/admin', '/exact/x', '/exact/', '/status', '/healthx', '/HEALTH', '/Health/x']) {
    const r = await ask(get(path));
    assert.deepEqual([r.status, r.code, r.reached], [400, 'TLSGATE_E_CLIENT_CERT_REQUIRED', 0], path);
  }
  assert.equal(await refusedCount('mtls_required'), before + 8);
});

test('path tricks reach exactly what the router reaches, never a non-exempt path without a certificate', async () => {
  // [target, status, what the upstream must get when served]
  const cases: Array<[string, number, string?]> = [
    ['/health/../admin', 400],
    ['/health/%2e%2e/admin', 400],
    ['/health/./../admin', 400],
    ['/%68ealth', 200, '/health'],
    ['/%68ealth/../admin', 400],
    ['//health', 200, '/health'],
    ['//admin', 400],
    ['/health%2f..%2fadmin', 400],
    ['/health%2F..%2Fadmin', 400],
    ['/health/..%2fadmin', 400],
    ['/health%2fadmin', 400],
    ['/health%5cadmin', 400],
    ['/health;x', 400],
    ['/health/..;/admin', 400],
    ['/health/a;b', 400],
    ['/health%3b/../admin', 400],
    ['/health%252f..%252fadmin', 400],
    ['/exact;', 400],
    ['/exact%2f', 400],
    ['https://partner.test/health', 200, '/health'],
    ['https://partner.test/admin', 400],
    ['https://PARTNER.test:443/health/../admin', 400],
    ['*', 400],
  ];
  for (const [target, status, url] of cases) {
    const method = target === '*' ? 'OPTIONS' : 'GET';
    const r = await ask(get(target).replace(/^GET/, method));
    assert.equal(r.status, status, target);
    assert.equal(r.reached, status === 200 ? 1 : 0, target);
    if (url !== undefined) assert.equal(seen[seen.length - 1]!.url, url, target);
  }
});

test('the authority rule holds: exemptions are served only on a connection with the object\'s own SNI', async () => {
  const before = await refusedCount('misdirected_mtls');
  // Another SNI (a plain object, none, an unknown name served by default_ssl), Host: partner.test.
  for (const sni of ['plain.test', '', 'unknown.test']) {
    const r = await ask(get('/health'), undefined, sni);
    assert.deepEqual([r.status, r.code, r.reached], [421, 'TLSGATE_E_MISDIRECTED', 0], sni || '(no SNI)');
  }
  // Absolute form naming the mTLS name, on a plain connection.
  const abs = await ask(get('https://partner.test/health', 'plain.test'), undefined, 'plain.test');
  assert.deepEqual([abs.status, abs.reached], [421, 0]);
  assert.equal(await refusedCount('misdirected_mtls'), before + 4);
  // The partner connection asked for another name: a plain one, or a strict mTLS one.
  for (const host of ['plain.test', 'strict.test', 'unknown.test']) {
    const r = await ask(get('/health', host));
    assert.deepEqual([r.status, r.reached], [421, 0], host);
  }
  // Two Host headers: 400 before anything else.
  const dup = await ask('GET /health HTTP/1.1\r\nHost: partner.test\r\nHost: strict.test\r\nConnection: close\r\n\r\n');
  assert.deepEqual([dup.status, dup.code, dup.reached], [400, 'TLSGATE_E_BAD_REQUEST', 0]);
  // An object without exemptions still requires its certificate in the handshake.
  // TLS 1.2: the refusal comes within the handshake (TLS 1.3 sends it after the client's Finished).
  assert.equal((await handshake(port, { servername: 'strict.test', maxVersion: 'TLSv1.2' })).ok, false);
});

test('a verified certificate reaches every path, with the identity headers', async () => {
  for (const path of ['/admin', '/health', '/exact/x']) {
    const r = await ask(get(path), alice);
    assert.deepEqual([r.status, r.reached], [200, 1], path);
    const last = seen[seen.length - 1]!;
    assert.equal(last.verify, 'SUCCESS', path);
    assert.match(last.subject ?? '', /CN=alice/, path);
  }
});

test('a certificate that fails the check (foreign CA, chain deeper than depth) counts as none', async () => {
  for (const [name, id] of [['foreign CA', withChain(mallory)], ['too deep', withChain(deep, [inter])]] as const) {
    const denied = await ask(get('/admin'), id);
    assert.deepEqual([denied.status, denied.code, denied.reached], [400, 'TLSGATE_E_CLIENT_CERT_REQUIRED', 0], name);
    const ok = await ask(get('/health'), id);
    assert.deepEqual([ok.status, ok.reached], [200, 1], name);
    assert.equal(seen[seen.length - 1]!.verify, undefined, `${name}: no identity headers`);
  }
});

test('keep-alive and pipelining: each request on an unverified connection is checked', async () => {
  const before = seen.length;
  const pipelined = get('/health', 'partner.test', false) + get('/admin', 'partner.test', false) +
    get('/health/../admin', 'partner.test', false) + get('/health', 'partner.test', true);
  const r = await rawRequest(port, pipelined, { servername: 'partner.test', responses: 4 });
  assert.deepEqual(r.map((x) => x.status), [200, 400, 400, 200]);
  assert.equal(seen.length - before, 2);
  assert.deepEqual(seen.slice(before).map((s) => s.url), ['/health', '/health']);
  // The same, written one at a time on one kept connection.
  const slow = await rawRequest(port, '', {
    servername: 'partner.test', responses: 2, pauseMs: 50,
    parts: [get('/health', 'partner.test', false), get('/admin', 'partner.test', false)],
  });
  assert.deepEqual(slow.map((x) => x.status), [200, 400]);
});

test('HTTP/2 (node engine): the same rule per stream, with the same tricks', async () => {
  const s = await h2Session(port, { servername: 'partner.test' });
  try {
    const cases: Array<[string, number]> = [
      ['/health', 200], ['/%68ealth', 200], ['//health', 200], ['/status/x', 200],
      ['/admin', 400], ['/health/../admin', 400], ['/health%2f..%2fadmin', 400], ['/health;x', 400],
      ['/HEALTH', 400], ['/healthx', 400], ['/exact/', 400],
    ];
    for (const [path, status] of cases) {
      const before = seen.length;
      const r = await h2Request(s, { ':path': path, 'x-client-verify': 'SUCCESS' });
      assert.equal(r.status, status, path);
      assert.equal(seen.length - before, status === 200 ? 1 : 0, path);
      if (status === 200) assert.equal(seen[seen.length - 1]!.verify, undefined, path);
    }
    // :authority of another name on this connection, and a Host naming another one (node:http2
    // sends it as the :authority then: 421 either way; a raw Host beside :authority is 400, h2.test.ts).
    const before = seen.length;
    assert.equal((await h2Request(s, { ':path': '/health', ':authority': 'strict.test' })).status, 421);
    assert.equal((await h2Request(s, { ':path': '/health', ':authority': 'plain.test' })).status, 421);
    assert.equal((await h2Request(s, { ':path': '/health', host: 'strict.test' })).status, 421);
    assert.equal(seen.length, before);
  } finally {
    s.close();
  }
  // A plain connection asking for the partner's name by :authority.
  const p = await h2Session(port, { servername: 'plain.test' });
  try {
    const r = await h2Request(p, { ':path': '/health', ':authority': 'partner.test' });
    assert.equal(r.status, 421);
  } finally {
    p.close();
  }
  // Verified over h2: every path.
  const v = await h2Session(port, { servername: 'partner.test', ...alice });
  try {
    assert.equal((await h2Request(v, { ':path': '/admin' })).status, 200);
    assert.equal(seen[seen.length - 1]!.verify, 'SUCCESS');
  } finally {
    v.close();
  }
});

function tlsOpen(o: { servername: string; cert?: string; key?: string }): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, maxVersion: 'TLSv1.2', ...o }, () =>
      resolve(s));
    s.once('error', reject);
  });
}

test('renegotiation cannot bring a certificate to an unverified connection (refused; the rule stands)', async () => {
  const s = await tlsOpen({ servername: 'partner.test' });
  s.on('error', () => undefined);
  const res = await new Promise<string>((resolve) => {
    // A client certificate offered in a renegotiation: refused (SSL_OP_NO_RENEGOTIATION).
    const ok = s.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err ? 'refused' : 'renegotiated'));
    if (!ok) resolve('refused');
    s.once('close', () => resolve('refused'));
  });
  s.destroy();
  assert.equal(res, 'refused');
  // With openssl: the R command on a TLS 1.2 connection gets no renegotiation, and a request
  // written after it on that connection is never served from a non-exempt path.
  const out = await new Promise<string>((resolve) => {
    const argv = ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'partner.test', '-tls1_2'];
    const p = execFile('openssl', argv, { timeout: 10_000 }, (_e, stdout, stderr) => resolve(stdout + stderr));
    p.stdin?.end('R\n' + get('/admin'));
  });
  assert.match(out, /RENEGOTIATING/);
  assert.doesNotMatch(out, /HTTP\/1\.1 200/);
});

test('reload: dropping skip_mtls_paths makes the certificate required again, open connections included', async () => {
  const open = await tlsOpen({ servername: 'partner.test' });
  const reqOn = (s: TLSSocket, target: string): Promise<number> => new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString('latin1');
      const m = /^HTTP\/1\.1 (\d+)[\s\S]*?\r\n\r\n/.exec(buf);
      const len = /content-length: (\d+)/i.exec(buf);
      if (m && len && buf.length >= m[0].length + Number(len[1])) {
        s.off('data', onData);
        resolve(Number(m[1]));
      }
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(get(target, 'partner.test', false));
  });
  try {
    assert.equal(await reqOn(open, '/health'), 200);
    const v = (await gw.status()).version;
    gw.write('gateway.yaml', config(''));
    assert.equal((await gw.admin('POST', '/v1/reload')).status, 200);
    await gw.waitVersion(v + 1);
    // New handshakes without a certificate fail; the open unverified connection is refused at
    // its next request, the exempt path included.
    const tls12 = { servername: 'partner.test', maxVersion: 'TLSv1.2' } as const;
    await waitFor(async () => !(await handshake(port, tls12)).ok, 'handshake without a certificate refused');
    assert.equal(await reqOn(open, '/health'), 421);
  } finally {
    open.destroy();
    gw.write('gateway.yaml', config(SKIP));
    await gw.admin('POST', '/v1/reload');
  }
});

function validate(yaml: string): Promise<{ code: number; out: string }> {
  gw.write('v.yaml', yaml);
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'validate', '--config', `${gw.dir}/v.yaml`], (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
  });
}

test('validate: skip_mtls_paths are route paths, never every path; uws listeners refuse them', async () => {
  const bad = await validate(config(', skip_mtls_paths: ["/*", "/", health, "/a*", "/a/../b", "/a//b", "= /x/*"]'));
  assert.notEqual(bad.code, 0);
  const at = (i: number): RegExp => new RegExp(`ssls\\[1\\]\\.client\\.skip_mtls_paths\\[${i}\\]: `);
  assert.match(bad.out, at(0));
  assert.match(bad.out, /"\/\*" exempts every path/);
  assert.match(bad.out, /"\/" exempts every path/);
  for (let i = 2; i <= 6; i++) assert.match(bad.out, at(i));
  assert.match(bad.out, /"\/a\/\.\.\/b" is not normalized/);
  // ssl_dirs share the client block: the same checks.
  const dirs = await validate(config(SKIP).replace('upstreams:',
    'ssl_dirs: [{ path: ., client: { ca: "$file://clients.pem", skip_mtls_paths: ["/*"] } }]\nupstreams:'));
  assert.match(dirs.out, /ssl_dirs\[0\]\.client\.skip_mtls_paths\[0\]: "\/\*" exempts every path/);
  const empty = await validate(config(', skip_mtls_paths: []'));
  assert.match(empty.out, /skip_mtls_paths: must hold at least one path/);
  const good = await validate(config(SKIP));
  assert.equal(good.code, 0, good.out);
  const uws = await validate(config(SKIP).replace('default_ssl: plain }', 'default_ssl: plain, engine: uws }'));
  assert.notEqual(uws.code, 0);
  assert.match(uws.out,
    /ssls\[1\]\.client\.skip_mtls_paths: listener "public" has engine uws, which cannot serve mTLS exemptions/);
  assert.match(uws.out, /TLSGATE_E_ENGINE_UNSUPPORTED/);
});
