// An operator's scenario: certificates and keys live in Vault and AWS Secrets Manager
// (local stand-ins speaking their wire APIs, see test/fakes/README.md). The gateway
// resolves them in the primary only, rotates when a value changes at the source,
// keeps serving when the manager goes down, audits every change, and never shows a
// key or token anywhere.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Agent } from 'node:https';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { FakeVault } from './fakes/vault-server';
import { FakeAws } from './fakes/aws-server';
import { Gateway, freePort, get, handshake, waitFor } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

const ca = createCA('Secrets Test CA');
const siteV1 = server(ca, ['site.test']);
const siteV2 = server(ca, ['site.test']);
const api = server(ca, ['api.test']);
const VAULT_TOKEN = 'hvs.' + 'T0kenForTlsgateTests' + Math.random().toString(36).slice(2);
const AWS_KEY_ID = 'AKIATLSGATETEST00001';
const AWS_SECRET = 'tlsgate/secret+access/' + Math.random().toString(36).slice(2);
let vault: FakeVault;
let aws: FakeAws;
const gw = new Gateway();
let port = 0;

const config = (providers = 'both'): string => `
workers: 2
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
audit: { path: audit.log }
listeners: [{ name: public, listen: 127.0.0.1:${port} }]
secret_providers:
  - { id: vault-main, type: vault, address: "${vault.address}", kv_version: 2, mount: secret, auth: { token: "$env://TLSGATE_T_VAULT_TOKEN" }, tls: { ca: "$file://vault-ca.pem" }, refresh_interval: 1s }
${providers === 'both' ? `  - { id: aws-main, type: aws, region: eu-west-1, endpoint: "${aws.endpoint}", access_key_id: "$env://TLSGATE_T_AWS_ID", secret_access_key: "$env://TLSGATE_T_AWS_SECRET", tls: { ca: "$file://aws-ca.pem" } }` : ''}
ssls:
  - { id: site, snis: [site.test], cert: "$secret://vault/vault-main/certs/site/cert", key: "$secret://vault/vault-main/certs/site/key" }
  - { id: api, snis: [api.test], cert: "$secret://aws/aws-main/tls.api/cert", key: "$secret://aws/aws-main/tls.api/key" }
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`;
const env = { TLSGATE_T_VAULT_TOKEN: VAULT_TOKEN, TLSGATE_T_AWS_ID: AWS_KEY_ID, TLSGATE_T_AWS_SECRET: AWS_SECRET };

