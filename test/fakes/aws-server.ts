// A small AWS Secrets Manager over HTTPS, faithful to what GetSecretValue needs:
// JSON 1.1 protocol (POST /, X-Amz-Target: secretsmanager.GetSecretValue,
// Content-Type: application/x-amz-json-1.1), a SigV4 `Authorization` header that is
// checked for real against the registered access keys (so a client that signs with
// the wrong key or region fails as it would on AWS), AWS's error shape
// {"__type":"ResourceNotFoundException","message":…} with HTTP 400, SecretString and
// SecretBinary (base64 on the wire).
import { createHash, createHmac, randomUUID } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { serverTls, type ServerTls } from './tls';

export interface AwsRequestRecord {
  target: string;
  secretId: string | undefined;
  accessKeyId: string | undefined;
  status: number;
  errorType?: string;
}

interface StoredSecret {
  string?: string;
  binary?: Buffer;
  versionId: string;
  created: number;
}

export class FakeAws extends EventEmitter<{ request: [AwsRequestRecord] }> {
  readonly requests: AwsRequestRecord[] = [];
  readonly tls: ServerTls;
  readonly region: string;
  endpoint = '';
  mode: 'up' | 'down' | 'throttled' = 'up';
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly keys = new Map<string, string>();
  private readonly secrets = new Map<string, StoredSecret>();

