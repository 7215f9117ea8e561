// `secret_providers[]` as an operator writes it: defaults filled in, every mistake
// reported at once with the path of the field, credentials kept out of messages.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseDuration } from '../src/config/duration';
import { ErrorCodes } from '../src/errors';
import { publicProviderConfig, validateProviderConfig, type VaultProviderConfig } from '../src/secrets/providers';

describe('parseDuration', () => {
  it('reads ms, s, m, h, d, compounds and decimals; a bare number is seconds', () => {
    const cases: Array<[string | number, number | null]> = [
      ['500ms', 500],
      ['60s', 60_000],
      ['5m', 300_000],
      ['1h', 3_600_000],
      ['1d', 86_400_000],
      ['1m30s', 90_000],
      ['1.5s', 1500],
      [' 2s ', 2000],
      ['0s', 0],
      ['60', 60_000],
      [60, 60_000],
      [0.25, 250],
      ['', null],
      ['s', null],
      ['5 s', null],
      ['-1s', null],
      ['5x', null],
      ['1s2', null],
      [-1, null],
      [Number.NaN, null],
    ];
    for (const [input, ms] of cases) assert.equal(parseDuration(input), ms, JSON.stringify(input));
  });
});

describe('validateProviderConfig', () => {
  it('fills vault defaults and normalises durations to milliseconds', () => {
    const { provider, issues } = validateProviderConfig(
      { id: 'vault-main', type: 'vault', address: 'https://vault.internal:8200/', auth: { token: '$env://VAULT_TOKEN' }, timeout: { connect: '2s' } },
      'secret_providers[0]',
    );
    assert.deepEqual(issues, []);
    assert.deepEqual(provider, {
      id: 'vault-main',
      default: false,
      type: 'vault',
      address: 'https://vault.internal:8200',
      kv_version: 2,
      mount: 'secret',
      auth: { token: '$env://VAULT_TOKEN' },
      refresh_interval: 60_000,
      timeout: { connect: 2000, read: 10_000 },
    });
  });

  it('accepts AppRole with a custom mount, a namespace and TLS settings', () => {
    const { provider, issues } = validateProviderConfig(
      {
        id: 'v',
        type: 'vault',
        address: 'https://10.0.0.5:8200',
        kv_version: 1,
        mount: 'kv/edge/',
        namespace: 'admin/edge',
        auth: { role_id: '$file://vault/role_id', secret_id: '$env://VAULT_SECRET_ID', mount: 'approle-edge' },
        tls: { ca: '$file://vault-ca.pem', cert: '$file://c.pem', key: '$file://c.key', server_name: 'vault.internal' },
        refresh_interval: '5m',
      },
      'secret_providers[2]',
    );
    assert.deepEqual(issues, []);
    const v = provider as VaultProviderConfig;
    assert.equal(v.mount, 'kv/edge');
    assert.equal(v.namespace, 'admin/edge');
    assert.deepEqual(v.auth, { role_id: '$file://vault/role_id', secret_id: '$env://VAULT_SECRET_ID', mount: 'approle-edge' });
    assert.equal(v.refresh_interval, 300_000);
  });

  it('reports every vault mistake at once, each with its path', () => {
    const { provider, issues } = validateProviderConfig(
      {
        id: 'vault main',
        type: 'vault',
        address: 'ftp://vault',
        kv_version: 3,
        mount: '../etc',
        auth: { token: 'x', role_id: 'y' },
        tls: { cert: '$file://c.pem', bogus: 1 },
        refresh_interval: '100ms',
        refresh_intervall: '5s',
      },
      'secret_providers[0]',
    );
    assert.equal(provider, undefined);
    const byPath = new Map(issues.filter((i) => i.severity === 'error').map((i) => [i.path, i]));
    for (const path of ['id', 'address', 'kv_version', 'mount', 'auth', 'tls.bogus', 'refresh_interval', 'refresh_intervall', 'tls.key']) {
      assert.ok(byPath.has(`secret_providers[0].${path}`), `no issue for ${path}: ${issues.map((i) => i.path).join(', ')}`);
    }
    assert.equal(byPath.get('secret_providers[0].address')!.message, 'must be an http(s) URL without credentials, query or fragment');
    for (const i of issues) assert.ok(i.code in ErrorCodes);
  });

  it('provider credentials may be $env:// or $file:// but not $secret://; a literal token warns without echoing it', () => {
    const token = 'hvs.literal-token-value-123';
    const { provider, issues } = validateProviderConfig(
      { id: 'v', type: 'vault', address: 'https://vault:8200', auth: { token } },
      'secret_providers[0]',
    );
    assert.ok(provider);
    assert.deepEqual(issues.map((i) => [i.path, i.severity]), [['secret_providers[0].auth.token', 'warning']]);
    assert.ok(!JSON.stringify(issues).includes(token));
    assert.deepEqual((publicProviderConfig(provider!) as VaultProviderConfig).auth, { token: '<redacted>' });

    const viaSecret = validateProviderConfig(
      { id: 'v', type: 'vault', address: 'https://vault:8200', auth: { token: '$secret://vault/other/a/b' } },
      'secret_providers[0]',
    );
    assert.equal(viaSecret.provider, undefined);
    assert.deepEqual(viaSecret.issues.map((i) => [i.path, i.code]), [['secret_providers[0].auth.token', 'TLSGATE_E_SECRET_REF']]);

    const malformed = validateProviderConfig({ id: 'v', type: 'vault', address: 'https://vault:8200', auth: { token: '$env://9BAD' } }, 'secret_providers[0]');
    assert.equal(malformed.issues[0]!.code, 'TLSGATE_E_SECRET_REF');
  });

  it('warns that a plain http:// Vault address sends the token in clear', () => {
    const { provider, issues } = validateProviderConfig({ id: 'v', type: 'vault', address: 'http://127.0.0.1:8200', auth: { token: '$env://T' } }, 'p');
    assert.ok(provider);
    assert.deepEqual(issues.map((i) => [i.path, i.severity]), [['p.address', 'warning']]);
  });

  it('aws: defaults, explicit keys in pairs, region format, unknown type', () => {
    const ok = validateProviderConfig({ id: 'aws-main', type: 'aws', region: 'eu-west-1' }, 'secret_providers[1]');
    assert.deepEqual(ok.issues, []);
    assert.deepEqual(ok.provider, { id: 'aws-main', default: false, type: 'aws', region: 'eu-west-1', max_attempts: 3, refresh_interval: 60_000, timeout: { connect: 5000, read: 10_000 } });

    const bad = validateProviderConfig(
      { id: 'a', type: 'aws', region: 'Europe', endpoint: 'not a url', access_key_id: '$env://AWS_KEY', session_token: '$env://S', max_attempts: 0, kv_version: 2 },
      'secret_providers[1]',
    );
    assert.equal(bad.provider, undefined);
    const paths = bad.issues.map((i) => i.path.replace('secret_providers[1].', ''));
    for (const p of ['region', 'endpoint', 'secret_access_key', 'session_token', 'max_attempts', 'kv_version']) assert.ok(paths.includes(p), `no issue for ${p}: ${paths.join(', ')}`);

    const unknown = validateProviderConfig({ id: 'g', type: 'gcp' }, 'secret_providers[2]');
    assert.deepEqual(unknown.issues.map((i) => [i.path, i.message]), [['secret_providers[2].type', 'must be one of vault | aws, got "gcp"']]);
    assert.deepEqual(validateProviderConfig('vault', 'secret_providers[3]').issues.map((i) => i.message), [
      'must be a mapping {id, type, …}, got "vault"',
    ]);
    const typo = validateProviderConfig({ id: 'v', type: 'vaul' }, 'secret_providers[4]');
    assert.match(typo.issues[0]!.message, /did you mean "vault"\?/);
  });
});
