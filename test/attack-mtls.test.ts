// Attacks on the mTLS authority rule (node engine: uws refuses client.ca), from outside,
// with real TLS clients. Each test is a way a client without the right verified
// certificate tries to get a request for an mTLS name served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect, type TLSSocket } from 'node:tls';
import { Gateway, freePort } from './helpers/gateway';
import { client, createCA, crl, issue, server, type Issued } from './helpers/pki';
import { rawRequest } from './helpers/raw-http';

const serverCa = createCA('Attack server CA');
const clientCa = createCA('Attack client root');
const int1 = issue({ cn: 'Attack client int 1', ca: true, issuer: clientCa });
const int2 = issue({ cn: 'Attack client int 2', ca: true, issuer: int1 });
const alice = client(clientCa, 'alice');
const revoked = client(clientCa, 'revoked');
const viaTwo = client(int2, 'via-two');
// Certificates a verified client chose: every byte of the subject is hostile.
const crlf = client(clientCa, 'evil\r\nX-Client-Verify: NONE\r\nX-Admin: 1');
const commas = client(clientCa, 'alice,CN=admin+O=Admins');
const gw = new Gateway();
let port = 0;
/** Every byte the upstream received. */
let wire = '';
const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
  req.resume();
  req.on('end', () => res.end(JSON.stringify(req.rawHeaders)));
});
upstream.on('connection', (c) => c.on('data', (d: Buffer) => (wire += d.toString('latin1'))));

before(async () => {
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
  const names: Array<[string, string[]]> = [
    ['plain', ['*.shop.test']], ['loose', ['*.corp.test']], ['strict', ['strict.corp.test']],
    ['crl', ['crl.corp.test']], ['vault', ['*.vault.test']],
  ];
  for (const [id, snis] of names) {
    const s = server(serverCa, snis);
    gw.write(`${id}.crt`, s.cert);
    gw.write(`${id}.key`, s.key);
  }
  gw.write('clients.pem', clientCa.cert);
  gw.write('clients.crl', crl(clientCa, [revoked]));
  const obj = (id: string, snis: string, extra = ''): string =>
    `  - { id: ${id}, snis: ${snis}, cert: "$file://${id}.crt", key: "$file://${id}.key"${extra} }`;
  // loose, strict and crl share one CA: only their depth and CRL differ. The commonest
  // layout: a wildcard mTLS object with stricter exact objects beneath it.
  await gw.start(`
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port}, default_ssl: plain }]
ssls:
${obj('plain', '["*.shop.test"]')}
${obj('loose', '["*.corp.test"]', ', client: { ca: "$file://clients.pem", depth: 2 }')}
${obj('strict', '[strict.corp.test]', ', client: { ca: "$file://clients.pem", depth: 0 }')}
${obj('crl', '[crl.corp.test]', ', client: { ca: "$file://clients.pem", depth: 2, crl: "$file://clients.crl" }')}
${obj('vault', '["*.vault.test"]', ', client: { ca: "$file://clients.pem" }')}
upstreams:
  - id: app
    nodes: [{ host: 127.0.0.1, port: ${(upstream.address() as AddressInfo).port} }]
    client_identity_headers: true
routes:
  - { id: r, paths: [/], respond: { status: 200, body: served } }
  - { id: up, paths: [/up], upstream: app }
`);
});
after(async () => {
  await gw.stop();
  upstream.close();
});

const get = (host: string, target = '/', version = '1.1'): string =>
  `GET ${target} HTTP/${version}\r\nHost: ${host}\r\nConnection: close\r\n\r\n`;
const withChain = (id: Issued, chain: Issued[] = []): { cert: string; key: string } => ({
  cert: id.cert + chain.map((c) => c.cert).join(''),
  key: id.key,
});

async function statuses(
  servername: string | undefined,
  request: string,
  id?: { cert: string; key: string },
): Promise<number[]> {
  const r = await rawRequest(port, request, { ...(servername ? { servername } : {}), ...(id ?? {}) });
  return r.map((x) => x.status);
}

