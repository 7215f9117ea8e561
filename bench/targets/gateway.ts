// Any gateway with tlsgate's contract (config file, admin /v1/status, hot reload):
// tlsgate itself and the node:https stand-in share this driver.
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CertPair } from '../lib/fixtures';
import { BENCH_SNI } from '../lib/fixtures';
import { freePort, startProcess, waitForPort } from '../lib/spawn';
import type { GatewayCommand } from './tlsgate';
import type { GatewayStatus, RunningServer, ServerSpec, Target } from './types';

const API_KEY = 'bench-admin-key';

export type Engine = 'node' | 'uws';

export interface GatewayConfigInput {
  engine: Engine;
  workers: number;
  adminPort: number;
  port: number;
  upstreamPort: number;
  protocol: string;
  /** Relative to the config dir (the rotation writes new files there). */
  benchCert: string;
  benchKey: string;
  spec: ServerSpec;
}

/** tlsgate's config format (DESIGN.md "Config"); one flow mapping per SSL object keeps 100k entries fast to write and parse. */
export function gatewayConfig(c: GatewayConfigInput): string {
  const q = JSON.stringify; // a JSON string is a valid YAML flow scalar
  const lines = [
    `workers: ${c.workers}`,
    'log: { level: info }',
    `admin: { listen: 127.0.0.1:${c.adminPort}, api_keys: [${q(API_KEY)}] }`,
    // Full-handshake runs turn tickets off, as on the peers (wrk resumes a session when it can).
    `listeners: [{ name: public, listen: 127.0.0.1:${c.port}, engine: ${c.engine}${c.engine === 'node' && !c.spec.tickets ? ', session_tickets: false' : ''} }]`,
    'ssls:',
    // uws has no per-context protocol bounds (its listener serves 1.2 and 1.3; tlsgate refuses a narrower ssl_protocols there).
    `  - { id: bench, type: server, snis: [${q(BENCH_SNI)}, "localhost"], cert: ${q('$file://' + c.benchCert)}, key: ${q('$file://' + c.benchKey)}${c.engine === 'uws' ? '' : `, ssl_protocols: [${c.protocol}]`} }`,
  ];
  const set = c.spec.sniSet;
  if (set) {
    const key = q('$file://' + set.keyFile);
    for (let i = 0; i < set.count; i++) {
      lines.push(`  - { id: s${i}, type: server, snis: [${q(set.sni(i))}], cert: ${q('$file://' + set.certFile(i))}, key: ${key} }`);
    }
  }
  lines.push(
    `upstreams: [{ id: up, scheme: http, nodes: [{ host: 127.0.0.1, port: ${c.upstreamPort}, weight: 1 }] }]`,
    'routes:',
    '  - { id: proxied, paths: ["/proxy"], upstream: up }',
    '  - { id: direct, paths: ["/"], respond: { status: 200, body: "ok" } }',
    '',
  );
  return lines.join('\n');
}

export async function getStatus(adminPort: number): Promise<GatewayStatus> {
  const res = await fetch(`http://127.0.0.1:${adminPort}/v1/status`, { headers: { 'X-API-KEY': API_KEY }, signal: AbortSignal.timeout(5000) });
  if (res.status !== 200) throw new Error(`GET /v1/status: ${res.status}`);
  return (await res.json()) as GatewayStatus;
}

/** Every expected worker serves `atLeast` or newer, and all serve the primary's current version. */
export function allAcked(s: GatewayStatus, workers: number, atLeast: number): boolean {
  return s.version >= atLeast && s.workers.length >= workers && s.workers.every((w) => w.version === s.version);
}

export function gatewayTarget(
  name: string,
  command: (configFile: string, spec: ServerSpec) => GatewayCommand | string,
  engine: Engine = 'node',
  precondition: () => string | null = () => null,
): Target {
  return {
    name,
    kind: 'gateway',
    absent() {
      const c = command('/nonexistent.yaml', {} as ServerSpec);
      return typeof c === 'string' ? c : precondition();
    },
    async start(spec: ServerSpec): Promise<RunningServer> {
      if (engine === 'uws' && spec.protocol !== 'TLSv1.3') throw new Error(`uws cannot be limited to ${spec.protocol} (no per-context protocol bounds); skipped`);
      const [port, adminPort] = [await freePort(), await freePort()];
      const pair = spec.fixtures[spec.alg];
      const configDir = spec.workDir;
      const configFile = join(configDir, 'gateway.yaml');
      copyFileSync(pair.certFile, join(configDir, 'bench.crt'));
      copyFileSync(pair.keyFile, join(configDir, 'bench.key'));
      const render = (cert: string): string =>
        gatewayConfig({ engine, workers: spec.workers, adminPort, port, upstreamPort: spec.upstreamPort, protocol: spec.protocol, benchCert: cert, benchKey: 'bench.key', spec });
      writeFileSync(configFile, render('bench.crt'));

      const cmd = command(configFile, spec);
      if (typeof cmd === 'string') throw new Error(cmd);
      let compileMs: number | null = null;
      const t0 = performance.now();
      const proc = startProcess(name, cmd.cmd, cmd.args, {
        cpus: spec.cpus,
        env: spec.env ? { ...(cmd.env ?? process.env), ...spec.env } : cmd.env,
        cwd: configDir,
        onLine(line) {
          if (compileMs !== null || !line.includes('compile_ms')) return;
          try {
            const v = (JSON.parse(line) as { compile_ms?: unknown }).compile_ms;
            if (typeof v === 'number') compileMs = v;
          } catch {
            /* not JSON (uws prints debug lines to stdout) */
          }
        },
      });
      let exitCode: number | string | undefined;
      void proc.exited.then((c) => (exitCode = c));
      const fail = async (msg: string): Promise<never> => {
        await proc.stop();
        throw new Error(`${name}: ${msg}\n${proc.output().slice(-4000)}`);
      };
      const readyTimeout = spec.sniSet ? 900_000 : 30_000; // 100k certificates: minutes, not seconds
      await waitForPort(adminPort, proc, readyTimeout).catch((e: Error) => fail(e.message));
      let last: GatewayStatus | undefined;
      const deadline = Date.now() + readyTimeout;
      for (;;) {
        if (exitCode !== undefined) await fail(`exited (${exitCode}) before ready`);
        last = await getStatus(adminPort).catch(() => undefined);
        if (last && allAcked(last, spec.workers, 1)) break;
        if (Date.now() > deadline) await fail(`workers not ready in ${readyTimeout} ms: ${JSON.stringify(last)}`);
        await sleep(10);
      }
      await waitForPort(port, proc, readyTimeout).catch((e: Error) => fail(e.message));
      const readyMs = performance.now() - t0;
      let pids = last.workers.map((w) => w.pid);
      return {
        target: name,
        pid: proc.pid,
        port,
        stop: () => proc.stop(10_000),
        gateway: {
          configFile,
          configDir,
          readyMs,
          get compileMs() {
            return compileMs;
          },
          async status() {
            const s = await getStatus(adminPort);
            pids = s.workers.map((w) => w.pid);
            return s;
          },
          rotate(p: CertPair) {
            const file = `rot-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.crt`;
            writeFileSync(join(configDir, file), p.cert);
            writeFileSync(configFile, render(file));
          },
          workerPids: () => pids,
        },
      };
    },
  };
}
