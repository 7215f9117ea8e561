// One table of error codes. Codes survive IPC and logs; classes do not, so the
// code is the contract. Every code here is documented in README.md (a test checks).

export const ErrorCodes = {
  TLSGATE_E_CONFIG_PARSE: 'the config file is not valid YAML',
  TLSGATE_E_CONFIG_READ: 'the config file cannot be read',
  TLSGATE_E_CONFIG_INVALID: 'the config does not match the schema',
  TLSGATE_E_REF_UNKNOWN: 'an id refers to an object that does not exist',
  TLSGATE_E_DUPLICATE_ID: 'two objects of one kind share an id',
  TLSGATE_E_SNI_INVALID: 'an SNI is not a valid host name or wildcard pattern',
  TLSGATE_E_SNI_CONFLICT: 'two SSL objects claim the same SNI',
  TLSGATE_E_SNI_NOT_COVERED: "an SNI of a server SSL object is not covered by the certificate's SANs",
  TLSGATE_E_CERT_PARSE: 'a certificate is not valid PEM / X.509',
  TLSGATE_E_KEY_PARSE: 'a private key is not valid PEM',
  TLSGATE_E_CERT_KEY_MISMATCH: 'the private key does not match the certificate',
  TLSGATE_E_CERT_CHAIN_ORDER: 'a certificate in the chain is not issued by the next one',
  TLSGATE_E_CERT_EXPIRED: 'the certificate is past its not-after date',
  TLSGATE_E_CERT_NOT_YET_VALID: 'the certificate is before its not-before date',
  TLSGATE_E_CERT_EXPIRING: 'warning: the certificate expires within warn_days',
  TLSGATE_E_CERT_EKU: 'the Extended Key Usage does not allow the SSL object type',
  TLSGATE_E_CERT_NO_SAN: 'a server certificate has no DNS Subject Alternative Name (the CN is not used)',
  TLSGATE_E_KEY_WEAK: 'an RSA key is shorter than 2048 bits',
  TLSGATE_E_WILDCARD_PUBLIC_SUFFIX: 'a wildcard SNI or SAN spans a public suffix (*.com, *.co.uk)',
  TLSGATE_E_MTLS_LOSS:
    'warning: a name loses client certificate verification (its mTLS SSL object is disabled or removed)',
  TLSGATE_E_DUAL_CERT_SNI: 'warning: a uws listener presents one pair of a dual RSA + ECDSA object (the ECDSA one)',
  TLSGATE_E_CA_PARSE: 'a CA bundle holds no valid certificate',
  TLSGATE_E_SSL_DIR: 'an ssl_dirs directory or one of its files cannot be read (missing, not a regular file, too big)',
  TLSGATE_E_KEY_MISSING: 'a certificate file of ssl_dirs has no private key inside it or beside it',
  TLSGATE_E_SECRET_REF: 'a secret reference is malformed',
  TLSGATE_E_SECRET_UNRESOLVED: 'a secret reference cannot be resolved',
  TLSGATE_E_SECRET_PROVIDER: 'a secret reference names a provider that is not configured',
  TLSGATE_E_SECRET_DEFAULT:
    'a short secret reference has no default provider of its type, or two providers of one type are default',
  TLSGATE_E_SECRET_PROVIDER_DOWN: 'the secret provider cannot be reached, timed out or answered 5xx/429',
  TLSGATE_E_SECRET_DENIED: 'the secret provider refused access to a secret (HTTP 401/403)',
  TLSGATE_E_SECRET_AUTH: 'tlsgate cannot authenticate to the secret provider (login, renewal or credentials)',
  TLSGATE_E_SECRET_FORMAT:
    'the secret exists but the value is not usable (field missing, not a string, not JSON, not UTF-8)',
  TLSGATE_E_ENGINE_UNSUPPORTED: 'the listener engine cannot enforce what the config asks',
  TLSGATE_E_ENGINE_LOAD: 'the listener engine cannot be loaded on this Node.js',
  TLSGATE_E_LISTEN: 'a listener cannot bind its address',
  TLSGATE_E_WORKER_ACK_TIMEOUT: 'a worker did not acknowledge a snapshot in time',
  TLSGATE_E_SNAPSHOT_APPLY:
    'a worker could not apply a snapshot; it keeps serving the previous one and the reload is refused',
  TLSGATE_E_WORKER_EXIT:
    'a worker exited while applying a snapshot, or crashed soon after; the previous snapshot is restored',
  TLSGATE_E_NEEDS_RESTART:
    'the reload changes a setting that takes effect only at a restart; nothing of it was applied',
  TLSGATE_E_METHOD_NOT_ALLOWED: 'the admin endpoint exists but not for this method (405, with Allow)',
  TLSGATE_E_ADMIN_UNAUTHORIZED: 'admin API request without a valid X-API-KEY',
  TLSGATE_E_ADMIN_FORBIDDEN: "the admin API key's role does not allow this method on this path (403)",
  TLSGATE_E_ADMIN_QUERY: 'an admin API query parameter is unknown or malformed (400)',
  TLSGATE_E_STORE_COLLECTION: 'the file lists ssls, upstreams, routes or secret_providers while config_store is set',
  TLSGATE_E_STORE_UNAVAILABLE: 'the config store (etcd) cannot be reached, refused TLS or authentication',
  TLSGATE_E_STORE_OBJECT: 'an object in the config store is invalid; it keeps its last good version',
  TLSGATE_E_STORE_READ_ONLY: 'an Admin API write without config_store: the file is the source of truth (409)',
  TLSGATE_E_STORE_CONFLICT: 'the object changed since the revision the write was based on (If-Match; 412)',
  TLSGATE_E_STORE_REFERENCED: 'the object cannot be deleted while other objects reference it (409)',
  TLSGATE_E_STORE_NOT_FOUND: 'no such object in the config store (404)',
  TLSGATE_E_SECRET_LOCAL: '$secret://local/<id>: the built-in secret store has no such secret, or is not configured',
  TLSGATE_E_SECRET_DECRYPT:
    'a built-in secret cannot be decrypted: its KEK id is unknown here, the key is wrong, or the value was tampered',
  TLSGATE_E_SECRET_KEK: 'config_store.etcd.secrets: a key-encryption key is missing, unreadable or not 32 bytes',
  TLSGATE_E_INTERNAL: 'an unexpected failure inside the gateway (500)',
  TLSGATE_E_NO_ROUTE: 'no route matches the request (404)',
  TLSGATE_E_MISDIRECTED: 'the request authority needs a connection verified for its mTLS SSL object (421)',
  TLSGATE_E_CLIENT_CERT_REQUIRED: 'no verified client certificate, on a path skip_mtls_paths does not exempt (400)',
  TLSGATE_E_ROUTE_METHOD: 'the route does not allow the request method; TRACE only where a route lists it (405)',
  TLSGATE_E_BODY_TOO_LARGE: 'the request body is larger than max_body_size (413)',
  TLSGATE_E_UPSTREAM_CONNECT: 'the upstream refused or failed the connection (502)',
  TLSGATE_E_UPSTREAM_TLS: 'TLS to the upstream failed (502)',
  TLSGATE_E_UPSTREAM_RESET: 'the upstream reset the connection (502)',
  TLSGATE_E_UPSTREAM_TIMEOUT: 'the upstream did not connect or answer in time (504)',
  TLSGATE_E_UPSTREAM_PROTOCOL: 'the upstream sent an invalid HTTP response (502)',
  TLSGATE_E_UPSTREAM_UNKNOWN: 'the route names an upstream this worker does not know (502)',
  TLSGATE_E_BAD_REQUEST: 'the request cannot be forwarded to the upstream as sent (400)',
  TLSGATE_E_HEADERS_TOO_LARGE: 'the request has more headers, or more header bytes, than the listener allows (431)',
  TLSGATE_E_URI_TOO_LONG: 'the request line is longer than the listener allows (414)',
  TLSGATE_E_REQUEST_TIMEOUT: 'the request headers did not arrive within the request-header timeout (408)',
  TLSGATE_E_IMPORT_INPUT: 'import: the input cannot be read, is too large, or is not an APISIX config',
  TLSGATE_E_IMPORT_OBJECT:
    'import: an APISIX object cannot be translated (its id, PEM, key or reference); nothing written',
  TLSGATE_E_IMPORT_EXISTS: 'import: an output file exists (pass --force) or cannot be written',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export class TlsgateError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ErrorCodes[code], options);
    this.name = 'TlsgateError';
    this.code = code;
  }
}

