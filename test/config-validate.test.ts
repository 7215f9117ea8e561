// `tlsgate validate` on good and bad configs: every problem printed with its path
// and code, exit 1; exit 0 with a one-line summary when valid.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from './helpers/gateway';
import { createCA, issue, server } from './helpers/pki';

const dir = mkdtempSync(join(tmpdir(), 'tlsgate-validate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ca = createCA('Validate CA');
const good = server(ca, ['good.test', '*.good.test']);
const other = server(ca, ['other.test']);
const day = 86_400_000;
const expired = server(ca, ['old.test'], { notBefore: new Date(Date.now() - 40 * day), notAfter: new Date(Date.now() - day) });
const expiring = server(ca, ['soon.test'], { notAfter: new Date(Date.now() + 5 * day) });
const clientOnly = issue({ cn: 'svc', dns: ['svc.test'], eku: ['clientAuth'], issuer: ca });
const files: Record<string, string> = {
  'good.crt': good.cert,
  'good.key': good.key,
  'other.key': other.key,
  'old.crt': expired.cert,
  'old.key': expired.key,
  'soon.crt': expiring.cert,
  'soon.key': expiring.key,
  'svc.crt': clientOnly.cert,
  'svc.key': clientOnly.key,
  'chain-wrong.crt': good.cert + other.cert,
  'garbage.crt': '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n',
};
for (const [n, c] of Object.entries(files)) writeFileSync(join(dir, n), c);

function validate(yaml: string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
  const file = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'validate', '--config', file], { env: { ...process.env, ...env } }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

const base = (ssls: string, extra = ''): string => `
listeners: [{ name: public, listen: 127.0.0.1:8443 }]
ssls:
${ssls}
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
${extra}`;
const GOOD = `  - { id: good, snis: [good.test, "*.good.test"], cert: "$file://good.crt", key: "$file://good.key" }`;

test('a valid config: exit 0 and a one-line summary', async () => {
  const r = await validate(base(GOOD));
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /valid — 1 listener\(s\), 1 ssl\(s\), 2 sni\(s\), 1 route\(s\)/);
});

test('two SSL objects claiming one SNI: an error naming both ids', async () => {
  const r = await validate(base(`${GOOD}\n  - { id: dup, snis: [GOOD.test], cert: "$file://good.crt", key: "$file://good.key" }`));
  assert.equal(r.code, 1);
  assert.match(
    r.out,
    /ssls\[1\]\.snis\[0\]: "good\.test" is claimed by SSL objects "good" and "dup" \[TLSGATE_E_SNI_CONFLICT\]/,
  );
});

test('key mismatch, expired, wrong EKU, SAN not covering an SNI, chain order, bad PEM: each with its code, all at once', async () => {
  const r = await validate(
    base(`${GOOD}
  - { id: mismatch, snis: [good2.test], cert: "$file://good.crt", key: "$file://other.key" }
  - { id: old, snis: [old.test], cert: "$file://old.crt", key: "$file://old.key" }
  - { id: eku, snis: [svc.test], cert: "$file://svc.crt", key: "$file://svc.key" }
  - { id: notcovered, snis: [a.b.good.test], cert: "$file://good.crt", key: "$file://good.key" }
  - { id: chain, snis: [c.good.test], cert: "$file://chain-wrong.crt", key: "$file://good.key" }
  - { id: garbage, snis: [g.test], cert: "$file://garbage.crt", key: "$file://good.key" }`),
  );
  assert.equal(r.code, 1);
  assert.match(
    r.out,
    /ssls\[1\]\.key: does not match the certificate in ssls\[1\]\.cert .*\[TLSGATE_E_CERT_KEY_MISMATCH\]/,
  );
  assert.match(r.out, /ssls\[2\]\.cert: expired on .*\[TLSGATE_E_CERT_EXPIRED\]/);
  assert.match(r.out, /ssls\[3\]\.cert: Extended Key Usage .* lacks serverAuth.*\[TLSGATE_E_CERT_EKU\]/);
  assert.match(
    r.out,
    /ssls\[4\]\.snis\[0\]: "a\.b\.good\.test" is not covered by the certificate's SANs.*\[TLSGATE_E_SNI_NOT_COVERED\]/,
  );
  assert.match(
    r.out,
    /ssls\[5\]\.cert: certificate 1 of the chain .* is not issued by certificate 2.*\[TLSGATE_E_CERT_CHAIN_ORDER\]/,
  );
  assert.match(r.out, /ssls\[6\]\.cert: not a valid PEM certificate.*\[TLSGATE_E_CERT_PARSE\]/);
  assert.ok(!r.out.includes('PRIVATE KEY'), 'no key material in the output');
});

test('a certificate expiring within warn_days is a warning, not an error', async () => {
  const r = await validate(base(`  - { id: soon, snis: [soon.test], cert: "$file://soon.crt", key: "$file://soon.key" }`));
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /warning: ssls\[0\]\.cert: expires in 4 day\(s\).*\[TLSGATE_E_CERT_EXPIRING\]/);
});

