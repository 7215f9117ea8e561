// An operator writes a config whose values would reach a socket or a header unchecked
// (a host with a space, a header value with CR/LF, a port out of range, …) into a
// RUNNING gateway. Each reload is refused with the object and field path, and the
// gateway keeps serving on both engines, through the upstream and the respond route.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { once } from 'node:events';
import { Gateway, get } from './helpers/gateway';
import { twoEngineHead, twoEnginePorts, type EnginePorts } from './helpers/two-engines';
import { createCA, issue, server } from './helpers/pki';

const BAD_PEM = '-----BEGIN CERTIFICATE-----\\nnope\\n-----END CERTIFICATE-----\\n';
const SITE_PAIR = '"$file://site.crt", key: "$file://site.key"';

/** [what, config edit (applied to the good config text), the path the refusal must name]. */
export const BAD_VALUES: Array<[string, (c: string) => string, RegExp]> = [
  ['node host with a space', (c) => c.replace('host: 127.0.0.1, port', 'host: "bad host", port'),
    /upstreams\[0\]\.nodes\[0\]\.host: "bad host" is not a host name or IP address/],
  ['node host with a port in it', (c) => c.replace('host: 127.0.0.1, port', 'host: "127.0.0.1:80", port'),
    /upstreams\[0\]\.nodes\[0\]\.host: "127\.0\.0\.1:80" is not a host name/],
  ['node host that WHATWG URL cannot parse', (c) => c.replace('host: 127.0.0.1, port', 'host: 999.1.1.1, port'),
    /upstreams\[0\]\.nodes\[0\]\.host: "999\.1\.1\.1" ends in a number but is not an IPv4 address/],
  ['node host that URL rewrites to 127.0.0.1', (c) => c.replace('host: 127.0.0.1, port', 'host: 0x7f.1, port'),
    /upstreams\[0\]\.nodes\[0\]\.host: "0x7f\.1" ends in a number/],
  ['node host with invalid punycode', (c) => c.replace('host: 127.0.0.1, port', 'host: xn--a.internal, port'),
    /upstreams\[0\]\.nodes\[0\]\.host: "xn--a\.internal" is not a host name or IP address/],
  ['upstream Host ending in a number', (c) => c.replace('host: app.internal', 'host: "app.1:8080"'),
    /upstreams\[0\]\.host: "app\.1:8080" is not a Host value/],
  ['node port 0', (c) => c.replace(/port: \d+, weight/, 'port: 0, weight'),
    /upstreams\[0\]\.nodes\[0\]\.port: must be between 1 and 65535, got 0/],
  ['node port 70000', (c) => c.replace(/port: \d+, weight/, 'port: 70000, weight'),
    /upstreams\[0\]\.nodes\[0\]\.port: must be between 1 and 65535, got 70000/],
  ['respond header value with CR/LF', (c) => c.replace('x-served: gw', 'x-served: "gw\\r\\nx-injected: 1"'),
    /routes\[0\]\.respond\.headers\["x-served"\]: holds CR/],
  ['respond header value with NUL', (c) => c.replace('x-served: gw', 'x-served: "gw\\0"'),
    /routes\[0\]\.respond\.headers\["x-served"\]: holds NUL/],
  ['respond header name with a space', (c) => c.replace('x-served: gw', '"x served": gw'),
    /routes\[0\]\.respond\.headers\["x served"\]: "x served" is not a header name/],
  ['respond header name with a colon', (c) => c.replace('x-served: gw', '"x-a:b": gw'),
    /routes\[0\]\.respond\.headers\["x-a:b"\]: "x-a:b" is not a header name/],
  ['respond content-length', (c) => c.replace('x-served: gw', 'content-length: 1'),
    /routes\[0\]\.respond\.headers\["content-length"\]: "content-length" is set by the gateway/],
  ['respond status 99', (c) => c.replace('status: 200', 'status: 99'),
    /routes\[0\]\.respond\.status: must be between 200 and 599, got 99/],
  ['respond status 1000', (c) => c.replace('status: 200', 'status: 1000'),
    /routes\[0\]\.respond\.status: must be between 200 and 599, got 1000/],
  ['respond 204 with a body', (c) => c.replace('status: 200', 'status: 204'),
    /routes\[0\]\.respond\.body: must be empty: a 204 response has no content/],
  ['respond body a mapping', (c) => c.replace('body: ok', 'body: { a: 1 }'),
    /routes\[0\]\.respond\.body: must be a string/],
  ['upstream Host header with CR/LF', (c) => c.replace('host: app.internal', 'host: "app.internal\\r\\nx-injected: 1"'),
    /upstreams\[0\]\.host: "app\.internal\\r\\nx-injected: 1" is not a Host value/],
  ['upstream Host header with a space', (c) => c.replace('host: app.internal', 'host: "app internal"'),
    /upstreams\[0\]\.host: "app internal" is not a Host value/],
  ['client identity header name with a space', (c) => c.replace('subject: x-client-subject', 'subject: "x client"'),
    /upstreams\[0\]\.client_identity_headers\.subject: "x client" is not a header name/],
  ['client identity header named host', (c) => c.replace('subject: x-client-subject', 'subject: Host'),
    /upstreams\[0\]\.client_identity_headers\.subject: "Host" is a header the gateway sets itself/],
  ['upstream tls.sni with a space', (c) => c.replace('scheme: http\n', 'scheme: https\n    tls: { sni: "a b" }\n'),
    /upstreams\[0\]\.tls\.sni: "a b" is not a host name/],
  ['upstream tls.sni an IP address', (c) => c.replace('scheme: http\n', 'scheme: https\n    tls: { sni: 10.0.0.1 }\n'),
    /upstreams\[0\]\.tls\.sni: "10\.0\.0\.1" is an IP address/],
  ['upstream tls.ca that is not PEM',
    (c) => c.replace('scheme: http\n', `scheme: https\n    tls: { ca: "${BAD_PEM}" }\n`),
    /upstreams\[0\]\.tls\.ca: not a valid PEM CA bundle.*\[TLSGATE_E_CA_PARSE\]/],
  ['listener address a DNS name',
    (c) => c.replace(/listen: 127\.0\.0\.1:(\d+), engine: uws/, 'listen: "example.com:$1", engine: uws'),
    /listeners\[1\]\.listen: "example\.com" is not an address to listen on/],
  ['SNI wildcard over a public suffix', (c) => c.replace('snis: [site.test]', 'snis: [site.test, "*.co.uk"]'),
    /ssls\[0\]\.snis\[1\]: "\*\.co\.uk" is a wildcard over the public suffix "co\.uk".*\[TLSGATE_E_WILDCARD_PUBLIC_SUFFIX\]/],
  ['a certificate with no SAN', (c) => c.replace(SITE_PAIR, '"$file://nosan.crt", key: "$file://nosan.key"'),
    /ssls\[0\]\.cert: has no DNS Subject Alternative Name.*\[TLSGATE_E_CERT_NO_SAN\]/],
  ['a 1024-bit RSA key', (c) => c.replace(SITE_PAIR, '"$file://weak.crt", key: "$file://weak.key"'),
    /ssls\[0\]\.cert: the certificate has a 1024-bit RSA key.*\[TLSGATE_E_KEY_WEAK\]/],
];

