// The seeds' short references: `$secret://vault/<path…>/<field>` and
// `$secret://aws/<secret-id>[/<json-field>]` go to the provider marked `default: true` for
// their type, next to the long forms that name a provider. Against the local Vault (KV v2)
// and AWS Secrets Manager stand-ins (test/fakes/), through the real gateway.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { FakeVault } from './fakes/vault-server';
import { FakeAws } from './fakes/aws-server';
import { CLI, Gateway, freePort, handshake, waitFor } from './helpers/gateway';
import { createCA, server } from './helpers/pki';
import { parseValue } from '../src/secrets/reference';

const ca = createCA('Short Refs Test CA');
const site = server(ca, ['site.test']);
const siteOther = server(ca, ['site.test']);
const other = server(ca, ['other.test']);
const api = server(ca, ['api.test']);
const VAULT_TOKEN = 'hvs.' + 'ShortRefs' + Math.random().toString(36).slice(2);
const AWS_KEY_ID = 'AKIATLSGATESHORT0001';
const AWS_SECRET = 'short/secret+access/' + Math.random().toString(36).slice(2);
let vault: FakeVault;
let aws: FakeAws;
const gw = new Gateway();
let port = 0;

const config = (vaultDefault: 'vault-main' | 'vault-other' = 'vault-main'): string => `
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port} }]
secret_providers:
  - { id: vault-main, type: vault, default: ${vaultDefault === 'vault-main'}, address: "${vault.address}", mount: secret,
      auth: { token: "$env://TLSGATE_T_VAULT_TOKEN" }, tls: { ca: "$file://vault-ca.pem" }, refresh_interval: 1s }
  - { id: vault-other, type: vault, default: ${vaultDefault === 'vault-other'}, address: "${vault.address}", mount: other,
      auth: { token: "$env://TLSGATE_T_VAULT_TOKEN" }, tls: { ca: "$file://vault-ca.pem" } }
  - { id: aws-main, type: aws, default: true, region: eu-west-1, endpoint: "${aws.endpoint}",
      access_key_id: "$env://TLSGATE_T_AWS_ID", secret_access_key: "$env://TLSGATE_T_AWS_SECRET", tls: { ca: "$file://aws-ca.pem" } }
ssls:
  - { id: site, snis: [site.test], cert: "$secret://vault/certs/site/cert", key: "$secret://vault/certs/site/key" }
  - { id: other, snis: [other.test], cert: "$secret://vault/vault-other/certs/o/cert", key: "$secret://vault/vault-other/certs/o/key" }
  - { id: api, snis: [api.test], cert: "$secret://aws/tls.api/cert", key: "$secret://aws/prod%2Ftls%2Fapi-key" }
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`;
const env = { TLSGATE_T_VAULT_TOKEN: VAULT_TOKEN, TLSGATE_T_AWS_ID: AWS_KEY_ID, TLSGATE_T_AWS_SECRET: AWS_SECRET };

