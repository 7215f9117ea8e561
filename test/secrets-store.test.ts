// Operator scenario: the primary resolves every reference of its config once, then keeps
// them fresh. A key rotated at the source shows up within one refresh interval; a secret
// manager that goes away leaves the last good value in service, marked stale, with one
// warning, until it comes back.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCA, issue } from '../src/certs/pki';
import { validateProviderConfig, type ProviderConfig } from '../src/secrets/providers';
import { SecretStore, type RefreshReport, type SecretChange, type StaleEntry } from '../src/secrets/store';
import { FakeAws } from './fakes/aws-server';
import { FakeVault } from './fakes/vault-server';
import { MemoryLogger, nextEvent } from './fakes/wait';

const REFRESH_MS = 150;

describe('secret store: resolve, refresh, keep last good', () => {
  let vault: FakeVault;
  let aws: FakeAws;
  let dir: string;
  const vaultToken = `hvs.${randomBytes(18).toString('base64url')}`;
  const awsKeyId = 'AKIATLSGATESTORE0001';
  const awsSecret = randomBytes(30).toString('base64');
  const adminKey = randomBytes(16).toString('hex');
  const ca = createCA('store test CA');
  const gen1 = issue({ cn: 'example.com', dns: ['example.com'], issuer: ca });
  const gen2 = issue({ cn: 'example.com', dns: ['example.com'], issuer: ca });
  const apiLeaf = issue({ cn: 'api.example.com', dns: ['api.example.com'], issuer: ca });
  /** Everything that must never show up in a log line, event, stale() or error. */
  const secrets = [vaultToken, awsSecret, adminKey, gen1.key, gen2.key, apiLeaf.key];
  const stores: SecretStore[] = [];

  const REFS = {
    cert: '$secret://vault/vault-main/certs/example/cert',
    key: '$secret://vault/vault-main/certs/example/key',
    otherKey: '$secret://vault/vault-main/certs/other/key',
    awsKey: '$secret://aws/aws-main/tls.api/key',
    file: '$file://client-ca.pem',
    env: '$env://TLSGATE_ADMIN_KEY',
  };

  function providers(over: Partial<Record<'vault' | 'aws', Partial<ProviderConfig>>> = {}): ProviderConfig[] {
    const v = validateProviderConfig(
      { id: 'vault-main', type: 'vault', address: vault.address, kv_version: 2, mount: 'secret', auth: { token: '$env://VAULT_TOKEN' }, tls: { ca: vault.ca } },
      'secret_providers[0]',
    );
    const a = validateProviderConfig(
      { id: 'aws-main', type: 'aws', region: aws.region, endpoint: aws.endpoint, access_key_id: awsKeyId, secret_access_key: '$env://AWS_SECRET', tls: { ca: aws.ca }, max_attempts: 1 },
      'secret_providers[1]',
    );
    assert.deepEqual(v.issues, []);
    assert.deepEqual(a.issues, []);
    // Below the 1 s minimum of the config schema, to keep the test short.
    return [
      { ...v.provider!, refresh_interval: REFRESH_MS, ...over.vault } as ProviderConfig,
      { ...a.provider!, refresh_interval: REFRESH_MS, ...over.aws } as ProviderConfig,
    ];
  }

  function store(logger = new MemoryLogger(), onChange?: (c: SecretChange) => void): SecretStore {
    const s = new SecretStore({
      baseDir: dir,
      env: { VAULT_TOKEN: vaultToken, AWS_SECRET: awsSecret, TLSGATE_ADMIN_KEY: adminKey },
      logger,
      fileRefreshInterval: REFRESH_MS,
      ...(onChange ? { onChange } : {}),
    });
    stores.push(s);
    return s;
  }

  async function round(s: SecretStore, provider: string): Promise<RefreshReport> {
    for (;;) {
      const [report] = await nextEvent<[RefreshReport]>(s, 'refreshed');
      if (report.provider === provider) return report;
    }
  }

  function assertNoSecrets(text: string, where: string): void {
    for (const s of secrets) assert.ok(!text.includes(s), `${where} holds a secret value (${s.length} chars)`);
  }

  before(async () => {
    vault = await FakeVault.start();
    vault.enableKv('secret', 2);
    vault.addToken(vaultToken);
    vault.put('secret', 'certs/example', { cert: gen1.cert, key: gen1.key });
    vault.put('secret', 'certs/other', { key: apiLeaf.key });
    aws = await FakeAws.start();
    aws.addCredentials(awsKeyId, awsSecret);
    aws.putSecret('tls.api', { string: JSON.stringify({ cert: apiLeaf.cert, key: apiLeaf.key }) });
    dir = await mkdtemp(join(tmpdir(), 'tlsgate-store-'));
    await writeFile(join(dir, 'client-ca.pem'), ca.cert);
  });

  after(async () => {
    await Promise.all(stores.map((s) => s.close()));
    await vault.close();
    await aws.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('resolves $env, $file, vault and aws references at start', async () => {
    const s = store();
    const r = await s.apply({ providers: providers(), references: Object.values(REFS) });
    assert.ok(r.ok);
    assert.equal(r.values.get(REFS.cert), gen1.cert);
    assert.equal(r.values.get(REFS.key), gen1.key);
    assert.equal(r.values.get(REFS.otherKey), apiLeaf.key);
    assert.equal(r.values.get(REFS.awsKey), apiLeaf.key);
    assert.equal(r.values.get(REFS.file), ca.cert);
    assert.equal(r.values.get(REFS.env), adminKey);
    assert.deepEqual(s.stale(), []);
    await s.close();
  });

  it('an unresolvable reference refuses the whole plan; the running values and providers stay', async () => {
    const s = store();
    assert.ok((await s.apply({ providers: providers(), references: [REFS.cert, REFS.key] })).ok);
    const running = s.provider('vault-main');
    const missing = '$secret://vault/vault-main/certs/nowhere/key';
    const r = await s.apply({ providers: providers({ vault: { refresh_interval: 999_000 } }), references: [REFS.cert, REFS.key, missing, REFS.awsKey] });
    assert.ok(!r.ok);
    assert.deepEqual(r.errors.map((e) => [e.reference, e.code]), [[missing, 'TLSGATE_E_SECRET_UNRESOLVED']]);
    assert.match(r.errors[0]!.message, /HTTP 404/);
    assert.equal(s.provider('vault-main'), running);
    assert.equal(s.get(REFS.key), gen1.key);
    assert.equal(s.get(REFS.awsKey), undefined);

    const unknown = await s.apply({ providers: [], references: ['$secret://vault/nope/a/b'] });
    assert.ok(!unknown.ok);
    assert.equal(unknown.errors[0]!.code, 'TLSGATE_E_SECRET_PROVIDER');
    await s.close();
  });

  it('a key rotated at the source is picked up within one refresh and announced once per round', async () => {
    const changes: SecretChange[] = [];
    const s = store(new MemoryLogger(), (c) => changes.push(c));
    assert.ok((await s.apply({ providers: providers(), references: [REFS.cert, REFS.key, REFS.otherKey] })).ok);
    // Rotate right after a round, so no round is half-way through the two paths.
    await round(s, 'vault-main');
    vault.put('secret', 'certs/example', { cert: gen2.cert, key: gen2.key });
    // Within one refresh: the very next round reports the change (counted, not timed).
    const changed = nextEvent<[SecretChange]>(s, 'change');
    const next = await round(s, 'vault-main');
    assert.equal(next.changed, 2, 'the first round after the rotation picked it up');
    const [change] = await changed;
    assert.equal(change.provider, 'vault-main');
    assert.deepEqual([...change.references].sort(), [REFS.cert, REFS.key].sort());
    assert.deepEqual(changes, [change]);
    assert.equal(s.get(REFS.cert), gen2.cert);
    assert.equal(s.get(REFS.key), gen2.key);
    assertNoSecrets(JSON.stringify(change), 'change event');
    await s.close();
    vault.put('secret', 'certs/example', { cert: gen1.cert, key: gen1.key });
  });

  it('one timer per provider: a round reads each secret path once, however many references use it', async () => {
    const s = store();
    assert.ok((await s.apply({ providers: providers(), references: [REFS.cert, REFS.key, REFS.otherKey] })).ok);
    await round(s, 'vault-main');
    const n = vault.count();
    const report = await round(s, 'vault-main');
    assert.equal(report.references, 3);
    assert.equal(vault.count() - n, 2, 'two paths, two GETs');
    await s.close();
  });

  it('an aws secret changed at the source is picked up too', async () => {
    const s = store();
    assert.ok((await s.apply({ providers: providers(), references: [REFS.awsKey] })).ok);
    const changed = nextEvent<[SecretChange]>(s, 'change');
    aws.putSecret('tls.api', { string: JSON.stringify({ cert: gen2.cert, key: gen2.key }) });
    const [change] = await changed;
    assert.deepEqual(change, { provider: 'aws-main', references: [REFS.awsKey] });
    assert.equal(s.get(REFS.awsKey), gen2.key);
    await s.close();
    aws.putSecret('tls.api', { string: JSON.stringify({ cert: apiLeaf.cert, key: apiLeaf.key }) });
  });

  it('a $file reference is re-read on its own interval', async () => {
    const s = store();
    assert.ok((await s.apply({ providers: [], references: [REFS.file, REFS.env] })).ok);
    const changed = nextEvent<[SecretChange]>(s, 'change');
    const ca2 = createCA('store test CA 2');
    await writeFile(join(dir, 'client-ca.pem'), ca2.cert);
    const [change] = await changed;
    assert.deepEqual(change, { provider: '$file', references: [REFS.file] });
    assert.equal(s.get(REFS.file), ca2.cert);
    await s.close();
    await writeFile(join(dir, 'client-ca.pem'), ca.cert);
  });

  it('provider down at refresh: last good value served, stale listed, one warning per failure streak', async () => {
    const logger = new MemoryLogger();
    const s = store(logger);
    assert.ok((await s.apply({ providers: providers(), references: [REFS.cert, REFS.key, REFS.awsKey] })).ok);
    const t0 = Date.now();
    vault.down();
    try {
      const [started] = await nextEvent<[StaleEntry[]]>(s, 'stale');
      assert.deepEqual(started.map((e) => e.reference).sort(), [REFS.cert, REFS.key].sort());
      // Two more failing rounds: still one warning.
      await round(s, 'vault-main');
      await round(s, 'vault-main');
      assert.equal(s.get(REFS.cert), gen1.cert);
      assert.equal(s.get(REFS.key), gen1.key);
      const stale = s.stale();
      assert.deepEqual(stale.map((e) => e.reference).sort(), [REFS.cert, REFS.key].sort());
      for (const e of stale) {
        assert.equal(e.provider, 'vault-main');
        assert.equal(e.code, 'TLSGATE_E_SECRET_PROVIDER_DOWN');
        assert.ok(Date.parse(e.since) >= t0 - 5);
        assert.ok(e.error.startsWith(e.reference + ': '), e.error);
      }
      assert.equal(logger.warnings(), 1);
      const warning = logger.lines.find((l) => l.level === 'warn')!;
      assert.equal((warning.obj as { provider: string }).provider, 'vault-main');
      assert.equal((warning.obj as { stale: number }).stale, 2);
      assert.equal(s.get(REFS.awsKey), apiLeaf.key, 'other providers unaffected');
    } finally {
      vault.up();
    }
    const [recovered] = await nextEvent<[string[]]>(s, 'recovered');
    assert.deepEqual([...recovered].sort(), [REFS.cert, REFS.key].sort());
    assert.deepEqual(s.stale(), []);

    // A new streak warns again.
    vault.down();
    try {
      await nextEvent(s, 'stale');
      assert.equal(logger.warnings(), 2);
    } finally {
      vault.up();
    }
    await nextEvent(s, 'recovered');
    assertNoSecrets(logger.text(), 'log lines');
    await s.close();
  });

  it('a value deleted at the source keeps the last good one and is marked stale with its status', async () => {
    const logger = new MemoryLogger();
    const s = store(logger);
    vault.put('secret', 'certs/doomed', { key: apiLeaf.key });
    const doomed = '$secret://vault/vault-main/certs/doomed/key';
    assert.ok((await s.apply({ providers: providers(), references: [doomed] })).ok);
    vault.delete('secret', 'certs/doomed');
    const [started] = await nextEvent<[StaleEntry[]]>(s, 'stale');
    assert.equal(started[0]!.code, 'TLSGATE_E_SECRET_UNRESOLVED');
    assert.equal(s.get(doomed), apiLeaf.key);
    assertNoSecrets(JSON.stringify(s.stale()) + logger.text(), 'stale() and logs');
    await s.close();
  });

  it('re-applying keeps unchanged providers and their cached values; a changed provider is replaced', async () => {
    const s = store();
    const plan = { providers: providers({ vault: { refresh_interval: 3_600_000 }, aws: { refresh_interval: 3_600_000 } }), references: [REFS.cert, REFS.awsKey] };
    assert.ok((await s.apply(plan)).ok);
    const v1 = s.provider('vault-main');
    const [vaultReads, awsReads] = [vault.count(), aws.count()];
    assert.ok((await s.apply(plan)).ok);
    assert.deepEqual([vault.count(), aws.count()], [vaultReads, awsReads], 'nothing re-read');
    assert.equal(s.provider('vault-main'), v1);

    const changed = { ...plan, providers: providers({ vault: { refresh_interval: 1_800_000 }, aws: { refresh_interval: 3_600_000 } }) };
    assert.ok((await s.apply(changed)).ok);
    assert.notEqual(s.provider('vault-main'), v1);
    assert.deepEqual([vault.count() - vaultReads, aws.count() - awsReads], [1, 0], 'only the replaced provider re-reads');

    assert.ok((await s.apply({ providers: [], references: [] })).ok);
    assert.equal(s.provider('vault-main'), undefined);
    assert.equal(s.values().size, 0);
    await s.close();
    await s.close();
  });
});