test('schema problems are all reported with their paths', async () => {
  const r = await validate(`
workers: zero
listeners:
  - { name: public, listen: "nope", engine: nginx, default_ssl: ghost }
ssls:
  - { id: bad, snis: ["*.*.example.com", "-x.test"], cert: "$env://", key: "$secret://consul/a/b", ssl_protocols: [SSLv3], status: maybe, colour: blue }
upstreams:
  - { id: up, nodes: [] }
routes:
  - { id: r1, paths: [nope], upstream: missing }
  - { id: r2 }
`);
  assert.equal(r.code, 1);
  for (const re of [
    /workers: must be an integer/,
    /listeners\[0\]\.listen: "nope" must be host:port/,
    /listeners\[0\]\.engine: must be one of node \| uws/,
    /ssls\[0\]\.snis\[0\]: "\*\.\*\.example\.com" is not a valid SNI.*\[TLSGATE_E_SNI_INVALID\]/,
    /ssls\[0\]\.snis\[1\]: "-x\.test" is not a valid SNI/,
    /ssls\[0\]\.cert: "\$env:\/\/" is not a valid \$env:\/\/ reference.*\[TLSGATE_E_SECRET_REF\]/,
    /ssls\[0\]\.key: .*unknown secret manager "consul"/,
    /ssls\[0\]\.ssl_protocols\[0\]: must be TLSv1\.2 or TLSv1\.3/,
    /ssls\[0\]\.status: must be one of enabled \| disabled/,
    /ssls\[0\]\.colour: unknown field/,
    /upstreams\[0\]\.nodes: must hold at least one node/,
    /routes\[0\]\.paths\[0\]: "nope" must be a path prefix/,
    /routes\[0\]\.upstream: "missing" is not the id of an upstream.*\[TLSGATE_E_REF_UNKNOWN\]/,
    /routes\[1\]: needs an upstream or a respond block/,
  ]) {
    assert.match(r.out, re);
  }
});

test('broken YAML: the line and the parser message', async () => {
  const r = await validate('listeners:\n  - { name: public, listen: 127.0.0.1:8443\nssls: [\n');
  assert.equal(r.code, 1);
  assert.match(r.out, /c-\w+\.yaml:\d+:\d+: .*\[TLSGATE_E_CONFIG_PARSE\]/);
});

test('references: a missing env var and file are named; $secret:// without a provider is refused, not a crash', async () => {
  const r = await validate(base(`  - { id: refs, snis: [good.test], cert: "$env://TLSGATE_TEST_NOPE", key: "$file://nope.key" }`));
  assert.equal(r.code, 1);
  assert.match(
    r.out,
    /ssls\[0\]\.cert: \$env:\/\/TLSGATE_TEST_NOPE: environment variable TLSGATE_TEST_NOPE is not set \[TLSGATE_E_SECRET_UNRESOLVED\]/,
  );
  assert.match(r.out, /ssls\[0\]\.key: \$file:\/\/nope\.key: cannot read .*nope\.key \(ENOENT\)/);
  const v = await validate(base(`  - { id: vault, snis: [v.test], cert: "$secret://vault/main/certs/v/cert", key: "$secret://vault/main/certs/v/key" }`));
  assert.equal(v.code, 1);
  assert.match(
    v.out,
    /ssls\[0\]\.cert: \$secret:\/\/vault\/main\/certs\/v\/cert: secret provider "main" is not configured.*\[TLSGATE_E_SECRET_PROVIDER\]/,
  );
  assert.match(
    v.out,
    /ssls\[0\]\.key: \$secret:\/\/vault\/main\/certs\/v\/key: secret provider "main" is not configured/,
  );
});

