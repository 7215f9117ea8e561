// CPU time and memory of a server and every process under it, read from /proc.
// CPU per unit of work (µs per handshake, per request) is the figure the bench
// compares: on a 2-core machine requests/s mostly measures the client.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let clkTck: number | undefined;
/** Clock ticks per second for utime/stime in /proc/<pid>/stat (`getconf CLK_TCK`, 100 on Linux). */
export function clockTicks(): number {
  if (clkTck === undefined) {
    const out = execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim();
    const n = Number(out);
    clkTck = Number.isFinite(n) && n > 0 ? n : 100;
  }
  return clkTck;
}

export interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  utime: number;
  stime: number;
  rssPages: number;
}

/** Parse /proc/<pid>/stat. comm may hold spaces and parentheses: split after the last ')'. */
export function parseStat(text: string): ProcStat {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const pid = Number(text.slice(0, open).trim());
  const comm = text.slice(open + 1, close);
  // Fields after comm start at field 3 (state); utime is field 14, stime 15, rss 24.
  const f = text.slice(close + 2).split(' ');
  return { pid, comm, ppid: Number(f[1]), utime: Number(f[11]), stime: Number(f[12]), rssPages: Number(f[21]) };
}

function readStat(pid: number): ProcStat | undefined {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined; // exited between readdir and read
  }
}

/** `pid` and all its descendants (nginx/haproxy workers, cluster workers), from one /proc scan. */
export function processTree(pid: number): ProcStat[] {
  const all: ProcStat[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) all.push(s);
  }
  const children = new Map<number, ProcStat[]>();
  for (const s of all) {
    const list = children.get(s.ppid);
    if (list) list.push(s);
    else children.set(s.ppid, [s]);
  }
  const root = all.find((s) => s.pid === pid);
  if (!root) return [];
  const out: ProcStat[] = [];
  const queue = [root];
  while (queue.length) {
    const s = queue.shift()!;
    out.push(s);
    queue.push(...(children.get(s.pid) ?? []));
  }
  return out;
}

/** utime+stime of the tree in microseconds. A child that exited is lost (it was not reaped into cutime): servers keep theirs. */
export function cpuMicros(pid: number): number {
  const ticks = processTree(pid).reduce((sum, s) => sum + s.utime + s.stime, 0);
  return (ticks * 1e6) / clockTicks();
}

/** Field 22 of /proc/<pid>/stat (start time in ticks since boot): with the pid, names one process for good. */
export function startTime(pid: number): number | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return undefined;
  }
}

/** Resident set size of one process in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export interface TreeRss {
  total: number;
  processes: Array<{ pid: number; comm: string; rss: number }>;
}

export function treeRss(pid: number): TreeRss {
  const processes = processTree(pid).map((s) => ({ pid: s.pid, comm: s.comm, rss: rssBytes(s.pid) }));
  return { total: processes.reduce((a, p) => a + p.rss, 0), processes };
}

/** CPU spent by the tree while `work` runs. */
export async function measureCpu<T>(pid: number, work: () => Promise<T>): Promise<{ result: T; cpuUs: number; wallMs: number }> {
  const c0 = cpuMicros(pid);
  const t0 = performance.now();
  const result = await work();
  const wallMs = performance.now() - t0;
  return { result, cpuUs: cpuMicros(pid) - c0, wallMs };
}
