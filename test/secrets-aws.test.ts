// Operator scenario: keys live in AWS Secrets Manager; tlsgate reads them through the
// AWS SDK, signed with SigV4, from a local HTTPS stand-in that checks the signature.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { issue, createCA } from '../src/certs/pki';
import { SecretError } from '../src/errors';
import { AwsProvider, type AwsOptions } from '../src/secrets/aws';
import { createProvider, validateProviderConfig } from '../src/secrets/providers';
import { parseValue, type SecretRef } from '../src/secrets/reference';
import { Agent, request } from 'undici';
import { FakeAws } from './fakes/aws-server';

type ProviderRef = Extract<SecretRef, { kind: 'vault' | 'aws' }>;

function ref(text: string): ProviderRef {
  const p = parseValue(text);
  assert.ok(p.ok && p.ref && (p.ref.kind === 'aws' || p.ref.kind === 'vault'), text);
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

describe('aws secret provider against a SigV4-checking Secrets Manager', () => {
  let aws: FakeAws;
  const akid = 'AKIATLSGATETEST00001';
  const secretKey = randomBytes(30).toString('base64');
  const leaf = issue({ cn: 'api.example.com', dns: ['api.example.com'], issuer: createCA('aws test CA') });
  const providers: AwsProvider[] = [];

  function provider(o: Partial<AwsOptions> = {}): AwsProvider {
    const p = new AwsProvider({
      id: 'aws-main',
      region: aws.region,
      endpoint: aws.endpoint,
      ca: aws.ca,
      credentials: { accessKeyId: akid, secretAccessKey: secretKey },
      maxAttempts: 1,
      ...o,
    });
    providers.push(p);
    return p;
  }

  before(async () => {
    aws = await FakeAws.start({ region: 'eu-west-1' });
    aws.addCredentials(akid, secretKey);
    aws.putSecret('tls.api-key', { string: leaf.key });
    aws.putSecret('tls.api', { string: JSON.stringify({ cert: leaf.cert, key: leaf.key, serial: 7 }) });
    aws.putSecret('tls.api-bin', { binary: Buffer.from(leaf.cert, 'utf8') });
    aws.putSecret('tls.api-bin-json', { binary: Buffer.from(JSON.stringify({ key: leaf.key }), 'utf8') });
    aws.putSecret('tls.api-der', { binary: leaf.der });
  });

  after(async () => {
    await Promise.all(providers.map((p) => p.close()));
    await aws.close();
  });

  it('returns a SecretString as is (a PEM key)', async () => {
    assert.equal(await provider().fetch(ref('$secret://aws/aws-main/tls.api-key')), leaf.key);
    const last = aws.requests.at(-1)!;
    assert.equal(last.target, 'secretsmanager.GetSecretValue');
    assert.equal(last.accessKeyId, akid);
    assert.equal(last.status, 200);
  });

  it('takes a field of a JSON SecretString, and reads the secret once for two fields', async () => {
    const p = provider();
    const before = aws.count((r) => r.secretId === 'tls.api');
    const [cert, key] = await Promise.all([p.fetch(ref('$secret://aws/aws-main/tls.api/cert')), p.fetch(ref('$secret://aws/aws-main/tls.api/key'))]);
    assert.equal(cert, leaf.cert);
    assert.equal(key, leaf.key);
    assert.equal(aws.count((r) => r.secretId === 'tls.api') - before, 1);
  });

  it('decodes a SecretBinary (base64 on the wire) as UTF-8 PEM, with or without a JSON field', async () => {
    const p = provider();
    assert.equal(await p.fetch(ref('$secret://aws/aws-main/tls.api-bin')), leaf.cert);
    assert.equal(await p.fetch(ref('$secret://aws/aws-main/tls.api-bin-json/key')), leaf.key);
  });

  it('refuses a binary that is not UTF-8 text, a missing field and a non-string field', async () => {
    const p = provider();
    const der = await rejection(p.fetch(ref('$secret://aws/aws-main/tls.api-der')));
    assert.equal(der.code, 'TLSGATE_E_SECRET_FORMAT');
    const missing = await rejection(p.fetch(ref('$secret://aws/aws-main/tls.api/nope')));
    assert.equal(missing.code, 'TLSGATE_E_SECRET_FORMAT');
    assert.match(missing.message, /no field "nope"/);
    const notString = await rejection(p.fetch(ref('$secret://aws/aws-main/tls.api/serial')));
    assert.equal(notString.code, 'TLSGATE_E_SECRET_FORMAT');
    const notJson = await rejection(p.fetch(ref('$secret://aws/aws-main/tls.api-key/key')));
    assert.equal(notJson.code, 'TLSGATE_E_SECRET_FORMAT');
    for (const e of [der, missing, notString, notJson]) {
      assert.ok(!e.message.includes('PRIVATE KEY') && !e.message.includes('CERTIFICATE'), e.message);
    }
  });

  it('ResourceNotFoundException: names the reference, status and exception, not the message AWS sent', async () => {
    const text = '$secret://aws/aws-main/tls.missing';
    const e = await rejection(provider().fetch(ref(text)));
    assert.equal(e.code, 'TLSGATE_E_SECRET_UNRESOLVED');
    assert.equal(e.reference, text);
    assert.match(e.message, /^\$secret:\/\/aws\/aws-main\/tls\.missing: .*HTTP 400 ResourceNotFoundException/);
    assert.ok(!e.message.includes("can't find"), e.message);
    assert.equal(aws.requests.at(-1)!.errorType, 'ResourceNotFoundException');
  });

  it('a wrong secret key fails the signature check: auth error without the key', async () => {
    const wrong = randomBytes(30).toString('base64');
    const e = await rejection(provider({ credentials: { accessKeyId: akid, secretAccessKey: wrong } }).fetch(ref('$secret://aws/aws-main/tls.api-key')));
    assert.equal(e.code, 'TLSGATE_E_SECRET_AUTH');
    assert.match(e.message, /InvalidSignatureException/);
    assert.ok(!e.message.includes(wrong) && !e.message.includes(secretKey));
  });

  it('the fake rejects a request without a SigV4 Authorization header, as AWS does', async () => {
    const agent = new Agent({ connect: { ca: aws.ca } });
    const res = await request(aws.endpoint, {
      method: 'POST',
      headers: { 'x-amz-target': 'secretsmanager.GetSecretValue', 'content-type': 'application/x-amz-json-1.1' },
      body: JSON.stringify({ SecretId: 'tls.api-key' }),
      dispatcher: agent,
    });
    assert.equal(res.statusCode, 400);
    const body = (await res.body.json()) as { __type: string; message: string };
    await agent.close();
    assert.equal(body.__type, 'MissingAuthenticationTokenException');
  });

  it('uses the default credential chain when no keys are configured (AWS_* environment)', async () => {
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, key: process.env.AWS_SECRET_ACCESS_KEY };
    const chainKey = 'AKIATLSGATECHAIN0001';
    const chainSecret = randomBytes(30).toString('base64');
    aws.addCredentials(chainKey, chainSecret);
    process.env.AWS_ACCESS_KEY_ID = chainKey;
    process.env.AWS_SECRET_ACCESS_KEY = chainSecret;
    try {
      const p = new AwsProvider({ id: 'aws-main', region: aws.region, endpoint: aws.endpoint, ca: aws.ca, maxAttempts: 1 });
      providers.push(p);
      assert.equal(await p.fetch(ref('$secret://aws/aws-main/tls.api-key')), leaf.key);
      assert.equal(aws.requests.at(-1)!.accessKeyId, chainKey);
    } finally {
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      else process.env.AWS_ACCESS_KEY_ID = saved.id;
      if (saved.key === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
      else process.env.AWS_SECRET_ACCESS_KEY = saved.key;
    }
  });

  it('from config: keys given as $env:// references are resolved before the client is made', async () => {
    const { provider: cfg, issues } = validateProviderConfig(
      {
        id: 'aws-main',
        type: 'aws',
        region: 'eu-west-1',
        endpoint: aws.endpoint,
        access_key_id: '$env://TEST_AWS_KEY_ID',
        secret_access_key: '$env://TEST_AWS_SECRET',
        tls: { ca: aws.ca },
        max_attempts: 1,
      },
      'secret_providers[1]',
    );
    assert.deepEqual(issues, []);
    const p = (await createProvider(cfg!, { baseDir: __dirname, env: { TEST_AWS_KEY_ID: akid, TEST_AWS_SECRET: secretKey } })) as AwsProvider;
    providers.push(p);
    assert.equal(await p.fetch(ref('$secret://aws/aws-main/tls.api/key')), leaf.key);

    const unset = await rejection(createProvider(cfg!, { baseDir: __dirname, env: {} }));
    assert.equal(unset.code, 'TLSGATE_E_SECRET_UNRESOLVED');
    assert.match(unset.message, /secret_providers\[aws-main\]\.access_key_id: \$env:\/\/TEST_AWS_KEY_ID/);
  });

  it('an endpoint that is down is TLSGATE_E_SECRET_PROVIDER_DOWN', async () => {
    const p = provider();
    aws.down();
    try {
      const e = await rejection(p.fetch(ref('$secret://aws/aws-main/tls.api-key')));
      assert.equal(e.code, 'TLSGATE_E_SECRET_PROVIDER_DOWN');
      assert.match(e.message, /aws provider "aws-main" failed/);
    } finally {
      aws.up();
    }
    assert.equal(await p.fetch(ref('$secret://aws/aws-main/tls.api-key')), leaf.key);
  });
});
