// Certificates and keys an edge must refuse or warn about, each built at run time and
// checked through `tlsgate validate` (the same load → resolve → compile path a reload
// takes): no SAN (no CN fallback), an expired or not-yet-valid intermediate, RSA under
// 2048 bits, wildcards over a public suffix, EKU named by name; and the names that lose
// client verification when an mTLS object is disabled or removed (mtlsLoss).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from './helpers/gateway';
import { createCA, issue, server } from './helpers/pki';
import { parseConfigText } from '../src/config/load';
import { mtlsLoss, mtlsLossIssues } from '../src/config/mtls-loss';

const dir = mkdtempSync(join(tmpdir(), 'tlsgate-certpolicy-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const day = 86_400_000;
const ca = createCA('Policy CA');
const root = createCA('Policy Root');
const ago = (days: number): Date => new Date(Date.now() - days * day);
const expiredInter = createCA('Expired Inter', { issuer: root, notBefore: ago(40), notAfter: ago(1) });
const futureInter = createCA('Future Inter', { issuer: root, notBefore: new Date(Date.now() + day) });
const goodInter = createCA('Good Inter', { issuer: root });
const keyed = (inter: typeof root, name: string): { cert: string; key: string } => {
  const l = server(inter, [name]);
  return { cert: l.cert + inter.cert, key: l.key };
};
const chains = {
  expired: keyed(expiredInter, 'e.test'),
  future: keyed(futureInter, 'f.test'),
  good: keyed(goodInter, 'g.test'),
};
const noSan = issue({ cn: 'nosan.test', eku: ['serverAuth'], issuer: ca });
const weak = server(ca, ['weak.test'], { keyType: 'rsa-1024' });
const rsa2048 = server(ca, ['strong.test'], { keyType: 'rsa-2048' });
const wideSan = server(ca, ['*.com', '*.co.uk', 'ok.example.co.uk']);
const local = server(ca, ['*.localhost', '*.example.co.uk']);
const clientOnly = issue({ cn: 'svc', dns: ['svc.test'], eku: ['clientAuth'], issuer: ca });
const site = server(ca, ['api.site.test', '*.site.test']);

const files: Record<string, string> = {
  'nosan.crt': noSan.cert, 'nosan.key': noSan.key,
  'weak.crt': weak.cert, 'weak.key': weak.key,
  'strong.crt': rsa2048.cert, 'strong.key': rsa2048.key,
  'wide.crt': wideSan.cert, 'wide.key': wideSan.key,
  'local.crt': local.cert, 'local.key': local.key,
  'svc.crt': clientOnly.cert, 'svc.key': clientOnly.key,
  'site.crt': site.cert, 'site.key': site.key, 'ca.crt': ca.cert,
  ...Object.fromEntries(Object.entries(chains).flatMap(([n, c]) => [[`${n}.crt`, c.cert], [`${n}.key`, c.key]])),
};
for (const [n, c] of Object.entries(files)) writeFileSync(join(dir, n), c);

function validate(yaml: string): Promise<{ code: number; out: string }> {
  const file = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'validate', '--config', file], (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

const config = (ssls: string, listeners = '[{ name: public, listen: 127.0.0.1:8443 }]'): string => `
listeners: ${listeners}
ssls:
${ssls}
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`;
const ssl = (id: string, snis: string, file: string, extra = ''): string =>
  `  - { id: ${id}, snis: [${snis}], cert: "$file://${file}.crt", key: "$file://${file}.key"${extra} }`;

test('a certificate with no SAN is refused; its CN is not used for the SNI', async () => {
  const r = await validate(config(ssl('nosan', 'nosan.test', 'nosan')));
  assert.equal(r.code, 1);
  assert.match(
    r.out,
    /ssls\[0\]\.cert: has no DNS Subject Alternative Name \(subject CN=nosan\.test\).*\[TLSGATE_E_CERT_NO_SAN\]/,
  );
  assert.doesNotMatch(r.out, /TLSGATE_E_SNI_NOT_COVERED/, 'no follow-on coverage error');
});

test('a chain with an expired or a not-yet-valid intermediate is refused; a valid chain passes', async () => {
  const ssls = [ssl('exp', 'e.test', 'expired'), ssl('fut', 'f.test', 'future'), ssl('ok', 'g.test', 'good')];
  const r = await validate(config(ssls.join('\n')));
  assert.equal(r.code, 1);
  assert.match(
    r.out,
    /ssls\[0\]\.cert: chain certificate 2 \(CN=Expired Inter\) expired on .*\[TLSGATE_E_CERT_EXPIRED\]/,
  );
  assert.match(
    r.out,
    /ssls\[1\]\.cert: chain certificate 2 \(CN=Future Inter\) is not valid before .*\[TLSGATE_E_CERT_NOT_YET_VALID\]/,
  );
  assert.doesNotMatch(r.out, /ssls\[2\]/);
  const ok = await validate(config(ssl('ok', 'g.test', 'good')));
  assert.equal(ok.code, 0, ok.out);
});

test('an RSA key under 2048 bits is refused; 2048 bits passes', async () => {
  const ssls = [ssl('weak', 'weak.test', 'weak'), ssl('strong', 'strong.test', 'strong')];
  const r = await validate(config(ssls.join('\n')));
  assert.equal(r.code, 1);
  assert.match(
    r.out,
    /ssls\[0\]\.cert: the certificate has a 1024-bit RSA key; at least 2048 bits are required \[TLSGATE_E_KEY_WEAK\]/,
  );
  assert.doesNotMatch(r.out, /ssls\[1\]/);
});

test('a wildcard over a public suffix is refused as an SNI and does not count as a covering SAN', async () => {
  const snis = await validate(config(ssl('wide', '"*.com", "*.co.uk", "*.github.io", "*.example.co.uk"', 'local')));
  assert.equal(snis.code, 1);
  assert.match(
    snis.out,
    /ssls\[0\]\.snis\[0\]: "\*\.com" is a wildcard over the public suffix "com".*\[TLSGATE_E_WILDCARD_PUBLIC_SUFFIX\]/,
  );
  assert.match(snis.out, /ssls\[0\]\.snis\[1\]: "\*\.co\.uk" is a wildcard over the public suffix "co\.uk"/);
  assert.match(snis.out, /ssls\[0\]\.snis\[2\]: "\*\.github\.io" is a wildcard over the public suffix "github\.io"/);
  assert.doesNotMatch(snis.out, /snis\[3\]/, '*.example.co.uk is below a registrable domain');

  const sans = await validate(config(ssl('wide', 'shop.com, a.co.uk, ok.example.co.uk', 'wide')));
  assert.equal(sans.code, 1);
  assert.match(
    sans.out,
    /ssls\[0\]\.snis\[0\]: "shop\.com" is covered only by the SAN "\*\.com", a wildcard over the public suffix "com".*\[TLSGATE_E_WILDCARD_PUBLIC_SUFFIX\]/,
  );
  assert.match(sans.out, /ssls\[0\]\.snis\[1\]: "a\.co\.uk" is covered only by the SAN "\*\.co\.uk"/);
  assert.doesNotMatch(sans.out, /snis\[2\]/);

  const ok = await validate(config(ssl('local', '"*.localhost", "*.example.co.uk"', 'local')));
  assert.equal(ok.code, 0, ok.out);
});

test('an EKU problem names serverAuth / clientAuth, never an OID', async () => {
  const r = await validate(config(ssl('svc', 'svc.test', 'svc')));
  assert.equal(r.code, 1);
  assert.match(
    r.out,
    /ssls\[0\]\.cert: Extended Key Usage \(clientAuth\) lacks serverAuth, required for an SSL object of type server \[TLSGATE_E_CERT_EKU\]/,
  );
  assert.doesNotMatch(r.out, /1\.3\.6\.1/);
});

test('validate warns when a disabled mTLS object\'s name is served by a plain wildcard', async () => {
  const r = await validate(config([
    ssl('api', 'api.site.test', 'site', ', client: { ca: "$file://ca.crt" }, status: disabled'),
    ssl('wild', '"*.site.test"', 'site'),
  ].join('\n')));
  assert.equal(r.code, 0, r.out);
  assert.match(
    r.out,
    /warning: ssls\[0\]\.status: "api\.site\.test" of the disabled mTLS SSL object "api" is served by "wild" without client certificate verification \[TLSGATE_E_MTLS_LOSS\]/,
  );
  const fine = await validate(config([
    ssl('api', 'api.site.test', 'site', ', client: { ca: "$file://ca.crt" }'),
    ssl('wild', '"*.site.test"', 'site'),
  ].join('\n')));
  assert.equal(fine.code, 0, fine.out);
  assert.doesNotMatch(fine.out, /MTLS_LOSS/);
});

// mtlsLoss on parsed configs (schema only: `$file://` references are not read).
const parse = (ssls: string, defaultSsl = ''): ReturnType<typeof parseConfigText>['config'] =>
  parseConfigText(
    config(ssls, `[{ name: public, listen: 127.0.0.1:8443${defaultSsl ? `, default_ssl: ${defaultSsl}` : ''} }]`),
    join(dir, 'x.yaml'),
  ).config;
const CA = ', client: { ca: "$file://ca.crt" }';
const MTLS = ssl('api', 'api.site.test, admin.site.test', 'site', ', client: { ca: "$file://ca.crt" }');
const DISABLED = ssl('api', 'api.site.test, admin.site.test', 'site', `${CA}, status: disabled`);
const WILD = ssl('wild', '"*.site.test"', 'site');
const OTHER = ssl('other', 'other.test', 'site');

test('mtlsLoss: disabling or removing an mTLS object under a plain wildcard names each SNI', () => {
  const prev = parse([MTLS, WILD].join('\n'));
  const expected = [
    { sni: 'api.site.test', from: 'api', to: 'wild' },
    { sni: 'admin.site.test', from: 'api', to: 'wild' },
  ];
  assert.deepEqual(mtlsLoss(prev, parse([DISABLED, WILD].join('\n'))), expected);
  const shadowed = parse([DISABLED, WILD].join('\n'));
  assert.deepEqual(mtlsLoss(undefined, shadowed), expected, 'validate: shadowed in the config itself');
  assert.deepEqual(mtlsLoss(prev, parse(WILD)), expected);
  const issues = mtlsLossIssues(prev, parse(WILD));
  assert.equal(issues.length, 2);
  assert.deepEqual(issues[0], {
    path: 'ssls[0] (removed)',
    code: 'TLSGATE_E_MTLS_LOSS',
    severity: 'warning',
    message: '"api.site.test" loses client certificate verification: mTLS SSL object "api" is removed, ' +
      '"wild" serves it without a client CA',
  });
  assert.match(mtlsLossIssues(prev, parse([DISABLED, WILD].join('\n')))[1]!.message, /"admin\.site\.test" .* "api" is disabled/);
  assert.deepEqual(mtlsLoss(prev, prev), []);
});

test('mtlsLoss: a listener default_ssl without mTLS counts; no coverage at all is no loss', () => {
  const prev = parse([MTLS, OTHER].join('\n'), 'other');
  assert.deepEqual(mtlsLoss(prev, parse(OTHER, 'other')), [
    { sni: 'api.site.test', from: 'api', to: 'other' },
    { sni: 'admin.site.test', from: 'api', to: 'other' },
  ]);
  assert.deepEqual(mtlsLoss(parse([MTLS, OTHER].join('\n')), parse(OTHER)), [], 'the handshake fails: not a loss');
});

test('mtlsLoss: the name moving to another mTLS object, or client.ca dropped in place', () => {
  const prev = parse([MTLS, WILD].join('\n'));
  const moved = parse([WILD, ssl('api2', 'api.site.test, admin.site.test', 'site', CA)].join('\n'));
  assert.deepEqual(mtlsLoss(prev, moved), []);
  const dropped = parse([ssl('api', 'api.site.test, admin.site.test', 'site'), WILD].join('\n'));
  assert.deepEqual(mtlsLoss(prev, dropped), [
    { sni: 'api.site.test', from: 'api', to: 'api' },
    { sni: 'admin.site.test', from: 'api', to: 'api' },
  ]);
});

test('mtlsLoss: an mTLS wildcard removed while a default_ssl answers', () => {
  const prev = parse([ssl('wm', '"*.secure.test"', 'site', CA), OTHER].join('\n'), 'other');
  assert.deepEqual(mtlsLoss(prev, parse(OTHER, 'other')), [{ sni: '*.secure.test', from: 'wm', to: 'other' }]);
});
