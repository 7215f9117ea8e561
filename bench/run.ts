// npm run bench [-- --quick] [--workers N]
//   [--only handshake,keepalive,rotation,scale,streaming,h2,cert-rotation,etcd-convergence,route-match,
//    etcd-cold,etcd-outage] [--targets nginx,haproxy,node-https,tlsgate]
//   [--rotation-sizes 1000,10000] [--rotations N] [--rotation-budget S] [--respawns N] [--rotation-peer-max N] [--rotate-one]
//   [--rotation-load S] [--soak N] [--soak-heap]
import { execFileSync } from 'node:child_process';
import { cpus } from 'node:os';
import { baseFixtures } from './lib/fixtures';
import { loadAverage, machineBusyPercent, machineInfo, which } from './lib/machine';
import { RESULTS_DIR } from './lib/paths';
import { clockTicks } from './lib/proc';
import { markdownTable, writeResults, type RunResults } from './lib/report';
import type { Pinning } from './lib/spawn';
import { haproxyTarget } from './peers/haproxy';
import { nginxTarget } from './peers/nginx';
import { writeHtml } from './lib/html';
import { certRotation } from './scenarios/cert-rotation';
import type { Context, Knobs, Profile, Scenario } from './scenarios/context';
import { h2 } from './scenarios/h2';
import { handshake } from './scenarios/handshake';
import { keepalive } from './scenarios/keepalive';
import { rotation } from './scenarios/rotation';
import { routeMatch } from './scenarios/route-match';
import { scale } from './scenarios/scale';
import { streaming } from './scenarios/streaming';
import { etcdConvergence } from './scenarios/etcd-convergence';
import { etcdCold, etcdOutage } from './scenarios/etcd-scale';
import { gatewayTarget } from './targets/gateway';
import { standinCommand, tlsgateCommand } from './targets/tlsgate';
import type { Target } from './targets/types';
import { startUpstream } from './targets/upstream';

export const SCENARIOS: Scenario[] = [
  handshake, keepalive, rotation, scale, streaming, h2, certRotation, etcdConvergence, routeMatch, etcdCold, etcdOutage,
];

export function allTargets(): Target[] {
  return [
    nginxTarget,
    haproxyTarget,
    gatewayTarget('node-https', (file, spec) => standinCommand(file, { tickets: spec.tickets })),
    gatewayTarget('tlsgate/node', (file) => tlsgateCommand(file)),
    gatewayTarget('tlsgate/uws', (file) => tlsgateCommand(file), 'uws', () => {
      try {
        require.resolve('uWebSockets.js');
        return null;
      } catch {
        return 'uWebSockets.js is not installed (the uws engine issue)';
      }
    }),
  ];
}

export interface BenchOptions {
  profile: Profile;
  workers: number;
  only?: string[];
  targets?: string[];
  /** Pin this process to the client core (the CLI does; the test doesn't). */
  pinSelf?: boolean;
  /** Write bench/results/<timestamp>.json and the HTML report beside it. */
  write?: boolean;
  /** Or write them here (the test: a temp dir). */
  resultsDir?: string;
  knobs?: Knobs;
  log?: (msg: string) => void;
}

export interface BenchRun {
  results: RunResults;
  markdown: string;
  file?: string;
  html?: string;
}

