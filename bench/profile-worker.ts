// A CPU profile of one tlsgate worker under keep-alive load: what the request path spends its
// time on (issue 16 keeps the top frames before and after each change).
//
//   node build/bench/profile-worker.js [--engine node|uws] [--path / | /proxy] [--seconds 6] [--out DIR] [--top 30]
//
// Starts tlsgate with --cpu-prof (cluster workers inherit the flag), one worker pinned to CPU 0,
// the bench's upstream and autocannon -c 32 on CPU 1, then stops it (the profiles are written
// at exit) and prints the worker's top frames by self time. Idle and module loading are left
// out; sample counts, not the samples' wall-clock deltas, weigh the frames: on shared cores a
// worker descheduled in the middle of a function would otherwise charge that function for it.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCH_SNI, baseFixtures } from './lib/fixtures';
import { runAutocannon } from './lib/load';
import { cpuMicros } from './lib/proc';
import { gatewayTarget, type Engine } from './targets/gateway';
import { tlsgateCommand } from './targets/tlsgate';
import { startUpstream } from './targets/upstream';

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
}

/** Self samples per frame, as percentages of the busy samples. */
export function topFrames(p: Profile, n: number): Array<[string, number]> {
  const hits = new Map<number, number>();
  for (const id of p.samples) hits.set(id, (hits.get(id) ?? 0) + 1);
  const self = new Map<string, number>();
  let busy = 0;
  for (const node of p.nodes) {
    const h = hits.get(node.id) ?? 0;
    const f = node.callFrame;
    if (h === 0 || f.functionName === '(idle)' || /loader|realm/.test(f.url) || f.functionName === 'wrapSafe') continue;
    busy += h;
    const file = f.url.replace(/^.*\/(dist|node_modules)\//, '');
    const k = `${f.functionName || '(anonymous)'} ${file}${f.url ? `:${f.lineNumber + 1}` : ''}`;
    self.set(k, (self.get(k) ?? 0) + h);
  }
  return [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([k, h]) => [k, (100 * h) / busy]);
}

async function main(): Promise<void> {
  const engine = arg('engine', 'node') as Engine;
  const path = arg('path', '/proxy');
  const seconds = Number(arg('seconds', '6'));
  const out = arg('out', mkdtempSync(join(tmpdir(), 'tlsgate-profile-')));
  mkdirSync(out, { recursive: true });
  const target = gatewayTarget(`tlsgate/${engine}`, (file) => {
    const c = tlsgateCommand(file);
    return typeof c === 'string' ? c : { ...c, args: ['--cpu-prof', `--cpu-prof-dir=${out}`, ...c.args] };
  }, engine);
  const fixtures = baseFixtures();
  const upstream = await startUpstream('1');
  const workDir = mkdtempSync(join(tmpdir(), 'tlsgate-profile-run-'));
  const spec = { workers: 1, upstreamPort: upstream.port, fixtures, cpus: '0', workDir, alg: 'ecdsa', protocol: 'TLSv1.3', tickets: false } as const;
  const s = await target.start(spec);
  try {
    const o = { port: s.port, servername: BENCH_SNI, path, connections: 32, ca: fixtures.ca.certFile, cpus: '1' };
    await runAutocannon({ ...o, durationS: 1 });
    const c0 = cpuMicros(s.pid);
    const a = await runAutocannon({ ...o, durationS: seconds });
    const cpu = cpuMicros(s.pid) - c0;
    console.log(`# ${engine} ${path}: ${(cpu / a.requests).toFixed(1)} µs server CPU/request (profiling on), ${a.requests} requests, errors ${a.errors + a.non2xx}`);
  } finally {
    await s.stop();
    await upstream.stop();
  }
  // The worker's main-thread profile: the largest file of a process other than the primary
  // (the primary's pid is the lowest, and it writes one per thread).
  const files = readdirSync(out).filter((f) => f.endsWith('.cpuprofile'));
  const pid = (f: string): number => Number(f.split('.')[3]);
  const primary = Math.min(...files.map(pid));
  const worker = files.filter((f) => pid(f) !== primary).sort((x, y) => statSync(join(out, y)).size - statSync(join(out, x)).size)[0];
  if (worker === undefined) throw new Error(`no worker profile in ${out}`);
  console.log(`# ${join(out, worker)}\n# self samples, % of busy (idle and module loading left out)`);
  for (const [k, pct] of topFrames(JSON.parse(readFileSync(join(out, worker), 'utf8')) as Profile, Number(arg('top', '30')))) {
    console.log(`${pct.toFixed(1).padStart(5)}%  ${k}`);
  }
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