describe('a running gateway refuses every value that would reach a socket or header unchecked', () => {
  const ca = createCA('Safety CA');
  const site = server(ca, ['site.test']);
  const gw = new Gateway();
  let ports: EnginePorts = { node: 0, uws: 0 };
  let appPort = 0;
  let app: Server;

  const good = (): string => `${twoEngineHead(gw, ports, 'site')}ssls:
  - { id: site, snis: [site.test], cert: "$file://site.crt", key: "$file://site.key" }
upstreams:
  - id: app
    scheme: http
    host: app.internal
    nodes: [{ host: 127.0.0.1, port: ${appPort}, weight: 1 }]
    client_identity_headers: { subject: x-client-subject }
routes:
  - { id: r, paths: [/static], respond: { status: 200, body: ok, headers: { x-served: gw } } }
  - { id: up, paths: [/], upstream: app }
`;

  before(async () => {
    app = createServer((req, res) => res.end(`app saw host ${req.headers.host}`));
    app.listen(0, '127.0.0.1');
    await once(app, 'listening');
    appPort = (app.address() as { port: number }).port;
    ports = await twoEnginePorts(gw);
    gw.write('site.crt', site.cert);
    gw.write('site.key', site.key);
    const noSan = issue({ cn: 'site.test', eku: ['serverAuth'], issuer: ca });
    const weak = server(ca, ['site.test'], { keyType: 'rsa-1024' });
    for (const [n, v] of [['nosan', noSan], ['weak', weak]] as const) {
      gw.write(`${n}.crt`, v.cert);
      gw.write(`${n}.key`, v.key);
    }
    await gw.start(good());
  });
  after(async () => {
    await gw.stop();
    app.close();
  });

  async function serves(): Promise<void> {
    for (const port of [ports.node, ports.uws]) {
      const s = await get(port, '/static', { servername: 'site.test' });
      assert.equal(s.status, 200);
      assert.equal(s.body, 'ok');
      assert.equal(s.headers['x-served'], 'gw');
      const u = await get(port, '/x', { servername: 'site.test' });
      assert.equal(u.body, 'app saw host app.internal');
    }
  }

  test('the good config serves on both engines', async () => {
    await serves();
  });

  for (const [what, edit, path] of BAD_VALUES) {
    test(`refused: ${what}`, async () => {
      const before = await gw.status();
      const bad = edit(good());
      assert.notEqual(bad, good(), 'the edit applies');
      gw.write('gateway.yaml', bad);
      const r = await gw.admin('POST', '/v1/reload');
      assert.equal(r.status, 422, JSON.stringify(r.body));
      assert.equal(r.body.ok, false);
      assert.match(r.body.errors.join('\n'), path);
      assert.ok(!r.body.errors.some((e: string) => /[\r\n\0]/.test(e)), 'no raw control character is echoed');
      const after = await gw.status();
      assert.equal(after.version, before.version, 'no new snapshot');
      assert.ok(after.workers.length > 0 && after.workers.every((w) => w.version === before.version));
      await serves();
    });
  }

  const GONE = '  - { id: gone, snis: [gone.test], cert: "$file://gone.crt", key: "$file://site.key" }';
  test('a reload with a missing file and a bad certificate names both; the gateway still serves', async () => {
    const bad = good()
      .replace(SITE_PAIR, '"$file://weak.crt", key: "$file://weak.key"')
      .replace('ssls:\n', `ssls:\n${GONE}\n`);
    gw.write('gateway.yaml', bad);
    const r = await gw.admin('POST', '/v1/reload');
    assert.equal(r.status, 422, JSON.stringify(r.body));
    const errors = r.body.errors.join('\n');
    assert.match(errors, /ssls\[0\]\.cert: \$file:\/\/gone\.crt: cannot read .*\[TLSGATE_E_SECRET_UNRESOLVED\]/);
    assert.match(errors, /ssls\[1\]\.cert: the certificate has a 1024-bit RSA key.*\[TLSGATE_E_KEY_WEAK\]/);
    await serves();
  });

  test('the good config written back reloads (or is unchanged) and still serves', async () => {
    gw.write('gateway.yaml', good().replace('body: ok', 'body: ok2'));
    const r = await gw.admin('POST', '/v1/reload');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await gw.waitVersion(r.body.version);
    for (const port of [ports.node, ports.uws]) {
      assert.equal((await get(port, '/static', { servername: 'site.test' })).body, 'ok2');
    }
  });
});