test('$env:// values resolve from the environment', async () => {
  const r = await validate(base(`  - { id: envs, snis: [good.test], cert: "$env://TLSGATE_T_CERT", key: "$env://TLSGATE_T_KEY" }`), {
    TLSGATE_T_CERT: good.cert,
    TLSGATE_T_KEY: good.key,
  });
  assert.equal(r.code, 0, r.out);
});

test('uws listener with an mTLS SSL object is refused, pointing at engine: node', async () => {
  writeFileSync(join(dir, 'ca.pem'), ca.cert);
  const r = await validate(`
listeners: [{ name: fast, listen: 127.0.0.1:8443, engine: uws }]
ssls:
  - { id: m, snis: [good.test], cert: "$file://good.crt", key: "$file://good.key", client: { ca: "$file://ca.pem" } }
routes: [{ id: r, paths: [/], respond: { status: 200 } }]
`);
  assert.equal(r.code, 1);
  assert.match(
    r.out,
    /listeners\[0\]\.engine: uws cannot enforce mTLS.*use engine: node.*\[TLSGATE_E_ENGINE_UNSUPPORTED\]/,
  );
});

test('YAML errors give the real line and column, not 0:0', async () => {
  const dup = await validate('listeners: []\nworkers: 2\nlisteners: []\n');
  assert.equal(dup.code, 1);
  assert.match(dup.out, /c-\w+\.yaml:3:1: Map keys must be unique \[TLSGATE_E_CONFIG_PARSE\]/);
  const open = await validate(
    'listeners:\n  - { name: public, listen: 127.0.0.1:8443 }\nssls:\n  - id: a\n    snis: [a.test\nroutes: []\n',
  );
  assert.equal(open.code, 1);
  assert.match(open.out, /c-\w+\.yaml:6:1: Flow sequence .*\[TLSGATE_E_CONFIG_PARSE\]/);
  assert.doesNotMatch(open.out + dup.out, /:0:0:/);
});

test('an unresolved reference does not hide the certificate errors of other objects', async () => {
  const r = await validate(base(`  - { id: missing, snis: [m.test], cert: "$file://nope.crt", key: "$file://good.key" }
  - { id: old, snis: [old.test], cert: "$file://old.crt", key: "$file://old.key" }
  - { id: mismatch, snis: [good.test], cert: "$file://good.crt", key: "$file://other.key" }`));
  assert.equal(r.code, 1);
  assert.match(r.out, /ssls\[0\]\.cert: \$file:\/\/nope\.crt: cannot read .*\[TLSGATE_E_SECRET_UNRESOLVED\]/);
  assert.match(r.out, /ssls\[1\]\.cert: expired on .*\[TLSGATE_E_CERT_EXPIRED\]/);
  assert.match(r.out, /ssls\[2\]\.key: does not match the certificate .*\[TLSGATE_E_CERT_KEY_MISMATCH\]/);
  assert.equal(r.out.match(/^error: /gm)?.length, 3, r.out);
});

