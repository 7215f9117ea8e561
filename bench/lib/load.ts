// Load generators, each a child process on the client core with a hard time limit:
// wrk (C, full handshakes with Connection: close), autocannon (keep-alive),
// hs-client (resumed handshakes, handshake latency probe).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HsClientOptions, HsClientResult } from './hs-client';
import { which } from './machine';
import { AUTOCANNON_BIN, FIXTURES_DIR, ROOT } from './paths';
import { runToEnd } from './spawn';

export interface WrkResult {
  requests: number;
  durationS: number;
  rps: number;
  /** From `--latency`: ms, request written → response read (the handshake is before it). */
  latencyMs: { p50: number; p75: number; p90: number; p99: number };
  socketErrors: { connect: number; read: number; write: number; timeout: number };
  non2xx: number;
  /** Handshakes wrk completed, counted by the shim (bench/lib/full-handshake.c); null without it. */
  tls: { full: number; resumed: number } | null;
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60000 };

export function parseWrk(out: string): WrkResult {
  const lat = (p: string): number => {
    const m = new RegExp(`^\\s*${p}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(out);
    return m ? Number(m[1]) * UNIT_MS[m[2]!]! : NaN;
  };
  const req = /(\d+) requests in ([\d.]+)(us|ms|s|m)/.exec(out);
  const se = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const requests = req ? Number(req[1]) : 0;
  const durationS = req ? (Number(req[2]) * UNIT_MS[req[3]!]!) / 1000 : NaN;
  return {
    requests,
    durationS,
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? NaN),
    latencyMs: { p50: lat('50'), p75: lat('75'), p90: lat('90'), p99: lat('99') },
    socketErrors: se
      ? { connect: Number(se[1]), read: Number(se[2]), write: Number(se[3]), timeout: Number(se[4]) }
      : { connect: 0, read: 0, write: 0, timeout: 0 },
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    tls: null,
  };
}

const SHIM_SRC = join(ROOT, 'bench', 'lib', 'full-handshake.c');
let shim: { file: string } | { error: string } | undefined;
/**
 * The wrk shim (LD_PRELOAD): counts full and resumed handshakes and, when asked, drops the
 * session wrk would offer on reconnect. Compiled once per source version into the fixtures
 * dir; without a C compiler the counts are null and the reason is reported.
 */
export function wrkShim(): { file: string } | { error: string } {
  if (shim) return shim;
  const cc = which('cc') ?? which('gcc');
  if (!existsSync(SHIM_SRC)) return (shim = { error: `${SHIM_SRC} is missing` });
  if (!cc) {
    const error = 'no C compiler (cc) to build the wrk full-handshake shim: resumed handshakes not counted';
    return (shim = { error });
  }
  const src = readFileSync(SHIM_SRC);
  const file = join(FIXTURES_DIR, `wrk-shim-${createHash('sha256').update(src).digest('hex').slice(0, 12)}.so`);
  if (!existsSync(file)) {
    mkdirSync(FIXTURES_DIR, { recursive: true });
    try {
      execFileSync(cc, ['-shared', '-fPIC', '-O2', '-o', file, SHIM_SRC, '-ldl'], { stdio: 'pipe' });
    } catch (err) {
      return (shim = { error: `building the wrk shim failed: ${(err as Error).message.split('\n')[0]}` });
    }
  }
  return (shim = { file });
}

let resolveScript: string | undefined;
/** wrk takes SNI and Host from the URL: keep https://bench.test:PORT/ and connect to 127.0.0.1 instead of resolving. */
function wrkResolveScript(): string {
  if (!resolveScript) {
    resolveScript = join(mkdtempSync(join(tmpdir(), 'tlsgate-bench-wrk-')), 'resolve.lua');
    writeFileSync(resolveScript, 'local resolve = wrk.resolve\nwrk.resolve = function(host, service) resolve("127.0.0.1", service) end\n');
  }
  return resolveScript;
}

export interface WrkOptions {
  port: number;
  servername: string;
  path: string;
  connections: number;
  durationS: number;
  close: boolean;
  cpus?: string;
  threads?: number;
  /** Count handshakes with the shim; `forceFull` also makes every reconnect a full handshake. */
  forceFull?: boolean;
  /** wrk's per-request timeout (its default: 2 s), counted in socketErrors.timeout. */
  timeoutS?: number;
}

export async function runWrk(o: WrkOptions): Promise<WrkResult> {
  const bin = which('wrk');
  if (!bin) throw new Error('wrk is not installed (apt-get install wrk)');
  const args = ['-t', String(o.threads ?? 1), '-c', String(o.connections), '-d', `${o.durationS}s`, '--latency', '-s', wrkResolveScript()];
  if (o.close) args.push('-H', 'Connection: close');
  if (o.timeoutS) args.push('--timeout', `${o.timeoutS}s`);
  args.push(`https://${o.servername}:${o.port}${o.path}`);
  const sh = wrkShim();
  let env: NodeJS.ProcessEnv | undefined;
  let statsDir: string | undefined;
  if ('file' in sh) {
    statsDir = mkdtempSync(join(tmpdir(), 'tlsgate-bench-wrk-stats-'));
    env = {
      ...process.env,
      LD_PRELOAD: sh.file,
      TLSGATE_BENCH_FORCE_FULL: o.forceFull === false ? '0' : '1',
      TLSGATE_BENCH_TLS_STATS: join(statsDir, 'stats'),
    };
  }
  try {
    const r = await runToEnd('wrk', bin, args, { cpus: o.cpus, env, timeoutMs: (o.durationS + 30) * 1000 });
    if (r.code !== 0) throw new Error(`wrk exited ${r.code}: ${r.stderr}${r.stdout}`);
    const w = parseWrk(r.stdout);
    const stats = statsDir && join(statsDir, 'stats');
    if (stats && existsSync(stats)) w.tls = parseShimStats(readFileSync(stats, 'utf8'));
    return w;
  } finally {
    if (statsDir) rmSync(statsDir, { recursive: true, force: true });
  }
}

export function parseShimStats(text: string): { full: number; resumed: number } | null {
  const full = /^full (\d+)$/m.exec(text);
  const resumed = /^resumed (\d+)$/m.exec(text);
  return full && resumed ? { full: Number(full[1]), resumed: Number(resumed[1]) } : null;
}

export interface AutocannonResult {
  requests: number;
  durationS: number;
  rps: number;
  latencyMs: { p50: number; p99: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  resets: number;
}

export interface AutocannonOptions {
  port: number;
  servername: string;
  path: string;
  connections: number;
  /** Fixed count; durationS bounds it (autocannon ignores -d when -a is given, so the child is killed past it). */
  amount?: number;
  durationS: number;
  ca: string;
  cpus?: string;
}

export async function runAutocannon(o: AutocannonOptions): Promise<AutocannonResult> {
  const args = [AUTOCANNON_BIN, '-j', '-n', '-c', String(o.connections), '-s', o.servername, '-t', '10'];
  if (o.amount) args.push('-a', String(o.amount));
  else args.push('-d', String(o.durationS));
  args.push(`https://127.0.0.1:${o.port}${o.path}`);
  const r = await runToEnd('autocannon', process.execPath, args, {
    cpus: o.cpus,
    env: { ...process.env, NODE_EXTRA_CA_CERTS: o.ca },
    timeoutMs: (o.durationS + 30) * 1000,
  });
  const line = r.stdout.trim().split('\n').pop() ?? '';
  let j: {
    requests: { total: number; average: number };
    latency: { p50: number; p99: number };
    duration: number;
    start?: string;
    finish?: string;
    errors: number;
    timeouts: number;
    non2xx: number;
    resets?: number;
  };
  try {
    j = JSON.parse(line) as typeof j;
  } catch {
    throw new Error(`autocannon exited ${r.code} without a result: ${r.stderr.slice(-2000)}`);
  }
  // `duration` is rounded to whole seconds; start/finish are exact.
  const exact = j.start && j.finish ? (Date.parse(j.finish) - Date.parse(j.start)) / 1000 : NaN;
  const durationS = exact > 0 ? exact : j.duration;
  return {
    requests: j.requests.total,
    durationS,
    rps: j.requests.total / durationS,
    latencyMs: { p50: j.latency.p50, p99: j.latency.p99 },
    errors: j.errors,
    timeouts: j.timeouts,
    non2xx: j.non2xx,
    resets: j.resets ?? 0,
  };
}

export async function runHsClientProcess(o: HsClientOptions, cpus?: string): Promise<HsClientResult> {
  const r = await runToEnd('hs-client', process.execPath, [join(__dirname, 'hs-client.js'), JSON.stringify(o)], {
    cpus,
    timeoutMs: o.durationMs + 30_000,
  });
  if (r.code !== 0) throw new Error(`hs-client exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout.trim()) as HsClientResult;
}
