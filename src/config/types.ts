// Config types, derived from the one declaration (declaration.ts): a field added there
// is typed here without a second edit.
import type { Infer } from './decl';
import type { CONFIG, LIMITS, TIMEOUTS } from './declaration';

export interface HostPort {
  host: string;
  port: number;
}

type Declared = Infer<typeof CONFIG>;

/** Request limits in bytes / counts; null body size = unlimited. */
export type LimitsConfig = Infer<typeof LIMITS>;
/** Timeouts in ms. */
export type TimeoutsConfig = Infer<typeof TIMEOUTS>;
export type AdminConfig = NonNullable<Declared['admin']>;

/** A listener with the top-level `limits` / `timeouts` / `max_connections` under its own overrides. */
export type ListenerConfig = Omit<Declared['listeners'][number], 'limits' | 'timeouts' | 'max_connections'> & {
  limits: LimitsConfig;
  timeouts: TimeoutsConfig;
  max_connections: number;
};

export type SslConfig = Declared['ssls'][number];
export type SslDirConfig = Declared['ssl_dirs'][number];
export type UpstreamConfig = Declared['upstreams'][number];
export type RouteConfig = Declared['routes'][number];

export type GatewayConfig = Omit<Declared, 'listeners'> & {
  /** Absolute path of the config file; `$file://` is relative to its directory. */
  file: string;
  baseDir: string;
  listeners: ListenerConfig[];
  /** Source shown for a value of an SSL object expanded from `ssl_dirs` (`ssls[12].key` → file path). */
  sslDirSources?: Record<string, string>;
};