/** One problem found in a config, with the path of the offending field. */
export interface ConfigIssue {
  path: string;
  code: ErrorCode;
  message: string;
  severity: 'error' | 'warning';
}

export function formatIssue(i: ConfigIssue): string {
  return `${i.path}: ${i.message} [${i.code}]`;
}

/** Every problem of a refused config at once, not the first one. */
export class ConfigError extends TlsgateError {
  readonly issues: ConfigIssue[];
  constructor(issues: ConfigIssue[]) {
    const errors = issues.filter((i) => i.severity === 'error');
    super(
      errors[0]?.code === 'TLSGATE_E_CONFIG_PARSE' || errors[0]?.code === 'TLSGATE_E_CONFIG_READ'
        ? errors[0].code
        : 'TLSGATE_E_CONFIG_INVALID',
      `config refused, ${errors.length} problem(s):\n` + errors.map((i) => '  ' + formatIssue(i)).join('\n'),
    );
    this.name = 'ConfigError';
    this.issues = issues;
  }
}

export class SecretError extends TlsgateError {
  readonly reference: string;
  constructor(code: ErrorCode, reference: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'SecretError';
    this.reference = reference;
  }
}

export class ListenError extends TlsgateError {
  constructor(listener: string, address: string, cause: unknown) {
    super(
      'TLSGATE_E_LISTEN',
      `listeners.${listener}: cannot listen on ${address}: ${(cause as Error).message ?? cause}`,
      { cause },
    );
    this.name = 'ListenError';
  }
}

export class UpstreamError extends TlsgateError {
  readonly status: number;
  constructor(code: ErrorCode, status: number, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'UpstreamError';
    this.status = status;
  }
}