before(async () => {
  vault = await FakeVault.start();
  vault.enableKv('secret', 2);
  vault.enableKv('other', 2);
  vault.addToken(VAULT_TOKEN);
  vault.put('secret', 'certs/site', { cert: site.cert, key: site.key });
  vault.put('other', 'certs/site', { cert: siteOther.cert, key: siteOther.key });
  vault.put('other', 'certs/o', { cert: other.cert, key: other.key });
  aws = await FakeAws.start({ region: 'eu-west-1' });
  aws.addCredentials(AWS_KEY_ID, AWS_SECRET);
  aws.putSecret('tls.api', { string: JSON.stringify({ cert: api.cert }) });
  aws.putSecret('prod/tls/api-key', { string: api.key });
  [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
  gw.write('vault-ca.pem', vault.ca);
  gw.write('aws-ca.pem', aws.ca);
  await gw.start(config(), env);
});
after(async () => {
  await gw.stop();
  await vault.close();
  await aws.close();
});

const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;

test('short vault (KV v2) and aws references resolve through the default providers; long forms still work', async () => {
  assert.equal((await handshake(port, { servername: 'site.test' })).cert?.fingerprint256, fp(site.cert));
  assert.equal((await handshake(port, { servername: 'other.test' })).cert?.fingerprint256, fp(other.cert));
  assert.equal((await handshake(port, { servername: 'api.test' })).cert?.fingerprint256, fp(api.cert));
  const s = (await gw.admin('GET', '/v1/ssls/site')).body;
  assert.deepEqual(s.sources, { cert: '$secret://vault/certs/site/cert', key: '$secret://vault/certs/site/key' });
  // The provider's reference list counts a short reference as its own.
  const providers = (await gw.admin('GET', '/v1/secret_providers')).body.providers;
  const refs = (id: string): string[] =>
    providers.find((p: { id: string }) => p.id === id).referenced_by.map((r: { path: string }) => r.path).sort();
  assert.deepEqual(refs('vault-main'), ['ssls[0].cert', 'ssls[0].key']);
  assert.deepEqual(refs('vault-other'), ['ssls[1].cert', 'ssls[1].key']);
  assert.deepEqual(refs('aws-main'), ['ssls[2].cert', 'ssls[2].key']);
});

test('a value rotated behind a short reference is served', async () => {
  const { version } = await gw.status();
  const next = server(ca, ['site.test']);
  vault.put('secret', 'certs/site', { cert: next.cert, key: next.key });
  await waitFor(async () => (await gw.status()).version > version, 'rotation', 10_000);
  await waitFor(async () => (await handshake(port, { servername: 'site.test' })).cert?.fingerprint256 === fp(next.cert),
    'new certificate served');
  vault.put('secret', 'certs/site', { cert: site.cert, key: site.key });
});

test('moving default: true to another provider re-reads every short reference from it', async () => {
  const { version } = await gw.status();
  gw.write('gateway.yaml', config('vault-other'));
  const r = await gw.admin('POST', '/v1/reload');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await gw.waitVersion(version + 1);
  assert.equal((await handshake(port, { servername: 'site.test' })).cert?.fingerprint256, fp(siteOther.cert));
  gw.write('gateway.yaml', config());
  assert.equal((await gw.admin('POST', '/v1/reload')).status, 200);
  assert.equal((await handshake(port, { servername: 'site.test' })).cert?.fingerprint256, fp(site.cert));
});

test('the first segment decides: a provider id of that type is the long form, anything else short', () => {
  const scope = [
    { id: 'main', type: 'vault' as const, default: true },
    { id: 'certs', type: 'aws' as const },
  ];
  const bound = (t: string): unknown => {
    const r = parseValue(t, scope);
    return r.ok ? r.ref : r.message;
  };
  assert.deepEqual(bound('$secret://vault/main/a/b'), {
    kind: 'vault', provider: 'main', path: 'a', field: 'b', text: '$secret://vault/main/a/b',
  });
  // "certs" is an aws provider, not a vault one: for vault it is a path segment.
  assert.deepEqual(bound('$secret://vault/certs/a/b'), {
    kind: 'vault', provider: 'main', path: 'certs/a', field: 'b', text: '$secret://vault/certs/a/b',
  });
  assert.deepEqual(bound('$secret://vault/a/b'), {
    kind: 'vault', provider: 'main', path: 'a', field: 'b', text: '$secret://vault/a/b',
  });
  assert.match(String(bound('$secret://vault/field')), /not a valid vault reference/);
  assert.deepEqual(bound('$secret://aws/certs/x%2Fy/f'), {
    kind: 'aws', provider: 'certs', secretId: 'x/y', field: 'f', text: '$secret://aws/certs/x%2Fy/f',
  });
  assert.match(String(bound('$secret://aws/x')), /no aws provider is marked default: true/);
});

function validate(yaml: string): Promise<{ code: number; out: string }> {
  const file = join(gw.dir, `v-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return new Promise((resolve) =>
    execFile(process.execPath, [CLI, 'validate', '--config', file], (e, o, er) =>
      resolve({ code: e ? ((e as { code?: number }).code ?? 1) : 0, out: o + er })));
}

const base = (providers: string, cert: string, key: string): string => `
listeners: [{ name: public, listen: 127.0.0.1:8443 }]
secret_providers:
${providers}
ssls: [{ id: s, snis: [s.test], cert: "${cert}", key: "${key}" }]
`;

test('validate: a short reference without a default, and two defaults of one type, are refused with paths', async () => {
  const v = `{ address: "https://127.0.0.1:1", auth: { token: t } }`;
  const none = await validate(base(`  - { id: v1, type: vault, ${v.slice(2)}`, '$secret://vault/certs/s/cert',
    '$secret://aws/tls-key'));
  assert.equal(none.code, 1);
  assert.match(none.out, /ssls\[0\]\.cert: \$secret:\/\/vault\/certs\/s\/cert: secret provider "certs" is not configured .*a short reference needs a vault provider marked default: true \[TLSGATE_E_SECRET_PROVIDER\]/);
  assert.match(none.out, /ssls\[0\]\.key: \$secret:\/\/aws\/tls-key: no aws provider is marked default: true \(no aws provider is configured\).*\[TLSGATE_E_SECRET_DEFAULT\]/);
  const two = await validate(base(
    `  - { id: v1, type: vault, default: true, ${v.slice(2)}\n  - { id: v2, type: vault, default: true, ${v.slice(2)}`,
    '$secret://vault/s/cert', '$secret://vault/v2/s/key'));
  assert.equal(two.code, 1);
  assert.match(two.out, /secret_providers\[1\]\.default: "v2" and "v1" \(secret_providers\[0\]\) are both default vault providers; at most one per type \[TLSGATE_E_SECRET_DEFAULT\]/);
  assert.match(two.out, /ssls\[0\]\.cert: \$secret:\/\/vault\/s\/cert: vault providers "v1", "v2" are all marked default: true; mark one \[TLSGATE_E_SECRET_DEFAULT\]/);
  // The long form names its provider: two defaults do not make it ambiguous.
  assert.doesNotMatch(two.out, /ssls\[0\]\.key/);
});
