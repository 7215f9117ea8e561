// Operator scenario: certificates and keys live in Vault KV; tlsgate reads them over TLS
// with a token or an AppRole login it keeps renewed. The Vault here is a local HTTPS
// stand-in speaking Vault's HTTP API.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCA, issue } from '../src/certs/pki';
import { SecretError } from '../src/errors';
import { createProvider, validateProviderConfig } from '../src/secrets/providers';
import { parseValue, type SecretRef } from '../src/secrets/reference';
import { resolveRef, type SecretProvider } from '../src/secrets/resolve';
import { VaultProvider, type TokenInfo, type VaultOptions } from '../src/secrets/vault';
import { FakeVault } from './fakes/vault-server';
import { nextEvent, waitFor } from './fakes/wait';

type ProviderRef = Extract<SecretRef, { kind: 'vault' | 'aws' }>;

function ref(text: string): ProviderRef {
  const p = parseValue(text);
  assert.ok(p.ok && p.ref && p.ref.kind === 'vault', text);
  return p.ref as ProviderRef;
}

async function rejection(p: Promise<unknown>): Promise<SecretError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof SecretError, `expected a SecretError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}

const token = () => `hvs.${randomBytes(18).toString('base64url')}`;

describe('vault secret provider', () => {
  let vault: FakeVault;
  const rootToken = token();
  const ca = createCA('vault test CA');
  const leaf = issue({ cn: 'example.com', dns: ['example.com'], issuer: ca });
  const providers: VaultProvider[] = [];

  function provider(o: Partial<VaultOptions> = {}): VaultProvider {
    const p = new VaultProvider({ id: 'vault-main', address: vault.address, kvVersion: 2, mount: 'secret', auth: { token: rootToken }, tls: { ca: vault.ca }, ...o });
    providers.push(p);
    return p;
  }

  before(async () => {
    vault = await FakeVault.start();
    vault.enableKv('secret', 2);
    vault.enableKv('kv1', 1);
    vault.enableKv('secret', 2, 'team-a');
    vault.addToken(rootToken);
    vault.put('secret', 'certs/example', { cert: leaf.cert, key: leaf.key, serial: 42 });
    vault.put('kv1', 'certs/example', { cert: leaf.cert, key: leaf.key });
    vault.put('secret', 'certs/team', { key: leaf.key }, 'team-a');
  });

  after(async () => {
    await Promise.all(providers.map((p) => p.close()));
    await vault.close();
  });

  it('reads a field from KV v2 (GET /v1/<mount>/data/<path>) with X-Vault-Token', async () => {
    const p = provider();
    assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/example/key')), leaf.key);
    const last = vault.requests.at(-1)!;
    assert.deepEqual([last.method, last.path, last.hasToken, last.status], ['GET', 'secret/data/certs/example', true, 200]);
  });

  it('resolves through resolveRef with the provider registered under its id', async () => {
    const providersById = new Map<string, SecretProvider>([['vault-main', provider()]]);
    const value = await resolveRef(ref('$secret://vault/vault-main/certs/example/cert'), { baseDir: __dirname, env: {}, providers: providersById });
    assert.equal(value, leaf.cert);
  });

  it('reads KV v1 (GET /v1/<mount>/<path>)', async () => {
    const p = provider({ kvVersion: 1, mount: 'kv1' });
    assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/example/cert')), leaf.cert);
    assert.equal(vault.requests.at(-1)!.path, 'kv1/certs/example');
  });

  it('reads cert and key of one path with one request', async () => {
    const p = provider();
    const n = vault.count();
    const [cert, key] = await Promise.all([p.fetch(ref('$secret://vault/vault-main/certs/example/cert')), p.fetch(ref('$secret://vault/vault-main/certs/example/key'))]);
    assert.equal(cert, leaf.cert);
    assert.equal(key, leaf.key);
    assert.equal(vault.count() - n, 1);
  });

  it('sends X-Vault-Namespace; a token of another namespace is refused', async () => {
    const nsToken = token();
    vault.addToken(nsToken, { namespace: 'team-a' });
    const p = provider({ namespace: 'team-a', auth: { token: nsToken } });
    assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/team/key')), leaf.key);
    assert.equal(vault.requests.at(-1)!.namespace, 'team-a');

    const e = await rejection(provider({ auth: { token: nsToken } }).fetch(ref('$secret://vault/vault-main/certs/team/key')));
    assert.equal(e.code, 'TLSGATE_E_SECRET_DENIED');
  });

  it('403: names the reference and the status, never the body or the token', async () => {
    const limited = token();
    vault.addToken(limited, { policies: ['secret/data/public/'] });
    const text = '$secret://vault/vault-main/certs/example/key';
    const e = await rejection(provider({ auth: { token: limited } }).fetch(ref(text)));
    assert.equal(e.code, 'TLSGATE_E_SECRET_DENIED');
    assert.equal(e.reference, text);
    assert.ok(e.message.startsWith(text + ': '), e.message);
    assert.match(e.message, /HTTP 403/);
    assert.ok(!e.message.includes('permission denied'), 'no body text');
    assert.ok(!e.message.includes(limited) && !e.message.includes(rootToken), 'no token');
    assert.ok(!e.message.includes('PRIVATE KEY'));
  });

  it('404: a missing path is TLSGATE_E_SECRET_UNRESOLVED, a missing field TLSGATE_E_SECRET_FORMAT', async () => {
    const p = provider();
    const nf = await rejection(p.fetch(ref('$secret://vault/vault-main/certs/nowhere/key')));
    assert.equal(nf.code, 'TLSGATE_E_SECRET_UNRESOLVED');
    assert.match(nf.message, /HTTP 404/);
    const field = await rejection(p.fetch(ref('$secret://vault/vault-main/certs/example/chain')));
    assert.equal(field.code, 'TLSGATE_E_SECRET_FORMAT');
    assert.match(field.message, /no field "chain"/);
    const notString = await rejection(p.fetch(ref('$secret://vault/vault-main/certs/example/serial')));
    assert.equal(notString.code, 'TLSGATE_E_SECRET_FORMAT');
    for (const e of [nf, field, notString]) assert.ok(!e.message.includes('PRIVATE KEY') && !e.message.includes(rootToken), e.message);
  });

  it('a deleted KV v2 version (404 with data: null) is unresolved', async () => {
    vault.put('secret', 'certs/old', { key: leaf.key });
    vault.delete('secret', 'certs/old');
    const e = await rejection(provider().fetch(ref('$secret://vault/vault-main/certs/old/key')));
    assert.equal(e.code, 'TLSGATE_E_SECRET_UNRESOLVED');
  });

  it('a sealed Vault (503) and a Vault that is down are TLSGATE_E_SECRET_PROVIDER_DOWN', async () => {
    const p = provider();
    vault.seal();
    try {
      const sealed = await rejection(p.fetch(ref('$secret://vault/vault-main/certs/example/key')));
      assert.equal(sealed.code, 'TLSGATE_E_SECRET_PROVIDER_DOWN');
      assert.match(sealed.message, /HTTP 503/);
      vault.down();
      const down = await rejection(p.fetch(ref('$secret://vault/vault-main/certs/example/key')));
      assert.equal(down.code, 'TLSGATE_E_SECRET_PROVIDER_DOWN');
      assert.match(down.message, /unreachable/);
    } finally {
      vault.up();
    }
    assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/example/key')), leaf.key);
  });

  it('AppRole: logs in once, renews the token before its lease ends, keeps reading', async () => {
    const roleId = randomBytes(8).toString('hex');
    const secretId = randomBytes(16).toString('hex');
    vault.addAppRole(roleId, secretId, { ttlSeconds: 1, renewable: true });
    const p = provider({ auth: { roleId, secretId } });
    const tokens: TokenInfo[] = [];
    p.on('token', (t) => tokens.push(t));
    assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/example/key')), leaf.key);
    assert.deepEqual(tokens.map((t) => t.source), ['login']);
    assert.equal(tokens[0]!.leaseMs, 1000);
    // Renewed at 2/3 of the 1 s lease, twice: the token outlives its first lease.
    await waitFor(() => tokens.filter((t) => t.source === 'renew').length >= 2, 'two renewals');
    assert.equal(vault.count((r) => r.path === 'auth/approle/login'), 1);
    assert.ok(vault.count((r) => r.path === 'auth/token/renew-self' && r.status === 200) >= 2);
    assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/example/cert')), leaf.cert);
    assert.equal(vault.count((r) => r.path === 'auth/approle/login'), 1, 'no second login');
    await p.close();
  });

  it('AppRole: a non-renewable token is replaced by a new login before it expires', async () => {
    const roleId = randomBytes(8).toString('hex');
    const secretId = randomBytes(16).toString('hex');
    vault.addAppRole(roleId, secretId, { ttlSeconds: 1, renewable: false });
    const p = provider({ auth: { roleId, secretId } });
    const tokens: TokenInfo[] = [];
    p.on('token', (t) => tokens.push(t));
    await p.login();
    const renewsBefore = vault.count((r) => r.path === 'auth/token/renew-self');
    const [info] = await nextEvent<[TokenInfo]>(p, 'token');
    assert.equal(info.source, 'login');
    assert.deepEqual(tokens.map((t) => t.source), ['login', 'login']);
    assert.equal(vault.count((r) => r.path === 'auth/token/renew-self'), renewsBefore, 'no renewal attempted');
    assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/example/key')), leaf.key);
    await p.close();
  });

  it('AppRole: when renewal stops extending the lease (max_ttl), it logs in again', async () => {
    const roleId = randomBytes(8).toString('hex');
    const secretId = randomBytes(16).toString('hex');
    vault.addAppRole(roleId, secretId, { ttlSeconds: 1, maxTtlSeconds: 2, renewable: true });
    const p = provider({ auth: { roleId, secretId } });
    const tokens: TokenInfo[] = [];
    p.on('token', (t) => tokens.push(t));
    await p.login();
    await waitFor(() => tokens.findIndex((t, i) => i > 0 && t.source === 'login') > 0, 'a second login after renewals', 8000);
    const sources = tokens.map((t) => t.source);
    assert.equal(sources[0], 'login');
    assert.ok(sources.indexOf('renew') > 0 && sources.indexOf('renew') < sources.lastIndexOf('login'), sources.join(','));
    assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/example/key')), leaf.key);
    await p.close();
  });

  it('AppRole: a revoked token (403) triggers one fresh login and the read succeeds', async () => {
    const roleId = randomBytes(8).toString('hex');
    const secretId = randomBytes(16).toString('hex');
    vault.addAppRole(roleId, secretId, { ttlSeconds: 3600 });
    const p = provider({ auth: { roleId, secretId } });
    await p.fetch(ref('$secret://vault/vault-main/certs/example/key'));
    vault.revokeAppRoleTokens();
    const logins = vault.count((r) => r.path === 'auth/approle/login');
    assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/example/key')), leaf.key);
    assert.equal(vault.count((r) => r.path === 'auth/approle/login') - logins, 1);
  });

  it('AppRole: a wrong secret_id is TLSGATE_E_SECRET_AUTH and the message holds neither id', async () => {
    const roleId = randomBytes(8).toString('hex');
    const secretId = randomBytes(16).toString('hex');
    const wrong = randomBytes(16).toString('hex');
    vault.addAppRole(roleId, secretId);
    const e = await rejection(provider({ auth: { roleId, secretId: wrong } }).fetch(ref('$secret://vault/vault-main/certs/example/key')));
    assert.equal(e.code, 'TLSGATE_E_SECRET_AUTH');
    assert.match(e.message, /AppRole login .* failed \(HTTP 400\)/);
    for (const s of [roleId, secretId, wrong, 'invalid secret id']) assert.ok(!e.message.includes(s), 'message leaks ' + s.length + ' chars');
  });

  it('TLS: an untrusted Vault certificate fails; tls.server_name checks a name the address lacks', async () => {
    const untrusted = await rejection(provider({ tls: {} }).fetch(ref('$secret://vault/vault-main/certs/example/key')));
    assert.equal(untrusted.code, 'TLSGATE_E_SECRET_PROVIDER_DOWN');

    const named = await FakeVault.start({ dns: ['vault.internal'], ips: [] });
    try {
      named.enableKv('secret', 2);
      named.addToken(rootToken);
      named.put('secret', 'certs/example', { key: leaf.key });
      const byIp = await rejection(provider({ address: named.address, tls: { ca: named.ca } }).fetch(ref('$secret://vault/vault-main/certs/example/key')));
      assert.equal(byIp.code, 'TLSGATE_E_SECRET_PROVIDER_DOWN');
      assert.match(byIp.message, /ERR_TLS_CERT_ALTNAME_INVALID/);
      const p = provider({ address: named.address, tls: { ca: named.ca, serverName: 'vault.internal' } });
      assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/example/key')), leaf.key);
    } finally {
      await named.close();
    }
  });

  it('TLS: a client certificate is presented when Vault asks for one', async () => {
    const clientCa = createCA('vault clients CA');
    const client = issue({ cn: 'tlsgate', eku: ['clientAuth'], issuer: clientCa });
    const mtls = await FakeVault.start({ clientCa: clientCa.cert });
    try {
      mtls.enableKv('secret', 2);
      mtls.addToken(rootToken);
      mtls.put('secret', 'certs/example', { key: leaf.key });
      const without = await rejection(provider({ address: mtls.address, tls: { ca: mtls.ca } }).fetch(ref('$secret://vault/vault-main/certs/example/key')));
      assert.equal(without.code, 'TLSGATE_E_SECRET_PROVIDER_DOWN');
      const p = provider({ address: mtls.address, tls: { ca: mtls.ca, cert: client.cert, key: client.key } });
      assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/example/key')), leaf.key);
    } finally {
      await mtls.close();
    }
  });

  it('from config: token as $env://, role_id/secret_id as $file:// are resolved at creation', async () => {
    const { provider: cfg, issues } = validateProviderConfig(
      { id: 'vault-main', type: 'vault', address: vault.address, mount: 'secret', auth: { token: '$env://VAULT_TOKEN' }, tls: { ca: vault.ca }, refresh_interval: '30s' },
      'secret_providers[0]',
    );
    assert.deepEqual(issues, []);
    assert.equal(cfg!.refresh_interval, 30_000);
    const p = (await createProvider(cfg!, { baseDir: __dirname, env: { VAULT_TOKEN: rootToken + '\n' } })) as VaultProvider;
    providers.push(p);
    assert.equal(await p.fetch(ref('$secret://vault/vault-main/certs/example/key')), leaf.key);

    const dir = await mkdtemp(join(tmpdir(), 'tlsgate-approle-'));
    try {
      const roleId = randomBytes(8).toString('hex');
      const secretId = randomBytes(16).toString('hex');
      vault.addAppRole(roleId, secretId);
      await writeFile(join(dir, 'role_id'), roleId + '\n');
      await writeFile(join(dir, 'secret_id'), secretId + '\n', { mode: 0o600 });
      await writeFile(join(dir, 'vault-ca.pem'), vault.ca);
      const approle = validateProviderConfig(
        { id: 'vault-main', type: 'vault', address: vault.address, auth: { role_id: '$file://role_id', secret_id: '$file://secret_id' }, tls: { ca: '$file://vault-ca.pem' } },
        'secret_providers[0]',
      );
      assert.deepEqual(approle.issues, []);
      const q = (await createProvider(approle.provider!, { baseDir: dir, env: {} })) as VaultProvider;
      providers.push(q);
      assert.equal(await q.fetch(ref('$secret://vault/vault-main/certs/example/cert')), leaf.cert);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