before(async () => {
  vault = await FakeVault.start();
  vault.enableKv('secret', 2);
  vault.addToken(VAULT_TOKEN);
  vault.put('secret', 'certs/site', { cert: siteV1.cert, key: siteV1.key });
  aws = await FakeAws.start({ region: 'eu-west-1' });
  aws.addCredentials(AWS_KEY_ID, AWS_SECRET);
  aws.putSecret('tls.api', { string: JSON.stringify({ cert: api.cert, key: api.key }) });
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

test('each reference kind resolves: vault KV v2 and an AWS JSON field', async () => {
  assert.equal((await handshake(port, { servername: 'site.test' })).cert?.fingerprint256, fp(siteV1.cert));
  assert.equal((await handshake(port, { servername: 'api.test' })).cert?.fingerprint256, fp(api.cert));
  const s = (await gw.admin('GET', '/v1/ssls/site')).body;
  assert.deepEqual(s.sources, { cert: '$secret://vault/vault-main/certs/site/cert', key: '$secret://vault/vault-main/certs/site/key' });
});

test('a key rotated at the source is served within one refresh interval, with no failed request on an open connection', async () => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  assert.equal((await get(port, '/', { servername: 'site.test', agent })).status, 200);
  const { version } = await gw.status();
  vault.put('secret', 'certs/site', { cert: siteV2.cert, key: siteV2.key });
  let requests = 0;
  let failures = 0;
  // Keep the open connection busy while the rotation happens.
  await waitFor(async () => {
    const r = await get(port, '/', { servername: 'site.test', agent }).catch(() => ({ status: 0 }));
    requests++;
    if (r.status !== 200) failures++;
    const st = await gw.status();
    return st.workers.every((w) => w.version > version);
  }, 'rotation from vault', 10_000);
  assert.ok(requests > 0);
  assert.equal(failures, 0);
  for (let i = 0; i < 4; i++) assert.equal((await handshake(port, { servername: 'site.test' })).cert?.fingerprint256, fp(siteV2.cert));
  agent.destroy();
  const audit = await waitFor(() => {
    const p = join(gw.dir, 'audit.log');
    const lines = existsSync(p) ? readFileSync(p, 'utf8').trim().split('\n').map((l) => JSON.parse(l)) : [];
    return lines.find((l) => l.object === 'ssl' && l.id === 'site' && l.action === 'changed') ? lines : undefined;
  }, 'audit line');
  const changed = audit.find((l: { action: string }) => l.action === 'changed');
  assert.equal(changed.actor, 'secret-provider:vault-main');
  assert.equal(changed.fingerprint_sha256, fp(siteV2.cert));
  assert.ok(audit.some((l: { object: string; id: string; action: string }) => l.object === 'secret_provider' && l.id === 'vault-main' && l.action === 'added'));
});

test('vault down at refresh: keeps serving, the reference is marked stale, one warning; back up: not stale', async () => {
  const warned = gw.logs.filter((l) => l.level === 40 && /refresh/i.test(l.msg)).length;
  vault.down();
  const stale = await waitFor(async () => {
    const st = (await gw.admin('GET', '/v1/status')).body;
    return st.stale_secrets.length > 0 ? st.stale_secrets : undefined;
  }, 'stale secrets', 10_000);
  assert.ok(stale.some((s: { reference: string }) => s.reference === '$secret://vault/vault-main/certs/site/cert'));
  assert.equal((await get(port, '/', { servername: 'site.test' })).status, 200);
  assert.equal((await handshake(port, { servername: 'site.test' })).cert?.fingerprint256, fp(siteV2.cert));
  vault.up();
  await waitFor(async () => (await gw.admin('GET', '/v1/status')).body.stale_secrets.length === 0, 'recovery', 10_000);
  const streakWarnings = gw.logs.filter((l) => l.level === 40 && /refresh/i.test(l.msg)).length - warned;
  assert.ok(streakWarnings >= 1 && streakWarnings <= 2, `one warning per failure streak, got ${streakWarnings}`);
});

test('GET /v1/secret_providers: each provider with the fields that reference it, credentials as references', async () => {
  const b = (await gw.admin('GET', '/v1/secret_providers')).body;
  const v = b.providers.find((p: { id: string }) => p.id === 'vault-main');
  assert.deepEqual(v.auth, { token: '$env://TLSGATE_T_VAULT_TOKEN' });
  assert.deepEqual(
    v.referenced_by.map((r: { path: string }) => r.path).sort(),
    ['ssls[0].cert', 'ssls[0].key'],
  );
  assert.deepEqual(b.providers.find((p: { id: string }) => p.id === 'aws-main').referenced_by.length, 2);
});

test('removing a provider still referenced is refused, naming every referencing field', async () => {
  const { version } = await gw.status();
  gw.write('gateway.yaml', config('vault-only'));
  const r = await gw.admin('POST', '/v1/reload');
  assert.equal(r.status, 422);
  const errors = r.body.errors.join('\n');
  assert.match(errors, /ssls\[1\]\.cert: \$secret:\/\/aws\/aws-main\/tls\.api\/cert: secret provider "aws-main" is not configured/);
  assert.match(errors, /ssls\[1\]\.key: \$secret:\/\/aws\/aws-main\/tls\.api\/key: secret provider "aws-main" is not configured/);
  assert.equal((await gw.status()).version, version);
  assert.equal((await handshake(port, { servername: 'api.test' })).cert?.fingerprint256, fp(api.cert));
  gw.write('gateway.yaml', config());
  assert.equal((await gw.admin('POST', '/v1/reload')).status, 200);
});

test('nothing secret in logs, admin API output, audit log or process arguments', async () => {
  const needles = [VAULT_TOKEN, AWS_SECRET, ...[siteV1.key, siteV2.key, api.key].flatMap((k) => k.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----')))];
  const bodies = await Promise.all(['/v1/status', '/v1/ssls', '/v1/ssls/site', '/v1/upstreams', '/v1/secret_providers', '/metrics'].map(async (p) => JSON.stringify((await gw.admin('GET', p)).body)));
  const pids = [gw.proc!.pid!, ...(await gw.status()).workers.map((w) => w.pid)];
  const cmdlines = pids.map((pid) => readFileSync(`/proc/${pid}/cmdline`, 'utf8'));
  const haystacks: Array<[string, string]> = [
    ['stdout', gw.stdout],
    ['stderr', gw.stderr],
    ['audit', readFileSync(join(gw.dir, 'audit.log'), 'utf8')],
    ...bodies.map((b, i) => [`admin ${i}`, b] as [string, string]),
    ...cmdlines.map((c, i) => [`cmdline ${pids[i]}`, c] as [string, string]),
  ];
  for (const [name, text] of haystacks) {
    assert.doesNotMatch(text, /PRIVATE KEY/, `${name} holds a PEM key marker`);
    for (const n of needles) assert.ok(!text.includes(n), `${name} holds secret material`);
  }
  assert.ok(gw.stdout.length > 0, 'logs were captured');
});

test('a secret manager down at start: a clear error naming the reference, exit 1', async () => {
  const g2 = new Gateway();
  const [p2, a2] = await Promise.all([freePort(), freePort()]);
  g2.adminPort = a2;
  g2.write('vault-ca.pem', vault.ca);
  vault.down();
  try {
    await assert.rejects(
      g2.start(
        `
listeners: [{ name: public, listen: 127.0.0.1:${p2} }]
secret_providers:
  - { id: vault-main, type: vault, address: "${vault.address}", auth: { token: "$env://TLSGATE_T_VAULT_TOKEN" }, tls: { ca: "$file://vault-ca.pem" }, timeout: { connect: 1s, read: 1s } }
ssls:
  - { id: site, snis: [site.test], cert: "$secret://vault/vault-main/certs/site/cert", key: "$secret://vault/vault-main/certs/site/key" }
routes: [{ id: r, paths: [/], respond: { status: 200 } }]
`,
        env,
      ),
      /exited with 1/,
    );
    assert.match(g2.stderr, /ssls\[0\]\.cert: \$secret:\/\/vault\/vault-main\/certs\/site\/cert: .*\[TLSGATE_E_SECRET_PROVIDER_DOWN\]/);
    assert.ok(!g2.stderr.includes(VAULT_TOKEN));
  } finally {
    vault.up();
    await g2.stop();
  }
});