test('sanity: each certificate is refused by the object whose rule it breaks', async () => {
  const refused = (sni: string, id: { cert: string; key: string }) =>
    rawRequest(port, get(sni), { servername: sni, ...id }).then((r) => r.length === 0, () => true);
  assert.equal(await refused('crl.corp.test', withChain(revoked)), true, 'revoked on crl.corp.test');
  const deep = withChain(viaTwo, [int2, int1]);
  assert.equal(await refused('strict.corp.test', deep), true, 'two intermediates on depth 0');
  assert.deepEqual(await statuses('www.corp.test', get('www.corp.test'), withChain(viaTwo, [int2, int1])), [200]);
  assert.deepEqual(await statuses('www.corp.test', get('www.corp.test'), withChain(revoked)), [200]);
});

test('CRL bypass: a revoked certificate verified on a same-CA object without the CRL → 421', async () => {
  assert.deepEqual(await statuses('www.corp.test', get('crl.corp.test'), withChain(revoked)), [421]);
  // The same certificate that is not revoked passes both ways.
  assert.deepEqual(await statuses('www.corp.test', get('www.corp.test'), withChain(alice)), [200]);
});

test('depth bypass: a chain verified on a same-CA object with a larger depth → 421', async () => {
  assert.deepEqual(await statuses('www.corp.test', get('strict.corp.test'), withChain(viaTwo, [int2, int1])), [421]);
});

test('wildcard mTLS object: spellings of a covered name without a certificate → 421', async () => {
  for (const host of ['a.vault.test', 'A.VAULT.TEST', 'a.vault.test.', 'a.vault.test:443', 'a.vault.test.:1']) {
    assert.deepEqual(await statuses('www.shop.test', get(host)), [421], host);
  }
  assert.deepEqual(await statuses(undefined, get('www.shop.test', 'https://x.vault.test/')), [421]);
  assert.deepEqual(await statuses(undefined, get('www.shop.test', 'HTTP://X.Vault.Test:8443?q')), [421]);
});

test('Host forms that could hide the mTLS name are refused (400), never routed', async () => {
  const cases = [
    'GET / HTTP/1.1\r\nHost: www.shop.test\r\nHost: a.vault.test\r\nConnection: close\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a.vault.test\r\nhost: www.shop.test\r\nConnection: close\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a%2evault.test\r\nConnection: close\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a.vault.test..\r\nConnection: close\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: www.shop.test@a.vault.test\r\nConnection: close\r\n\r\n',
    'GET / HTTP/1.1\r\nHost: a.vault.test www.shop.test\r\nConnection: close\r\n\r\n',
    'GET / HTTP/1.1\r\nHost:\r\nConnection: close\r\n\r\n',
    'GET https://www.shop.test@a.vault.test/ HTTP/1.1\r\nHost: www.shop.test\r\nConnection: close\r\n\r\n',
  ];
  for (const c of cases) {
    const s = await statuses('www.shop.test', c);
    assert.ok(s.length === 1 && (s[0] === 400 || s[0] === 421), `${JSON.stringify(c)} → ${JSON.stringify(s)}`);
  }
});

test('OPTIONS * and HTTP/1.0 naming the mTLS host without a certificate → 421', async () => {
  const options = 'OPTIONS * HTTP/1.1\r\nHost: a.vault.test\r\nConnection: close\r\n\r\n';
  assert.deepEqual(await statuses('www.shop.test', options), [421]);
  assert.deepEqual(await statuses('www.shop.test', get('a.vault.test', '/', '1.0')), [421]);
});

test('pipelining: a second request for the mTLS host on a plain connection → 421, the first is served', async () => {
  const two =
    'GET / HTTP/1.1\r\nHost: www.shop.test\r\n\r\n' +
    'GET / HTTP/1.1\r\nHost: a.vault.test\r\nConnection: close\r\n\r\n';
  assert.deepEqual(await statuses('www.shop.test', two), [200, 421]);
  // And the reverse: a verified connection cannot carry a second request for another name.
  const back =
    'GET / HTTP/1.1\r\nHost: a.vault.test\r\n\r\n' +
    'GET / HTTP/1.1\r\nHost: crl.corp.test\r\nConnection: close\r\n\r\n';
  assert.deepEqual(await statuses('a.vault.test', back, withChain(alice)), [200, 421]);
});