  private constructor(region: string) {
    super();
    this.region = region;
    this.tls = serverTls();
    this.server = createServer({ cert: this.tls.cert, key: this.tls.key }, (req, res) => this.handle(req, res));
    this.server.on('connection', (s: Socket) => {
      if (this.mode === 'down') {
        s.destroy();
        return;
      }
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    this.server.on('tlsClientError', () => undefined);
  }

  static async start(o: { region?: string } = {}): Promise<FakeAws> {
    const a = new FakeAws(o.region ?? 'eu-west-1');
    await new Promise<void>((resolve) => a.server.listen(0, '127.0.0.1', resolve));
    a.endpoint = `https://127.0.0.1:${(a.server.address() as { port: number }).port}`;
    return a;
  }

  get ca(): string {
    return this.tls.ca;
  }

  addCredentials(accessKeyId: string, secretAccessKey: string): void {
    this.keys.set(accessKeyId, secretAccessKey);
  }

  putSecret(name: string, value: { string: string } | { binary: Buffer }): string {
    const versionId = randomUUID();
    this.secrets.set(name, { ...('string' in value ? { string: value.string } : { binary: Buffer.from(value.binary) }), versionId, created: Date.now() });
    return versionId;
  }

  deleteSecret(name: string): void {
    this.secrets.delete(name);
  }

  count(filter: (r: AwsRequestRecord) => boolean = () => true): number {
    return this.requests.filter(filter).length;
  }

  down(): void {
    this.mode = 'down';
    for (const s of this.sockets) s.destroy();
  }

  up(): void {
    this.mode = 'up';
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks);
      const target = String(req.headers['x-amz-target'] ?? '');
      let secretId: string | undefined;
      let accessKeyId: string | undefined;
      const send = (status: number, body: unknown, errorType?: string): void => {
        const record: AwsRequestRecord = { target, secretId, accessKeyId, status, ...(errorType ? { errorType } : {}) };
        this.requests.push(record);
        res.writeHead(status, {
          'content-type': 'application/x-amz-json-1.1',
          'x-amzn-requestid': randomUUID(),
          ...(errorType ? { 'x-amzn-errortype': errorType } : {}),
        });
        res.end(JSON.stringify(body));
        this.emit('request', record);
      };
      const fail = (status: number, type: string, message: string): void => send(status, { __type: type, message }, type);

      const authz = String(req.headers.authorization ?? '');
      const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request, ?SignedHeaders=([a-z0-9;-]+), ?Signature=([0-9a-f]{64})$/.exec(authz);
      if (!authz.startsWith('AWS4-HMAC-SHA256 Credential=') || !m) return fail(400, 'MissingAuthenticationTokenException', 'Missing Authentication Token');
      const [, akid, date, region, service, signedHeaders, signature] = m as unknown as [string, string, string, string, string, string, string];
      accessKeyId = akid;
      const secret = this.keys.get(akid);
      if (secret === undefined) return fail(400, 'UnrecognizedClientException', 'The security token included in the request is invalid.');
      if (service !== 'secretsmanager' || region !== this.region) {
        return fail(400, 'InvalidSignatureException', `Credential should be scoped to a valid region and service.`);
      }
      if (!this.signatureMatches(req, raw, { date, region, service, signedHeaders, signature, secret })) {
        return fail(400, 'InvalidSignatureException', 'The request signature we calculated does not match the signature you provided.');
      }
      if (this.mode === 'throttled') return fail(400, 'ThrottlingException', 'Rate exceeded');
      if (req.method !== 'POST' || req.url !== '/') return fail(404, 'UnknownOperationException', '');
      if (String(req.headers['content-type'] ?? '').split(';')[0] !== 'application/x-amz-json-1.1') {
        return fail(400, 'SerializationException', 'Unsupported content type');
      }
      if (target !== 'secretsmanager.GetSecretValue') return fail(400, 'UnknownOperationException', '');
      let input: { SecretId?: unknown; VersionStage?: unknown };
      try {
        input = JSON.parse(raw.toString('utf8')) as typeof input;
      } catch {
        return fail(400, 'SerializationException', 'Start of structure or map found where not expected.');
      }
      if (typeof input.SecretId !== 'string') return fail(400, 'ValidationException', "1 validation error detected: Value null at 'secretId' failed to satisfy constraint: Member must not be null");
      secretId = input.SecretId;
      const name = secretId.startsWith('arn:') ? secretId.split(':secret:')[1] : secretId;
      const s = name === undefined ? undefined : this.secrets.get(name);
      if (!s || (input.VersionStage !== undefined && input.VersionStage !== 'AWSCURRENT')) {
        return fail(400, 'ResourceNotFoundException', "Secrets Manager can't find the specified secret.");
      }
      send(200, {
        ARN: `arn:aws:secretsmanager:${this.region}:123456789012:secret:${name}-AbCdEf`,
        Name: name,
        VersionId: s.versionId,
        ...(s.string !== undefined ? { SecretString: s.string } : { SecretBinary: s.binary!.toString('base64') }),
        VersionStages: ['AWSCURRENT'],
        CreatedDate: s.created / 1000,
      });
    });
  }

  /** SigV4 as AWS computes it: canonical request → string to sign → HMAC chain. */
  private signatureMatches(
    req: IncomingMessage,
    body: Buffer,
    a: { date: string; region: string; service: string; signedHeaders: string; signature: string; secret: string },
  ): boolean {
    const amzDate = String(req.headers['x-amz-date'] ?? '');
    if (!amzDate.startsWith(a.date)) return false;
    const names = a.signedHeaders.split(';');
    if (!names.includes('host')) return false;
    const canonicalHeaders = names.map((n) => `${n}:${String(req.headers[n] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
    const url = new URL(req.url ?? '/', 'https://x');
    const payloadHash = String(req.headers['x-amz-content-sha256'] ?? '') || createHash('sha256').update(body).digest('hex');
    const canonical = [req.method, url.pathname, url.search.slice(1), canonicalHeaders, a.signedHeaders, payloadHash].join('\n');
    const scope = `${a.date}/${a.region}/${a.service}/aws4_request`;
    const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonical).digest('hex')].join('\n');
    const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();
    const kSigning = hmac(hmac(hmac(hmac('AWS4' + a.secret, a.date), a.region), a.service), 'aws4_request');
    return createHmac('sha256', kSigning).update(toSign).digest('hex') === a.signature;
  }
}