test('an unknown field suggests the nearest known one', async () => {
  const r = await validate(`
listener: [{ name: public, listen: 127.0.0.1:8443 }]
ssls:
  - { id: a, sni: [good.test], cert: "$file://good.crt", key: "$file://good.key" }
routes: [{ id: r, path: [/], respond: { status: 200, body: ok, header: { a: b } } }]
upstreams: [{ id: u, nodes: [{ host: 127.0.0.1, port: 80, wieght: 1 }], colour: blue }]
`);
  assert.equal(r.code, 1);
  assert.match(r.out, /(^|\n)error: listener: unknown field; did you mean "listeners"\?/);
  assert.match(r.out, /ssls\[0\]\.sni: unknown field; did you mean "snis"\?/);
  assert.match(r.out, /routes\[0\]\.path: unknown field; did you mean "paths"\?/);
  assert.match(r.out, /routes\[0\]\.respond\.header: unknown field; did you mean "headers"\?/);
  assert.match(r.out, /upstreams\[0\]\.nodes\[0\]\.wieght: unknown field; did you mean "weight"\?/);
  assert.match(
    r.out,
    /upstreams\[0\]\.colour: unknown field \(expected one of: id, name, desc, labels, scheme/,
    'no far-fetched suggestion',
  );
});

test('a value of the wrong shape shows the expected shape', async () => {
  const r = await validate(`
listeners: { name: public, listen: 127.0.0.1:8443 }
admin: 127.0.0.1:9180
ssls: [good]
upstreams:
  - { id: u1, nodes: "a:1" }
  - { id: u2, nodes: ["a:1"] }
routes: [{ id: r, paths: /, upstream: u1, respond: { status: 200, headers: [a] } }]
`);
  assert.equal(r.code, 1);
  assert.match(r.out, /listeners: must be a list of \{name, listen, engine, default_ssl, …\}, got a mapping/);
  assert.match(r.out, /admin: must be a mapping \{listen, api_keys, tls\}, got "127\.0\.0\.1:9180"/);
  assert.match(
    r.out,
    /ssls\[0\]: must be a mapping \{id, name, desc, labels, type, snis, cert, key, certs, keys, client, ssl_protocols, ssl_ciphers, status\}, got "good"/,
  );
  assert.match(r.out, /upstreams\[0\]\.nodes: must be a list of \{host, port, weight\}, got "a:1"/);
  assert.match(r.out, /upstreams\[1\]\.nodes\[0\]: must be a mapping \{host, port, weight\}, got "a:1"/);
  assert.match(r.out, /routes\[0\]\.paths: must be a list of path prefixes, got "\/"/);
  assert.match(r.out, /routes\[0\]\.respond\.headers: must be a mapping \{header-name: value\}, got a list/);
});

test('nodes as the APISIX mapping {"host:port": weight}: each entry named by its key when refused', async () => {
  const ok = await validate(`
listeners: [{ name: public, listen: 127.0.0.1:8443 }]
upstreams: [{ id: u, nodes: { "10.0.0.1:80": 2, "[::1]:8080": 1, "api.internal:81": 0 } }]
routes: [{ id: r, paths: [/], upstream: u }]
`);
  assert.equal(ok.code, 0, ok.out);
  const bad = await validate(`
listeners: [{ name: public, listen: 127.0.0.1:8443 }]
upstreams: [{ id: u, nodes: { "10.0.0.1": 1, "[::1]:99999": 1, "h:80": -2, "a b:80": 1 } }]
routes: [{ id: r, paths: [/], upstream: u }]
`);
  assert.equal(bad.code, 1);
  assert.match(bad.out, /upstreams\[0\]\.nodes\["10\.0\.0\.1"\]\.port: is required/);
  assert.match(bad.out, /upstreams\[0\]\.nodes\["\[::1\]:99999"\]\.port: must be between 1 and 65535/);
  assert.match(bad.out, /upstreams\[0\]\.nodes\["h:80"\]\.weight: must be between 0 and 10000/);
  assert.match(bad.out, /upstreams\[0\]\.nodes\["a b:80"\]\.host: /);
});

test('one refused object does not set off "not the id" errors in its referrers', async () => {
  const r = await validate(`
listeners: [{ name: public, listen: 127.0.0.1:8443, default_ssl: site }]
ssls:
  - { id: site, snis: [good.test] }
  - { id: gw-client, type: client, cert: 42, key: "$file://good.key" }
upstreams:
  - { id: "bad id!", nodes: [{ host: 127.0.0.1, port: 80 }] }
  - { id: tls-up, scheme: https, nodes: [{ host: 127.0.0.1, port: 443 }], tls: { client_ssl: gw-client } }
routes:
  - { id: r1, paths: [/a], upstream: "bad id!" }
  - { id: r2, paths: [/b], upstream: ghost }
`);
  assert.equal(r.code, 1);
  assert.match(r.out, /ssls\[0\]\.cert: is required/);
  assert.match(r.out, /ssls\[1\]\.cert: must be a non-empty string/);
  assert.match(r.out, /upstreams\[0\]\.id: "bad id!" must be 1-64 characters/);
  assert.match(
    r.out,
    /routes\[1\]\.upstream: "ghost" is not the id of an upstream/,
    'a real dangling reference is still reported',
  );
  assert.doesNotMatch(r.out, /listeners\[0\]\.default_ssl/);
  assert.doesNotMatch(r.out, /routes\[0\]\.upstream/);
  assert.doesNotMatch(r.out, /upstreams\[1\]\.tls\.client_ssl/);
});

test('every bad socket/header value is refused by validate with its path, all at once', async () => {
  const r = await validate(`
listeners: [{ name: public, listen: "gateway.example:8443" }, { name: p2, listen: "127.0.0.1:0" }]
ssls:
  - { id: good, snis: [good.test, "*.com"], cert: "$file://good.crt", key: "$file://good.key" }
upstreams:
  - id: u
    host: "a b"
    scheme: https
    tls: { sni: "::1" }
    nodes: [{ host: "bad host", port: 80 }, { host: "[::1]", port: 65536 }]
    client_identity_headers: { verify: "x:verify", fingerprint: X-Client-Cert-Subject }
    timeout: { connect: 0ms, read: 30d }
routes:
  - { id: r, paths: [/], respond: { status: 600, body: [1], headers: { "x-a": "1\\r\\nx-b: 2", transfer-encoding: chunked } } }
`);
  assert.equal(r.code, 1);
  for (const re of [
    /listeners\[0\]\.listen: "gateway\.example" is not an address to listen on/,
    /listeners\[1\]\.listen: "127\.0\.0\.1:0" must be host:port .*port 1-65535/,
    /ssls\[0\]\.snis\[1\]: "\*\.com" is a wildcard over the public suffix "com"/,
    /upstreams\[0\]\.host: "a b" is not a Host value/,
    /upstreams\[0\]\.tls\.sni: "::1" is an IP address/,
    /upstreams\[0\]\.nodes\[0\]\.host: "bad host" is not a host name or IP address/,
    /upstreams\[0\]\.nodes\[1\]\.host: "\[::1\]": write an IPv6 address without brackets/,
    /upstreams\[0\]\.nodes\[1\]\.port: must be between 1 and 65535, got 65536/,
    /upstreams\[0\]\.client_identity_headers\.verify: "x:verify" is not a header name/,
    /upstreams\[0\]\.client_identity_headers: the three header names must differ/,
    /upstreams\[0\]\.timeout\.connect: must be at least 1 ms, got "0ms"/,
    /upstreams\[0\]\.timeout\.read: must be at most 24 days \(Node timers\), got "30d"/,
    /routes\[0\]\.respond\.status: must be between 200 and 599, got 600/,
    /routes\[0\]\.respond\.body: must be a string/,
    /routes\[0\]\.respond\.headers\["x-a"\]: holds CR/,
    /routes\[0\]\.respond\.headers\["transfer-encoding"\]: "transfer-encoding" is set by the gateway/,
  ]) {
    assert.match(r.out, re);
  }
});

test('a misspelt enum value or reference suggests the nearest one', async () => {
  const r = await validate(`
listeners: [{ name: p, listen: 127.0.0.1:8444, engine: uwss, default_ssl: god }]
ssls:
${GOOD}
upstreams: [{ id: api, nodes: [{ host: 127.0.0.1, port: 80 }] }]
routes: [{ id: r, paths: [/], upstream: apl }, { id: r2, paths: [/x], upstream: zzzzzz }]
`);
  assert.equal(r.code, 1);
  assert.match(r.out, /listeners\[0\]\.engine: must be one of node \| uws, got "uwss"; did you mean "uws"\?/);
  assert.match(r.out, /listeners\[0\]\.default_ssl: "god" is not the id of an SSL object \(did you mean "good"\?\)/);
  assert.match(r.out, /routes\[0\]\.upstream: "apl" is not the id of an upstream \(did you mean "api"\?\)/);
  assert.match(r.out, /routes\[1\]\.upstream: "zzzzzz" is not the id of an upstream \[/);
});

test('balancer and active-check fields: bad values refused with their paths, misplaced ones warned', async () => {
  const r = await validate(`
listeners: [{ name: public, listen: 127.0.0.1:8443 }]
ssls:
${GOOD}
upstreams:
  - { id: a, type: chash, key: "http_", nodes: [{ host: 127.0.0.1, port: 80 }] }
  - { id: b, type: chash, hash_on: header, key: "x user", nodes: [{ host: 127.0.0.1, port: 80 }] }
  - { id: c, type: least_con, nodes: [{ host: 127.0.0.1, port: 80 }] }
  - { id: e, type: chash, hash_on: cookie, nodes: [{ host: 127.0.0.1, port: 80 }] }
  - id: d
    nodes: [{ host: 127.0.0.1, port: 80 }]
    checks:
      active:
        type: grpc
        http_path: "no-slash"
        timeout: 0ms
        healthy: { interval: 10ms, successes: 0, http_statuses: [99] }
        unhealthy: { http_failures: 255, tcp_failures: -1, timeouts: x, http_statuses: [200, 600] }
      passive: {}
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`);
  assert.equal(r.code, 1);
  for (const re of [
    /upstreams\[0\]\.key: "http_" is not a key for hash_on: vars/,
    /upstreams\[1\]\.key: "x user" is not a header name/,
    /upstreams\[2\]\.type: must be one of roundrobin \| least_conn \| chash, got "least_con"; did you mean/,
    /upstreams\[3\]\.key: is required with hash_on: cookie/,
    /upstreams\[4\]\.checks\.active\.type: must be one of http \| https \| tcp/,
    /upstreams\[4\]\.checks\.active\.http_path: must be a path starting with "\/"/,
    /upstreams\[4\]\.checks\.active\.timeout: must be between 10ms and 1m/,
    /upstreams\[4\]\.checks\.active\.healthy\.interval: must be between 100ms and 1h/,
    /upstreams\[4\]\.checks\.active\.healthy\.successes: must be between 1 and 254, got 0/,
    /upstreams\[4\]\.checks\.active\.healthy\.http_statuses\[0\]: must be between 200 and 599, got 99/,
    /upstreams\[4\]\.checks\.active\.unhealthy\.http_failures: must be between 1 and 254, got 255/,
    /upstreams\[4\]\.checks\.active\.unhealthy\.tcp_failures: must be between 1 and 254, got -1/,
    /upstreams\[4\]\.checks\.active\.unhealthy\.timeouts: must be an integer/,
    /upstreams\[4\]\.checks\.active\.unhealthy\.http_statuses\[1\]: must be between 200 and 599, got 600/,
    /upstreams\[4\]\.checks\.passive: unknown field \(expected one of: active\)/,
  ]) {
    assert.match(r.out, re);
  }
  const w = await validate(`
listeners: [{ name: public, listen: 127.0.0.1:8443 }]
ssls:
${GOOD}
upstreams:
  - { id: a, key: uri, nodes: [{ host: 127.0.0.1, port: 80 }] }
  - { id: b, type: chash, key: arg_user, checks: { active: { type: tcp } }, nodes: [{ host: 127.0.0.1, port: 80 }] }
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`);
  assert.equal(w.code, 0, w.out);
  assert.match(w.out, /upstreams\[0\]\.key: is ignored: type is roundrobin, not chash/);
});