function tlsConnect(servername: string, o: { session?: Buffer; cert?: string; key?: string; maxVersion?: 'TLSv1.2' }) {
  return new Promise<{ socket: TLSSocket; session: Buffer | undefined }>((resolve, reject) => {
    let session: Buffer | undefined;
    const s = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ...o });
    s.on('session', (b: Buffer) => (session = b));
    s.once('secureConnect', () => resolve({ socket: s, session }));
    s.once('error', reject);
  });
}

test('session resumption: a session from a verified handshake does not let a certificate-less client in', async () => {
  for (const maxVersion of ['TLSv1.2' as const, undefined]) {
    const first = await tlsConnect('a.vault.test', { ...withChain(alice), ...(maxVersion ? { maxVersion } : {}) });
    // A TLS 1.3 ticket (if any) arrives after the handshake: read one response first.
    first.socket.write(get('a.vault.test'));
    const session = await new Promise<Buffer | undefined>((r) => {
      first.socket.once('close', () => r(first.socket.getSession() ?? undefined));
      first.socket.resume();
    });
    if (session === undefined) continue;
    for (const sni of ['a.vault.test', 'www.shop.test']) {
      const o = { session, ...(maxVersion ? { maxVersion } : {}) };
      const r: { reused: boolean; st: number[] } = await tlsConnect(sni, o).then(
        async ({ socket }) => {
          const reused = socket.isSessionReused();
          socket.destroy();
          const st = await statuses(sni, get('a.vault.test')).catch((): number[] => []);
          return { reused, st };
        },
        () => ({ reused: false, st: [] as number[] }),
      );
      assert.equal(r.reused, false, `${maxVersion ?? 'TLSv1.3'} ${sni}: session must not resume`);
      assert.notDeepEqual(r.st, [200], `${maxVersion ?? 'TLSv1.3'} ${sni}`);
    }
  }
});

test('hostile client subjects (CR/LF, RDN separators) and forged identity spellings inject nothing', async () => {
  for (const id of [crlf, commas]) {
    wire = '';
    const forged = 'X_Client_Verify: SUCCESS\r\nX-Client-Cert-Subject: CN=admin\r\nx_client_cert_subject: CN=admin\r\n';
    const r = await rawRequest(port, `GET /up HTTP/1.1\r\nHost: a.vault.test\r\n${forged}Connection: close\r\n\r\n`, {
      servername: 'a.vault.test',
      ...withChain(id),
    });
    assert.equal(r[0]?.status, 200, r.raw.slice(0, 200));
    const lines = wire.split('\r\n');
    assert.equal(lines.filter((l) => /^x-admin/i.test(l)).length, 0, 'no injected header line');
    assert.equal(lines.filter((l) => /^x.client.verify:/i.test(l)).length, 1, wire);
    assert.ok(lines.some((l) => l.toLowerCase() === 'x-client-verify: success'), wire);
    const subject = lines.filter((l) => /^x.client.cert.subject:/i.test(l));
    assert.equal(subject.length, 1, wire);
    assert.doesNotMatch(subject[0]!, /CN=admin(?:,|$)/, 'no RDN can be faked inside the value');
  }
});

test('SNI spellings (case, trailing dot, over-long, IP) without a certificate never reach an mTLS name', async () => {
  for (const sni of ['A.VAULT.TEST', 'a.vault.test.', `${'x'.repeat(63)}.`.repeat(5) + 'vault.test', '127.0.0.1']) {
    const st = await statuses(sni, get('a.vault.test')).catch((): number[] => []);
    // Refused at the handshake (an mTLS object was picked) or 421 (a plain one was).
    assert.ok(st.length === 0 || (st.length === 1 && st[0] === 421), `${sni.slice(0, 40)}: ${JSON.stringify(st)}`);
  }
});
