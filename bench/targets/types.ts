import type { Alg, BaseFixtures, CertPair, SniSet } from '../lib/fixtures';

export type Protocol = 'TLSv1.3' | 'TLSv1.2';

/** What every target is asked to serve: the same certificate, responses and upstream. */
export interface ServerSpec {
  workers: number;
  alg: Alg;
  protocol: Protocol;
  /** Session tickets on (resumption run) or off (full handshakes). */
  tickets: boolean;
  upstreamPort: number;
  fixtures: BaseFixtures;
  /** Extra certificates loaded beside bench.test (scale and rotation scenarios). */
  sniSet?: SniSet;
  /** `taskset -c` list for the server, or undefined for no pinning. */
  cpus?: string;
  /** A fresh temp dir for this server's config, pid and log files. */
  workDir: string;
  /** Extra environment for a gateway's processes (cert-rotation: the bench's GC hook). */
  env?: NodeJS.ProcessEnv;
}

export interface GatewayStatus {
  version: number;
  workers: Array<{ pid: number; version: number }>;
}

/** Control of a tlsgate-shaped gateway (tlsgate itself or the stand-in): admin API + config dir. */
export interface GatewayControl {
  configFile: string;
  configDir: string;
  status(): Promise<GatewayStatus>;
  /** Point the bench.test SSL object at a new certificate and rewrite the config file. */
  rotate(pair: CertPair): void;
  /** Spawn → every worker serving version ≥ 1 and the TLS port open. */
  readyMs: number;
  /** `compile_ms` from the first log line that carries it (pino JSON on stdout), if any. */
  compileMs: number | null;
  /** Worker pids from the last status. */
  workerPids(): number[];
}

export interface RunningServer {
  target: string;
  /** Root of the process tree whose CPU is counted (master + workers). */
  pid: number;
  port: number;
  gateway?: GatewayControl;
  /** A peer's own reload command (`nginx -s reload`): resolves when the command returns. */
  reload?(): Promise<void>;
  stop(): Promise<void>;
}

export interface Target {
  name: string;
  kind: 'peer' | 'gateway';
  /** Why this target cannot run here, or null. */
  absent(): string | null;
  /** Whether a spec is supported (e.g. the stand-in has no separate ticket knob): a reason, or null. */
  unsupported?(spec: ServerSpec): string | null;
  start(spec: ServerSpec): Promise<RunningServer>;
}
