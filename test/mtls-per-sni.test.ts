// Per-SNI mTLS on one listener: secure.test needs a client certificate from its CA,
// open.test never asks for one. The node engine reads the SNI from the ClientHello and
// makes the TLS socket from the object's own context (verify mode, CA): no private fields.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { connect as tlsConnect } from 'node:tls';
import { Gateway, freePort, get, waitFor } from './helpers/gateway';
import { client, createCA, issue, server } from './helpers/pki';

const serverCa = createCA('Server CA');
const clientCa = createCA('Client CA');
const foreignCa = createCA('Foreign CA');
const secure = server(serverCa, ['secure.test', '*.secure.test']);
const open = server(serverCa, ['open.test']);
const good = client(clientCa, 'alice');
const foreign = client(foreignCa, 'mallory');
const inter = issue({ cn: 'Client Intermediate', ca: true, issuer: clientCa });
const viaInter = client(inter, 'bob');
const gw = new Gateway();
let port = 0;

before(async () => {
  [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
  gw.write('secure.crt', secure.cert);
  gw.write('secure.key', secure.key);
  gw.write('open.crt', open.cert);
  gw.write('open.key', open.key);
  gw.write('clients.pem', clientCa.cert);
  gw.write('strict.crt', server(serverCa, ['strict.test']).cert);
  await gw.start(`
workers: 2
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port} }]
ssls:
  - { id: secure, snis: [secure.test, "*.secure.test"], cert: "$file://secure.crt", key: "$file://secure.key", client: { ca: "$file://clients.pem", depth: 1 } }
  - { id: open, snis: [open.test], cert: "$file://open.crt", key: "$file://open.key" }
routes:
  - { id: all, paths: [/], respond: { status: 200, body: ok } }
`);
});
after(() => gw.stop());

const ask = (servername: string, id?: { cert: string; key: string }, host = servername) =>
  get(port, '/', { servername, host, ...(id ? { cert: id.cert, key: id.key } : {}) }).then(
    (r) => `${r.status}`,
    (e: NodeJS.ErrnoException) => `refused:${e.code ?? e.message}`,
  );

test('mTLS SNI: a client without a certificate is refused before any HTTP byte', async () => {
  assert.match(await ask('secure.test'), /^refused:/);
});

test('mTLS SNI: a certificate from a foreign CA is refused', async () => {
  assert.match(await ask('secure.test', foreign), /^refused:/);
});

async function failures(reason: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`, { headers: { 'x-api-key': gw.apiKey } });
  const name = `tlsgate_handshake_failures_total{listener="public",reason="${reason}"}`;
  const line = (await res.text()).split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : 0;
}

test('mTLS refusals are counted by reason: no certificate → mtls_missing, foreign CA → mtls_invalid', async () => {
  const [missing0, invalid0] = [await failures('mtls_missing'), await failures('mtls_invalid')];
  await ask('secure.test');
  await waitFor(async () => (await failures('mtls_missing')) === missing0 + 1 || undefined, 'mtls_missing counted');
  await ask('secure.test', foreign);
  await waitFor(async () => (await failures('mtls_invalid')) === invalid0 + 1 || undefined, 'mtls_invalid counted');
  assert.equal(await failures('mtls_missing'), missing0 + 1, 'the foreign certificate is not counted as missing');
});

test('mTLS SNI: a certificate from the configured CA is accepted (exact and wildcard SNI)', async () => {
  assert.equal(await ask('secure.test', good), '200');
  assert.equal(await ask('api.secure.test', good), '200');
});

test('mTLS SNI: client.depth 1 admits one intermediate', async () => {
  assert.equal(await ask('secure.test', { cert: viaInter.cert + inter.cert, key: viaInter.key }), '200');
});

test('non-mTLS SNI on the same listener works without a certificate', async () => {
  assert.equal(await ask('open.test'), '200');
});

function sClient(servername: string): Promise<string> {
  return new Promise((resolve) => {
    const p = execFile('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', servername, '-msg'], { timeout: 10_000 }, (_err, stdout, stderr) =>
      resolve(stdout + stderr),
    );
    p.stdin?.end();
  });
}

test('the server sends a CertificateRequest only for the mTLS SNI (openssl s_client -msg)', async () => {
  const openOut = await sClient('open.test');
  assert.match(openOut, /ServerHello/);
  assert.doesNotMatch(openOut, /CertificateRequest/);
  const secureOut = await sClient('secure.test');
  assert.match(secureOut, /CertificateRequest/);
  assert.match(secureOut, /Client Certificate Types|Acceptable client certificate CA names[\s\S]*Client CA/);
});

test('a verified mTLS connection cannot be used for a host its SNIs do not cover (421)', async () => {
  assert.equal(await ask('secure.test', good, 'open.test'), '421');
  assert.equal(await ask('secure.test', good, 'x.secure.test'), '200');
  // The other way round is fine: open.test has no client CA.
  assert.equal(await ask('open.test', undefined, 'anything.test'), '200');
});

/** One request over a connection that offers `session`; resolves the status, the new session and whether it resumed. */
function resume(servername: string, session: Buffer | undefined, id?: { cert: string; key: string }): Promise<{ status: string; session?: Buffer; reused: boolean }> {
  return new Promise((resolve) => {
    let next: Buffer | undefined;
    let data = '';
    let reused = false;
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false, ...(session ? { session } : {}), ...(id ? { cert: id.cert, key: id.key } : {}) }, () => {
      reused = s.isSessionReused();
      s.write(`GET / HTTP/1.1\r\nhost: ${servername}\r\nconnection: close\r\n\r\n`);
    });
    s.on('session', (b: Buffer) => (next = b));
    s.on('data', (d) => (data += d));
    s.on('error', () => undefined);
    s.on('close', () => resolve({ status: data.slice(9, 12) || 'refused', ...(next ? { session: next } : {}), reused }));
  });
}

test('session resumption cannot skip the client certificate: no session resumes while an mTLS object is served', async () => {
  const first = await resume('open.test', undefined);
  assert.equal(first.status, '200');
  // Whatever the client offers, the server makes a full handshake.
  const again = await resume('open.test', first.session);
  assert.equal(again.status, '200');
  assert.equal(again.reused, false);
  const m1 = await resume('secure.test', undefined, good);
  assert.equal(m1.status, '200');
  const m2 = await resume('secure.test', m1.session, good);
  assert.equal(m2.status, '200');
  assert.equal(m2.reused, false);
  assert.equal((await resume('secure.test', m1.session)).status, 'refused');
  assert.equal((await resume('secure.test', first.session)).status, 'refused');
});
