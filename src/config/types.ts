import type { EngineName, TlsProtocol } from '../snapshot/types';
import type { ProviderConfig } from '../secrets/providers';

export interface HostPort {
  host: string;
  port: number;
}

export interface AdminConfig {
  listen: HostPort;
  /** Literals or references; resolved by the primary. */
  api_keys: string[];
  tls?: { cert: string; key: string };
}

/** Request limits in bytes / counts; null body size = unlimited. */
export interface LimitsConfig {
  max_header_count: number;
  max_header_bytes: number;
  max_request_line: number;
  max_body_size: number | null;
}

/** Timeouts in ms. */
export interface TimeoutsConfig {
  handshake: number;
  request_header: number;
  keepalive: number;
}

export interface ListenerConfig {
  name: string;
  listen: HostPort;
  engine: EngineName;
  default_ssl?: string;
  session_tickets: boolean;
  /** Top-level `limits`, overridden field by field by the listener's own. */
  limits: LimitsConfig;
  timeouts: TimeoutsConfig;
  max_connections: number;
}

export interface SslConfig {
  id: string;
  type: 'server' | 'client';
  snis: string[];
  cert: string;
  key: string;
  certs: string[];
  keys: string[];
  /** crl: PEM CRLs (literal or reference), one per CA of the client chain. */
  client?: { ca: string; depth: number; crl?: string };
  ssl_protocols: TlsProtocol[];
  /** OpenSSL cipher list (TLS ≤ 1.2 names; TLS 1.3 suites by their TLS_ names). */
  ssl_ciphers: string;
  status: 'enabled' | 'disabled';
}

export interface UpstreamConfig {
  id: string;
  scheme: 'http' | 'https';
  nodes: Array<{ host: string; port: number; weight: number }>;
  host?: string;
  tls?: { verify: boolean; ca?: string; client_ssl?: string; sni?: string };
  timeout: { connect: number; read: number };
  client_identity_headers?: { subject: string; fingerprint: string; verify: string };
}

export interface RouteConfig {
  id: string;
  hosts?: string[];
  paths: string[];
  upstream?: string;
  respond?: { status: number; body: string; headers: Record<string, string> };
  /** Upper-case methods this route answers; absent = any method but TRACE. */
  methods?: string[];
  /** Overrides the listener's max_body_size for this route (bytes; null = unlimited). */
  max_body_size?: number | null;
}

export interface GatewayConfig {
  /** Absolute path of the config file; `$file://` is relative to its directory. */
  file: string;
  baseDir: string;
  workers: number;
  log: { level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal'; file?: string };
  warn_days: number;
  /** SIGTERM: stop accepting, finish in-flight requests, at most this long (ms). */
  drain_timeout: number;
  /** Largest `$file://` value, bytes; only regular files are read. */
  file_max_size: number;
  /** Background re-read of `$file://` values (ms; 0: never), besides the file watcher. */
  file_refresh_interval: number;
  admin?: AdminConfig;
  audit?: { path: string };
  listeners: ListenerConfig[];
  /** Validated by src/secrets (provider-specific fields). */
  secret_providers: ProviderConfig[];
  ssls: SslConfig[];
  upstreams: UpstreamConfig[];
  routes: RouteConfig[];
}
