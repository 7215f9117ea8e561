// AWS Secrets Manager as a SecretProvider, through @aws-sdk/client-secrets-manager.
// `$secret://aws/<id>/<secret-id>` returns SecretString as is (a PEM), or SecretBinary
// decoded as UTF-8; `$secret://aws/<id>/<secret-id>/<field>` parses the secret as a JSON
// object and returns that field. Errors name the exception and HTTP status, never the
// message AWS sent (it is part of the body).
import { Agent as HttpsAgent } from 'node:https';
import type { GetSecretValueCommandOutput, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { SecretError, type ErrorCode } from '../errors';
import type { SecretRef } from './reference';
import type { SecretProvider } from './resolve';

export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

export interface AwsOptions {
  id: string;
  region: string;
  /** Overrides the regional endpoint (VPC endpoint, LocalStack, a test server). */
  endpoint?: string;
  /** Absent: the SDK's default chain (env, shared files, SSO, web identity, ECS, IMDS). */
  credentials?: AwsCredentials;
  /** PEM CA bundle for the endpoint's certificate (replaces the system store). */
  ca?: string;
  /** Staging label read, default AWSCURRENT. */
  versionStage?: string;
  connectTimeoutMs?: number;
  readTimeoutMs?: number;
  /** SDK attempts per fetch, retries included. */
  maxAttempts?: number;
}

export const AWS_DEFAULTS = {
  connectTimeoutMs: 5_000, // 5 seconds
  readTimeoutMs: 10_000, // 10 seconds
  maxAttempts: 3,
} as const;

type Sdk = typeof import('@aws-sdk/client-secrets-manager');
let sdk: Sdk | undefined;
/**
 * The SDK is required when the first aws provider is built, not at import: loading it
 * costs 30-110 ms (measured on Node 20) and prints its Node-version warning, which a
 * gateway with no aws provider should not pay or show.
 */
function loadSdk(): Sdk {
  return (sdk ??= require('@aws-sdk/client-secrets-manager') as Sdk);
}

type AwsRef = Extract<SecretRef, { kind: 'aws' }>;
type Secret = Pick<GetSecretValueCommandOutput, 'SecretString' | 'SecretBinary'>;

const AUTH_ERRORS = new Set([
  'CredentialsProviderError',
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'IncompleteSignatureException',
  'MissingAuthenticationTokenException',
  'InvalidClientTokenId',
  'ExpiredTokenException',
  'SignatureDoesNotMatch',
]);
const DOWN_ERRORS = new Set([
  'InternalServiceError',
  'ThrottlingException',
  'ServiceUnavailable',
  'TimeoutError',
  'RequestTimeout',
]);

export class AwsProvider implements SecretProvider {
  readonly id: string;
  readonly type = 'aws' as const;
  private readonly client: SecretsManagerClient;
  private readonly sdk: Sdk = loadSdk();
  private readonly agent: HttpsAgent;
  private readonly versionStage: string | undefined;
  private readonly inflight = new Map<string, Promise<Secret>>();

  constructor(o: AwsOptions) {
    this.id = o.id;
    this.versionStage = o.versionStage;
    this.agent = new HttpsAgent({ keepAlive: true, ...(o.ca ? { ca: o.ca } : {}) });
    this.client = new this.sdk.SecretsManagerClient({
      region: o.region,
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      ...(o.credentials ? { credentials: { ...o.credentials } } : {}),
      maxAttempts: o.maxAttempts ?? AWS_DEFAULTS.maxAttempts,
      requestHandler: {
        connectionTimeout: o.connectTimeoutMs ?? AWS_DEFAULTS.connectTimeoutMs,
        requestTimeout: o.readTimeoutMs ?? AWS_DEFAULTS.readTimeoutMs,
        throwOnRequestTimeout: true,
        httpsAgent: this.agent,
      },
    });
  }

  async fetch(ref: Extract<SecretRef, { kind: 'vault' | 'aws' }>): Promise<string> {
    if (ref.kind !== 'aws') {
      throw new SecretError(
        'TLSGATE_E_SECRET_PROVIDER',
        ref.text,
        `${ref.text}: provider "${this.id}" is an aws provider`,
      );
    }
    let pending = this.inflight.get(ref.secretId);
    if (!pending) {
      pending = this.read(ref).finally(() => this.inflight.delete(ref.secretId));
      this.inflight.set(ref.secretId, pending);
    }
    const secret = await pending.catch((err: unknown) => {
      throw err instanceof SecretError && err.reference !== ref.text
        ? new SecretError(err.code, ref.text, err.message.replace(err.reference, ref.text))
        : err;
    });
    return extract(ref, secret);
  }

  private async read(ref: AwsRef): Promise<Secret> {
    try {
      const stage = this.versionStage ? { VersionStage: this.versionStage } : {};
      const out = await this.client.send(new this.sdk.GetSecretValueCommand({ SecretId: ref.secretId, ...stage }));
      return { SecretString: out.SecretString, SecretBinary: out.SecretBinary };
    } catch (err) {
      const e = err as { name?: string; code?: string; $metadata?: { httpStatusCode?: number } };
      const status = e.$metadata?.httpStatusCode;
      const name = e.name && e.name !== 'Error' ? e.name : (e.code ?? 'network error');
      const answer = status ? `answered HTTP ${status} ${name}` : `failed (${name})`;
      // No `cause`: an SDK exception carries the service's message, which is body text.
      throw new SecretError(
        codeFor(name, status),
        ref.text,
        `${ref.text}: aws provider "${this.id}" ${answer} for GetSecretValue`,
      );
    }
  }

  /** In-flight fetches fail; idempotent. */
  async close(): Promise<void> {
    this.client.destroy();
    this.agent.destroy();
  }
}

function codeFor(name: string, status: number | undefined): ErrorCode {
  if (AUTH_ERRORS.has(name)) return 'TLSGATE_E_SECRET_AUTH';
  if (name === 'AccessDeniedException' || status === 401 || status === 403) return 'TLSGATE_E_SECRET_DENIED';
  if (DOWN_ERRORS.has(name) || status === undefined || status === 429 || status >= 500)
    return 'TLSGATE_E_SECRET_PROVIDER_DOWN';
  return 'TLSGATE_E_SECRET_UNRESOLVED';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function extract(ref: AwsRef, secret: Secret): string {
  let text = secret.SecretString;
  if (text === undefined && secret.SecretBinary !== undefined) {
    try {
      text = utf8.decode(secret.SecretBinary);
    } catch {
      throw new SecretError(
        'TLSGATE_E_SECRET_FORMAT',
        ref.text,
        `${ref.text}: SecretBinary is not UTF-8 text (store PEM, not DER)`,
      );
    }
  }
  if (text === undefined) {
    throw new SecretError(
      'TLSGATE_E_SECRET_FORMAT',
      ref.text,
      `${ref.text}: the secret has neither SecretString nor SecretBinary`,
    );
  }
  if (ref.field === undefined) return text;
  let obj: unknown;
  try {
    obj = JSON.parse(text);
  } catch {
    throw new SecretError(
      'TLSGATE_E_SECRET_FORMAT',
      ref.text,
      `${ref.text}: the secret is not JSON, so it has no field "${ref.field}"`,
    );
  }
  const value =
    obj && typeof obj === 'object' && !Array.isArray(obj) ? (obj as Record<string, unknown>)[ref.field] : undefined;
  if (typeof value === 'string') return value;
  throw new SecretError(
    'TLSGATE_E_SECRET_FORMAT',
    ref.text,
    value === undefined || value === null
      ? `${ref.text}: the secret's JSON has no field "${ref.field}"`
      : `${ref.text}: field "${ref.field}" is not a string`,
  );
}
