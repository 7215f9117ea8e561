import { execFileSync, spawnSync } from 'node:child_process';
import { accessSync, constants, readFileSync } from 'node:fs';
import { cpus, release, totalmem } from 'node:os';
import { delimiter, join } from 'node:path';

/** Absolute path of an executable on PATH (plus the sbin dirs nginx/haproxy live in), or undefined. */
export function which(bin: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const p = join(dir, bin);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** First line of `bin args…` (stdout or stderr: nginx -v prints to stderr). */
function versionLine(bin: string, args: string[], pattern: RegExp): string | null {
  const path = which(bin);
  if (!path) return null;
  const r = spawnSync(path, args, { encoding: 'utf8', timeout: 5000 });
  const text = `${r.stdout ?? ''}\n${r.stderr ?? ''}`;
  const m = pattern.exec(text);
  return m ? m[1]! : text.trim().split('\n')[0] ?? null;
}

export interface MachineInfo {
  cores: number;
  cpuModel: string;
  memoryGiB: number;
  kernel: string;
  node: string;
  openssl: string;
  opensslCli: string | null;
  nginx: string | null;
  haproxy: string | null;
  wrk: string | null;
  h2load: string | null;
  autocannon: string | null;
  clkTck: number;
}

export function machineInfo(clkTck: number): MachineInfo {
  let autocannon: string | null = null;
  try {
    autocannon = (JSON.parse(readFileSync(require.resolve('autocannon/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    /* absent */
  }
  let opensslCli: string | null = null;
  try {
    opensslCli = execFileSync('openssl', ['version'], { encoding: 'utf8' }).trim();
  } catch {
    /* absent */
  }
  return {
    cores: cpus().length,
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    node: process.version,
    openssl: process.versions.openssl ?? 'unknown',
    opensslCli,
    nginx: versionLine('nginx', ['-v'], /nginx version: nginx\/(\S+)/),
    haproxy: versionLine('haproxy', ['-v'], /HA-?Proxy version (\S+)/),
    wrk: versionLine('wrk', ['-v'], /wrk (\S+)/),
    h2load: versionLine('h2load', ['--version'], /h2load nghttp2\/(\S+)/),
    autocannon,
    clkTck,
  };
}

function cpuJiffies(): { busy: number; total: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!; // "cpu  user nice system idle iowait irq softirq steal …"
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/**
 * Share of all cores busy over `ms`, sampled before the bench starts: other work on the
 * machine (another test suite, a build) inflates every figure, so the report says so.
 */
export async function machineBusyPercent(ms = 1000): Promise<number> {
  const a = cpuJiffies();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuJiffies();
  return b.total > a.total ? (100 * (b.busy - a.busy)) / (b.total - a.total) : 0;
}

export function loadAverage(): number[] {
  return readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).map(Number);
}