export async function runBench(o: BenchOptions): Promise<BenchRun> {
  const log = o.log ?? ((m: string) => process.stderr.write(m + '\n'));
  const startedAt = new Date().toISOString();
  const unknown = (o.only ?? []).filter((n) => !SCENARIOS.some((s) => s.name === n));
  if (unknown.length) throw new Error(`--only: unknown scenario ${unknown.join(', ')} (one of ${SCENARIOS.map((s) => s.name).join(', ')})`);

  // One server process on core 0, every client (wrk, autocannon, probes, upstream) on core 1.
  // With more workers than one core the server takes every core and nothing is pinned.
  const cores = cpus().length;
  const pin: Pinning = o.workers === 1 && cores >= 2 && which('taskset') ? { server: '0', client: '1' } : {};
  if (o.pinSelf && pin.client) execFileSync('taskset', ['-pc', pin.client, String(process.pid)], { stdio: 'ignore' });

  const targets: Target[] = [];
  const absent: string[] = [];
  for (const t of allTargets()) {
    if (o.targets && !o.targets.includes(t.name) && !o.targets.includes(t.name.split('/')[0]!)) continue;
    const why = t.absent();
    if (why) absent.push(`${t.name}: ${why}`);
    else targets.push(t);
  }
  for (const a of absent) log(`skipping ${a}`);

  const busyBefore = await machineBusyPercent(1000);
  const loadBefore = loadAverage();
  if (busyBefore > 10) log(`warning: the machine is ${busyBefore.toFixed(0)}% busy before the bench starts (load ${loadBefore.join(' ')}): figures will be inflated`);
  const fixtures = baseFixtures();
  const upstream = await startUpstream(pin.client);
  const ctx: Context = {
    profile: o.profile,
    knobs: o.knobs ?? {},
    workers: o.workers,
    fixtures,
    upstreamPort: upstream.port,
    pin,
    targets,
    absent,
    log,
  };
  const results: RunResults = {
    startedAt,
    argv: process.argv.slice(2),
    options: {
      profile: o.profile,
      knobs: o.knobs,
      workers: o.workers,
      only: o.only,
      targets: targets.map((t) => t.name),
      pinning: pin,
      upstream: upstream.kind,
    },
    environment: { busyPercentBefore: busyBefore, loadAverageBefore: loadBefore },
    machine: machineInfo(clockTicks()),
    scenarios: [],
  };
  try {
    for (const s of SCENARIOS) {
      if (o.only?.length && !o.only.includes(s.name)) continue;
      log(`# ${s.name}`);
      const t0 = Date.now();
      const r = await s.run(ctx);
      for (const a of absent) r.skipped.push(a);
      results.scenarios.push(r);
      log(`# ${s.name} done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    }
  } finally {
    await upstream.stop();
  }
  results.finishedAt = new Date().toISOString();
  results.environment.loadAverageAfter = loadAverage();
  const m = results.machine;
  const header = [
    `## tlsgate bench — ${o.profile}, ${o.workers} worker(s), ${startedAt}`,
    '',
    `${m.cores} × ${m.cpuModel}, Linux ${m.kernel}, Node ${m.node} (OpenSSL ${m.openssl}), nginx ${m.nginx ?? '—'}, HAProxy ${m.haproxy ?? '—'}, wrk ${m.wrk ?? '—'}, autocannon ${m.autocannon ?? '—'}.`,
    busyBefore > 10
      ? `**Warning: the machine was ${busyBefore.toFixed(0)}% busy with other work before the run (load average ${loadBefore.join(' ')}); every figure is inflated.**`
      : `Machine ${busyBefore.toFixed(0)}% busy before the run (load average ${loadBefore.join(' ')}).`,
    pin.server ? `Server pinned to CPU ${pin.server}, clients and upstream (${upstream.kind}) to CPU ${pin.client}. Ratios are to nginx.` : `No CPU pinning. Ratios are to nginx.`,
  ].join('\n');
  const markdown = [header, ...results.scenarios.map(markdownTable)].join('\n\n') + '\n';
  const file = o.write === false ? undefined : writeResults(o.resultsDir ?? RESULTS_DIR, results);
  const html = file ? writeHtml(file, results, header) : undefined;
  return { results, markdown, file, html };
}

function parseArgs(argv: string[]): BenchOptions {
  const knobs: Knobs = {};
  const o: BenchOptions = { profile: 'full', workers: 1, pinSelf: true, knobs };
  const int = (v: string | undefined, flag: string, min: number): number => {
    const n = Number(v?.replace(/_/g, '').replace(/k$/i, '000'));
    if (!Number.isInteger(n) || n < min) throw new Error(`${flag} needs an integer ≥ ${min} (got ${v ?? 'nothing'})`);
    return n;
  };
  const list = (v: string | undefined, flag: string): string[] => {
    if (!v) throw new Error(`${flag} needs a value`);
    return v.split(',').map((s) => s.trim()).filter(Boolean);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') o.profile = 'quick';
    else if (a === '--tiny') o.profile = 'tiny';
    else if (a === '--workers') {
      const n = Number(argv[++i]);
      if (!Number.isInteger(n) || n < 1) throw new Error('--workers must be an integer greater than 0');
      o.workers = n;
    } else if (a === '--only') o.only = [...(o.only ?? []), ...list(argv[++i], '--only')];
    else if (a === '--targets') o.targets = [...(o.targets ?? []), ...list(argv[++i], '--targets')];
    else if (a === '--rotation-sizes') knobs.rotationSizes = list(argv[++i], a).map((v) => int(v, a, 2));
    else if (a === '--rotations') knobs.rotations = int(argv[++i], a, 1);
    else if (a === '--rotation-budget') knobs.rotationBudgetS = int(argv[++i], a, 1);
    else if (a === '--respawns') knobs.respawns = int(argv[++i], a, 0);
    else if (a === '--rotation-peer-max') knobs.peerMax = int(argv[++i], a, 0);
    else if (a === '--rotate-one') knobs.rotateOne = true;
    else if (a === '--rotation-load') knobs.loadS = int(argv[++i], a, 0);
    else if (a === '--soak') knobs.soak = int(argv[++i], a, 0);
    else if (a === '--soak-heap') knobs.soakHeap = true;
    else {
      throw new Error(
        `unknown option ${a} (--quick, --workers N, --only SCENARIO[,…], --targets NAME[,…], ` +
          '--rotation-sizes N[,…], --rotations N, --rotation-budget S, --respawns N, --rotation-peer-max N, ' +
          '--rotate-one, --rotation-load S, --soak N, --soak-heap)',
      );
    }
  }
  return o;
}

if (require.main === module) {
  let opts: BenchOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exit(2);
  }
  const t0 = Date.now();
  runBench(opts).then(
    ({ markdown, file, html }) => {
      process.stdout.write(markdown);
      process.stderr.write(`\nresults: ${file} and ${html} (${((Date.now() - t0) / 1000).toFixed(1)} s)\n`);
    },
    (err: unknown) => {
      process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
