// Issue 13: one certificate file replaced among N SSL objects (each its own cert file, one
// shared key), on both tlsgate engines with nginx (`nginx -s reload`, same certs) beside.
// Per size and target, on one server:
//   start    spawn → a handshake for the last object's name serves its certificate;
//   RSS      per worker (VmRSS) after start, and after the rotations (MB per rotation);
//   rotate   file replaced (write + rename) → the first NEW handshake for that name that
//            presents the new serial; every rotation must be observed (else "unobserved");
//   respawn  SIGKILL of a worker → the first new handshake served by its replacement
//            (one worker: nothing else can serve it), and → /v1/status shows it acked.
// Bounded: rotations by count and by a time budget, each rotation and respawn by a timeout.
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { reissueSni, sniSet, type SniSet } from '../lib/fixtures';
import { GC_HOOK_DIR_ENV } from '../lib/gc-hook';
import type { HsClientResult } from '../lib/hs-client';
import { runHsClientProcess, runWrk, type WrkResult } from '../lib/load';
import { processTree, rssBytes } from '../lib/proc';
import { chartsByCase, newScenario, type ScenarioResult } from '../lib/report';
import { summarize } from '../lib/stats';
import { allAcked } from '../targets/gateway';
import type { GatewayControl, GatewayStatus, RunningServer, Target } from '../targets/types';
import { by, errorText, withServer, type Context, type Scenario } from './context';

const MB = 2 ** 20;
/** tlsgate respawns at once only a worker older than this (primary.ts STABLE_MS, 10 s); a younger one backs off. */
const STABLE_WORKER_MS = 10_500;

/** The serial a new handshake for `servername` presents, or '' when the handshake fails. */
export function peerSerial(port: number, servername: string, timeoutMs = 5000): Promise<string> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const serial = s.getPeerX509Certificate()?.serialNumber ?? '';
      s.destroy();
      resolve(serial);
    });
    s.setTimeout(timeoutMs, () => s.destroy(new Error('ETIMEDOUT')));
    s.on('error', () => resolve(''));
  });
}

/** Poll new handshakes (2 ms apart) until one presents `serial`; ms since t0, or null past the deadline. */
async function untilServed(
  port: number,
  sni: string,
  serial: string,
  t0: number,
  timeoutMs: number,
  failed?: { n: number },
): Promise<number | null> {
  const deadline = t0 + timeoutMs;
  for (;;) {
    const got = await peerSerial(port, sni, Math.max(100, Math.min(5000, deadline - performance.now())));
    if (got === serial) return performance.now() - t0;
    if (got === '' && failed) failed.n++;
    if (performance.now() > deadline) return null;
    await sleep(2);
  }
}

/** Direct children of the server's root process: cluster workers, nginx workers. */
function workerPids(pid: number): number[] {
  return processTree(pid)
    .filter((p) => p.ppid === pid)
    .map((p) => p.pid);
}

/**
 * GET /v1/status, retried: at 100k objects on the loaded 2-core machine one call took more
 * than its 5 s timeout now and then (the primary busy), which used to abort the whole size.
 */
async function statusOf(g: GatewayControl, timeoutMs = 120_000): Promise<GatewayStatus> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      return await g.status();
    } catch (err) {
      if (performance.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

/** The processes that serve: tlsgate's status lists its serving workers (its standby is a child too, not serving). */
async function servingPids(s: RunningServer): Promise<number[]> {
  if (!s.gateway) return workerPids(s.pid);
  return (await statusOf(s.gateway)).workers.map((w) => w.pid);
}

function rssOf(pids: number[]): { mean: number; each: number[] } {
  const each = pids.map(rssBytes);
  return { mean: each.length ? each.reduce((a, b) => a + b, 0) / each.length : NaN, each };
}

/** Gone or a zombie: it can accept nothing more. */
function dead(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

interface Respawn {
  serveMs: number | null;
  ackMs: number | null;
}

/** SIGKILL one worker; time to its replacement serving a new handshake, and to /v1/status showing it. */
async function respawnOnce(
  ctx: Context,
  s: RunningServer,
  sni: string,
  serial: string,
  timeoutMs: number,
): Promise<Respawn> {
  const before = await servingPids(s);
  const victim = before[0];
  if (victim === undefined) throw new Error('no worker process to kill');
  const t0 = performance.now();
  process.kill(victim, 'SIGKILL');
  while (!dead(victim)) {
    if (performance.now() - t0 > 5000) throw new Error(`worker ${victim} still alive 5 s after SIGKILL`);
    await sleep(0);
  }
  // With one worker only its replacement can serve; with more, another worker would.
  const serve = ctx.workers === 1 ? untilServed(s.port, sni, serial, t0, timeoutMs) : Promise.resolve(null);
  const ack = (async (): Promise<number | null> => {
    const g = s.gateway;
    const deadline = t0 + timeoutMs;
    for (;;) {
      if (g) {
        const st = await g.status().catch(() => undefined);
        const fresh = st?.workers.filter((w) => !before.includes(w.pid)) ?? [];
        if (st && st.workers.length >= ctx.workers && fresh.length && fresh.every((w) => w.version === st.version)) {
          return performance.now() - t0;
        }
      } else if (workerPids(s.pid).some((p) => !before.includes(p))) return performance.now() - t0; // nginx: forked
      if (performance.now() > deadline) return null;
      await sleep(2);
    }
  })();
  const [serveMs, ackMs] = await Promise.all([serve, ack]);
  return { serveMs, ackMs };
}

export const certRotation: Scenario = {
  name: 'cert-rotation',
  async run(ctx: Context): Promise<ScenarioResult> {
    const r = newScenario(
      'cert-rotation',
      'One certificate file replaced among N SSL objects (issue 13)',
      [
        'each object its own cert file, one shared ECDSA key; rotation = a new certificate for one object',
        'written beside its file and renamed over it (nginx: then `nginx -s reload`), timed until the first new',
        'handshake for that name presents the new serial (handshakes polled 2 ms apart), each rotation a different',
        'object; start = spawn → a handshake for the last object served; RSS = mean VmRSS of the worker processes,',
        'after start and after the rotations (no forced GC); respawn = SIGKILL of a worker → the first new',
        'handshake served (one worker: by its replacement) / → its replacement acked in GET /v1/status',
        '(nginx: forked). Under load (--rotation-load S, a separate phase after those rotations): wrk, 4 keep-alive',
        'connections on the rotated name (timeout 10 s), plus new connections 2 at a time (full TLS 1.3 handshake,',
        'verified, one GET) over the rotated name and two others, while one file is replaced again and again; every',
        'non-2xx, socket error, timeout, handshake or response error counts as failed. Soak (--soak N, tlsgate only):',
        'one file replaced N times back to back, each waiting for every worker\'s ack (GET /v1/status) then one',
        'handshake checking the serial; worker RSS before/after with and without two forced full GCs (SIGUSR2 hook).',
      ].join(' '),
      [
        { key: 'startMs', label: 'start → serving', unit: 'ms' },
        { key: 'workerRssMb', label: 'RSS per worker after start', unit: 'MB', digits: 1 },
        { key: 'primaryRssMb', label: 'RSS of the primary / master', unit: 'MB', digits: 1 },
        { key: 'rotP50', label: 'rotation → new serial served p50', unit: 'ms', digits: 1 },
        { key: 'rotP99', label: 'rotation → new serial served p99', unit: 'ms', digits: 1 },
        { key: 'rotMax', label: 'rotation → new serial served max', unit: 'ms', digits: 1 },
        { key: 'reloadCmdP50', label: 'of which `nginx -s reload` itself, p50', unit: 'ms', digits: 1 },
        { key: 'rotations', label: 'rotations made', unit: '' },
        { key: 'unobserved', label: 'rotations not observed (must be 0)', unit: '' },
        { key: 'othersChanged', label: 'untouched objects serving another cert (must be 0)', unit: '' },
        { key: 'rssAfterMb', label: 'RSS per worker after the rotations', unit: 'MB', digits: 1 },
        { key: 'mbPerRotation', label: 'RSS growth per rotation', unit: 'MB', digits: 3 },
        { key: 'mbPer1000', label: 'RSS growth per 1,000 rotations (no forced GC)', unit: 'MB', digits: 1 },
        { key: 'mbPer1000Late', label: 'RSS growth per 1,000 rotations, second half only', unit: 'MB', digits: 1 },
        { key: 'loadS', label: 'under load: seconds of wrk + new connections', unit: 's' },
        { key: 'loadRotations', label: 'under load: rotations made', unit: '' },
        { key: 'loadUnobserved', label: 'under load: rotations not observed (must be 0)', unit: '' },
        { key: 'loadRotP50', label: 'under load: rotation → new serial served p50', unit: 'ms', digits: 1 },
        { key: 'loadRotP99', label: 'under load: rotation → new serial served p99', unit: 'ms', digits: 1 },
        { key: 'loadKaRequests', label: 'under load: keep-alive requests (wrk)', unit: '' },
        { key: 'loadKaFailed', label: 'under load: keep-alive requests failed (must be 0)', unit: '' },
        { key: 'loadNewConns', label: 'under load: new connections (handshake + GET)', unit: '' },
        { key: 'loadNewConnsFailed', label: 'under load: new connections failed (must be 0)', unit: '' },
        { key: 'loadProbeFailed', label: 'under load: rotation probe handshakes failed', unit: '' },
        { key: 'loadHsP99', label: 'under load: new-connection handshake p99', unit: 'ms', digits: 1 },
        { key: 'soakRotations', label: 'soak: rotations of one file, back to back', unit: '' },
        { key: 'soakUnobserved', label: 'soak: rotations not acked or not served (must be 0)', unit: '' },
        { key: 'soakAckP50', label: 'soak: rotation → every worker acked p50', unit: 'ms', digits: 1 },
        { key: 'soakAckP99', label: 'soak: rotation → every worker acked p99', unit: 'ms', digits: 1 },
        { key: 'soakWallS', label: 'soak: duration', unit: 's', digits: 1 },
        { key: 'soakGrowthMb', label: 'soak: worker RSS growth, no forced GC', unit: 'MB', digits: 1 },
        { key: 'soakGrowthGcMb', label: 'soak: worker RSS growth, forced GC at both ends', unit: 'MB', digits: 1 },
        { key: 'soakGcPer1000', label: 'soak: growth with GC per 1,000 rotations', unit: 'MB', digits: 1 },
        { key: 'soakLatePer1000', label: 'soak: slope of the second half per 1,000 rotations', unit: 'MB', digits: 1 },
        { key: 'respawnServeP50', label: 'SIGKILL → replacement serves p50', unit: 'ms', digits: 1 },
        { key: 'respawnServeMax', label: 'SIGKILL → replacement serves max', unit: 'ms', digits: 1 },
        { key: 'respawnAckP50', label: 'SIGKILL → replacement acked p50', unit: 'ms', digits: 1 },
        { key: 'respawnsLost', label: 'replacements not serving in time (must be 0)', unit: '' },
      ],
    );
    const k = ctx.knobs;
    const sizes = k.rotationSizes ?? by(ctx, { tiny: [20], quick: [1000], full: [1000, 10_000, 100_000] });
    const rotations = k.rotations ?? by(ctx, { tiny: 2, quick: 5, full: 20 });
    const budgetMs = (k.rotationBudgetS ?? by(ctx, { tiny: 60, quick: 30, full: 180 })) * 1000;
    const respawns = k.respawns ?? by(ctx, { tiny: 1, quick: 1, full: 3 });
    const one = k.rotateOne === true;
    const loadS = k.loadS ?? by(ctx, { tiny: 2, quick: 5, full: 15 });
    const soak = k.soak ?? by(ctx, { tiny: 20, quick: 100, full: 1000 });
    const soakHeap = k.soakHeap === true;
    // nginx builds every context at start and on every reload: ~53 KB and ~1.3 ms per object
    // (README "Scale"), so 100k is ~5 GB per process and minutes per reload.
    const peerMax = k.peerMax ?? by(ctx, { tiny: 100_000, quick: 100_000, full: 10_000 });
    const targets = ctx.targets.filter((t) => t.name === 'nginx' || t.name.startsWith('tlsgate/'));
    if (!targets.some((t) => t.kind === 'gateway')) r.skipped.push('no tlsgate target available');
    if (ctx.workers > 1)
      r.notes.push('more than one worker: "replacement serves" is not measured (another worker serves)');
    for (const n of sizes) {
      if (!Number.isInteger(n) || n < 2) throw new Error(`--rotation-sizes: ${n} is not an integer ≥ 2`);
      const set = sniSet(n, ctx.log);
      for (const t of targets) {
        if (t.kind === 'peer' && n > peerMax) {
          r.skipped.push(`${t.name} at ${n}: peers run up to ${peerMax} objects here (--rotation-peer-max)`);
          continue;
        }
        try {
          await runOne(ctx, r, t, set, { rotations, budgetMs, respawns, one, loadS, soak, soakHeap });
        } catch (err) {
          r.skipped.push(`${t.name} at ${n}: ${errorText(err)}`);
        }
      }
    }
    r.notes.push(`net.ipv4.tcp_migrate_req = ${migrateReq()} on this machine (uws: see README "uws engine")`);
    type Raw = { rotationMs?: number[]; load?: LoadPhase } | undefined;
    r.charts = [
      ...chartsByCase(r.rows, (c) => `Cert file replaced → new serial served, ${c}`, 'ms', (row) => {
        const raw = row.raw as Raw;
        return raw?.rotationMs ? { points: raw.rotationMs } : undefined;
      }),
      ...chartsByCase(r.rows, (c) => `Under load: cert file replaced → new serial served, ${c}`, 'ms', (row) => {
        const raw = row.raw as Raw;
        return raw?.load ? { points: raw.load.rotationMs } : undefined;
      }),
      ...chartsByCase(r.rows, (c) => `Under load: new-connection handshake (connect + TLS), ${c}`, 'ms', (row) => {
        const l = (row.raw as Raw)?.load;
        return l ? { points: l.newConns.handshakeCdf, n: l.newConns.completed } : undefined;
      }),
    ];
    return r;
  },
};

async function runOne(
  ctx: Context,
  r: ScenarioResult,
  t: Target,
  base: SniSet,
  o: {
    rotations: number;
    budgetMs: number;
    respawns: number;
    one: boolean;
    loadS: number;
    soak: number;
    soakHeap: boolean;
  },
): Promise<void> {
  const n = base.count;
  // The rotated objects point at copies in the work dir: the cached set is never modified.
  // Spread over [0, n - 1) (the last object is the start and respawn probe): distinct while
  // rotations < n, then the same objects again, each time with a new certificate.
  // --rotate-one: one object's file, replaced every time (its name is served, so installed, in between).
  const k = o.one ? 1 : Math.min(o.rotations, n - 1);
  const picks = Array.from({ length: k }, (_, j) => Math.floor(((j + 0.5) * (n - 1)) / k));
  const copies = new Map<number, string>();
  let rotDir = '';
  const set: SniSet = { ...base, certFile: (i) => copies.get(i) ?? base.certFile(i) };
  const gateway = t.kind === 'gateway';
  // The GC hook (bench/lib/gc-hook.ts) in every process of the gateway; kept after the run only with heap snapshots.
  const hookDir = gateway ? mkdtempSync(join(tmpdir(), 'tlsgate-bench-gc-')) : '';
  const env = gateway
    ? {
        NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --require ${GC_HOOK_JS}`.trim(),
        [GC_HOOK_DIR_ENV]: hookDir,
      }
    : undefined;
  const t0 = performance.now();
  const timeoutMs = Math.max(30_000, o.budgetMs);
  try {
    await withServer(
      ctx,
      t,
      {
        alg: 'ecdsa',
        protocol: 'TLSv1.3',
        tickets: false,
        sniSet: set,
        env,
        prepare: (workDir: string) => {
          rotDir = join(workDir, 'rot');
          mkdirSync(rotDir, { recursive: true });
          for (const i of picks) {
            copies.set(i, join(rotDir, `${i}.crt`));
            copyFileSync(base.certFile(i), join(rotDir, `${i}.crt`));
          }
        },
      },
      async (s) => {
        const last = n - 1;
        const lastSerial = new X509Certificate(readFileSync(base.certFile(last))).serialNumber;
        const served = await untilServed(s.port, base.sni(last), lastSerial, t0, 900_000);
        if (served === null) throw new Error(`${base.sni(last)} not served within 900 s of start`);
        const startMs = performance.now() - t0;
        await sleep(500); // let start-up garbage settle before the first RSS reading
        const pids0 = await servingPids(s);
        const rss0 = rssOf(pids0);
        const primaryRss = rssBytes(s.pid);

        const times: number[] = [];
        const reloadCmd: number[] = [];
        let unobserved = 0;
        const rotStart = performance.now();
        // RSS every tenth of the rotations: a leak grows linearly, garbage not yet collected levels off.
        const every = Math.max(10, Math.floor(o.rotations / 10));
        const samples: Array<{ rotations: number; mb: number }> = [{ rotations: 0, mb: rss0.mean / MB }];
        for (let j = 0; j < o.rotations; j++) {
          if (j > 0 && performance.now() - rotStart > o.budgetMs) break;
          if (j > 0 && j % every === 0) samples.push({ rotations: j, mb: rssOf(pids0).mean / MB });
          const i = picks[j % picks.length]!;
          const next = reissueSni(base, i); // outside the timing
          const file = copies.get(i)!;
          writeFileSync(`${file}.tmp`, next.cert);
          const r0 = performance.now();
          renameSync(`${file}.tmp`, file);
          if (s.reload) {
            // `nginx -s reload` parses the whole config (every certificate) itself before it signals the master.
            await s.reload();
            reloadCmd.push(performance.now() - r0);
          }
          const ms = await untilServed(s.port, base.sni(i), next.serial, r0, timeoutMs);
          if (ms === null) unobserved++;
          else times.push(ms);
          await sleep(20);
        }
        const made = times.length + unobserved;
        // An object no rotation touched still serves its own certificate.
        let othersChanged = 0;
        for (const i of [0, Math.floor(n / 3), last].filter((x) => !copies.has(x))) {
          const want = new X509Certificate(readFileSync(base.certFile(i))).serialNumber;
          if ((await peerSerial(s.port, base.sni(i))) !== want) othersChanged++;
        }
        await sleep(1000);
        // nginx replaces its workers on every reload: wait until the old ones have exited.
        const settle = performance.now() + 30_000;
        while ((await servingPids(s)).length > ctx.workers && performance.now() < settle) await sleep(50);
        const rss1 = rssOf(await servingPids(s));
        samples.push({ rotations: made, mb: rss1.mean / MB });
        // Growth over the second half of the rotations, per 1,000: the steady-state rate.
        const mid = samples.find((x) => x.rotations >= made / 2 && x.rotations > 0 && x.rotations < made);
        const late = mid ? ((rss1.mean / MB - mid.mb) / (made - mid.rotations)) * 1000 : null;

        const loadIdx = picks[0]!;
        let load: LoadPhase | undefined;
        if (o.loadS > 0) {
          // nginx re-reads every certificate per reload: the load lasts for a few of its rotations.
          const p50 = summarize(times).p50;
          const d = t.kind === 'peer' && Number.isFinite(p50) ? Math.ceil((2.5 * p50) / 1000) + 5 : 0;
          load = await loadPhase(ctx, s, base, loadIdx, copies.get(loadIdx)!, Math.max(o.loadS, Math.min(300, d)));
          ctx.log(
            `  cert-rotation ${n} ${t.name} under load: ${load.rotations} rotations ` +
              `(${load.unobserved} unobserved), keep-alive ${load.wrk.requests} requests / ` +
              `${load.keepAliveFailed} failed, ` +
              `new connections ${load.newConns.completed} / ${load.newConnsFailed} failed ` +
              `${JSON.stringify(load.newConns.errors)}, probe handshakes failed ${load.probeFailures}`,
          );
        }
        let soak: SoakPhase | undefined;
        if (o.soak > 0 && gateway) {
          soak = await soakPhase(s, base, loadIdx, copies.get(loadIdx)!, o.soak, ctx.workers, hookDir, o.soakHeap);
          const f = (v: number | null): string => (v === null ? '—' : v.toFixed(1));
          ctx.log(
            `  cert-rotation ${n} ${t.name} soak: ${soak.rotations} rotations in ${soak.wallS.toFixed(0)} s ` +
              `(${soak.unobserved} unobserved), RSS ${soak.before.toFixed(1)} → ${soak.after.toFixed(1)} MB, ` +
              `with GC ${f(soak.beforeGc)} → ${f(soak.afterGc)} MB, late slope ${f(soak.lateSlopePer1000)} MB/1000` +
              (soak.workersReplaced ? ' (a worker was replaced during the soak!)' : '') +
              (soak.heapDir ? `, heap snapshots in ${soak.heapDir}` : ''),
          );
        }

        const resp: Respawn[] = [];
        let lastRespawnAt = 0;
        for (let j = 0; j < o.respawns; j++) {
          if (j > 0 && t.kind === 'gateway')
            await sleep(Math.max(0, lastRespawnAt + STABLE_WORKER_MS - performance.now()));
          // A replacement loads the whole configuration again: allow it twice what the start took.
          const respawnTimeout = Math.min(900_000, Math.max(30_000, 2 * startMs));
          resp.push(await respawnOnce(ctx, s, base.sni(last), lastSerial, respawnTimeout));
          lastRespawnAt = performance.now();
        }
        const rot = summarize(times);
        const serve = summarize(resp.map((x) => x.serveMs).filter((x): x is number => x !== null));
        const ack = summarize(resp.map((x) => x.ackMs).filter((x): x is number => x !== null));
        const nf = (v: number): number | null => (Number.isFinite(v) ? v : null);
        r.rows.push({
          case: `${n.toLocaleString('en-US')} objects`,
          target: t.name,
          metrics: {
            startMs,
            workerRssMb: rss0.mean / MB,
            primaryRssMb: primaryRss / MB,
            rotP50: nf(rot.p50),
            rotP99: nf(rot.p99),
            rotMax: nf(rot.max),
            reloadCmdP50: reloadCmd.length ? summarize(reloadCmd).p50 : null,
            rotations: made,
            unobserved,
            othersChanged,
            rssAfterMb: nf(rss1.mean / MB),
            mbPerRotation: made ? nf((rss1.mean - rss0.mean) / MB / made) : null,
            mbPer1000: made ? nf(((rss1.mean - rss0.mean) / MB / made) * 1000) : null,
            mbPer1000Late: late === null ? null : nf(late),
            ...loadMetrics(load),
            ...soakMetrics(soak),
            respawnServeP50: ctx.workers === 1 ? nf(serve.p50) : null,
            respawnServeMax: ctx.workers === 1 ? nf(serve.max) : null,
            respawnAckP50: nf(ack.p50),
            respawnsLost: resp.filter((x) => x.ackMs === null || (ctx.workers === 1 && x.serveMs === null)).length,
          },
          raw: {
            objects: n, rotationMs: times, reloadCmdMs: reloadCmd, rss0, rss1, rssSamples: samples, respawns: resp,
            picks: picks.length,
            load,
            soak,
          },
        });
        ctx.log(
          `  cert-rotation ${n} ${t.name}: start ${(startMs / 1000).toFixed(1)} s, ` +
            `RSS/worker ${(rss0.mean / MB).toFixed(1)} MB, rotation p50 ${rot.p50.toFixed(1)} / ` +
            `p99 ${rot.p99.toFixed(1)} ms (${made} made, ${unobserved} unobserved), ` +
            `RSS after ${(rss1.mean / MB).toFixed(1)} MB, respawn ${serve.p50.toFixed(1)} ms`,
        );
      },
    );
  } finally {
    if (hookDir && !o.soakHeap) rmSync(hookDir, { recursive: true, force: true });
  }
}

function migrateReq(): string {
  try {
    return readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

function loadMetrics(l: LoadPhase | undefined): Record<string, number | null> {
  if (!l) return {};
  const rot = summarize(l.rotationMs);
  const nf = (v: number): number | null => (Number.isFinite(v) ? v : null);
  return {
    loadS: l.durationS,
    loadRotations: l.rotations,
    loadUnobserved: l.unobserved,
    loadRotP50: nf(rot.p50),
    loadRotP99: nf(rot.p99),
    loadKaRequests: l.wrk.requests,
    loadKaFailed: l.keepAliveFailed,
    loadNewConns: l.newConns.completed,
    loadNewConnsFailed: l.newConnsFailed,
    loadProbeFailed: l.probeFailures,
    loadHsP99: nf(l.newConns.handshakeMs.p99),
  };
}

function soakMetrics(x: SoakPhase | undefined): Record<string, number | null> {
  if (!x) return {};
  const ack = summarize(x.ackMs);
  const nf = (v: number): number | null => (Number.isFinite(v) ? v : null);
  const gc = x.afterGc !== null && x.beforeGc !== null ? x.afterGc - x.beforeGc : null;
  return {
    soakRotations: x.rotations,
    soakUnobserved: x.unobserved,
    soakAckP50: nf(ack.p50),
    soakAckP99: nf(ack.p99),
    soakWallS: x.wallS,
    soakGrowthMb: x.after - x.before,
    soakGrowthGcMb: gc,
    soakGcPer1000: gc !== null && x.rotations ? (gc / x.rotations) * 1000 : null,
    soakLatePer1000: x.lateSlopePer1000,
  };
}

/** Where the gateway's processes find the GC hook (bench/lib/gc-hook.ts, compiled beside this file's lib/). */
const GC_HOOK_JS = join(__dirname, '..', 'lib', 'gc-hook.js');

function gcCount(dir: string, pid: number): number {
  try {
    return Number(readFileSync(join(dir, `gc-${pid}`), 'utf8')) || 0;
  } catch {
    return 0;
  }
}

/**
 * Two full GCs in each process (SIGUSR2 to the preloaded hook), then wait until each wrote
 * its new count. Only a process that announced the hook (ready-<pid>) is signalled: SIGUSR2
 * would end any other. False when a process did not answer in time.
 */
async function forceGc(dir: string, pids: number[], timeoutMs = 120_000): Promise<boolean> {
  const ready = pids.filter((p) => existsSync(join(dir, `ready-${p}`)));
  if (ready.length < pids.length) return false;
  const before = new Map(ready.map((p) => [p, gcCount(dir, p)]));
  for (const p of ready) process.kill(p, 'SIGUSR2');
  const deadline = performance.now() + timeoutMs;
  while (ready.some((p) => gcCount(dir, p) <= before.get(p)!)) {
    if (performance.now() > deadline) return false;
    await sleep(5);
  }
  return true;
}

export interface LoadPhase {
  durationS: number;
  rotations: number;
  unobserved: number;
  rotationMs: number[];
  /** The polling handshakes of the rotations that failed (not a served request, reported apart). */
  probeFailures: number;
  wrk: WrkResult;
  newConns: HsClientResult;
  keepAliveFailed: number;
  newConnsFailed: number;
}

/**
 * Rotations under load: wrk keep-alive on the rotated name (full speed, pinned to the client
 * core) and a loop of new connections (full handshakes, 2 at a time, certificate and host
 * verified, one GET each) over the rotated name and two untouched ones, while one object's
 * file is replaced again and again (each rotation observed by new handshakes, as above).
 * Every failure counts: non-2xx, socket errors and timeouts (wrk), handshake or response
 * errors (the loop).
 */
async function loadPhase(
  ctx: Context,
  s: RunningServer,
  base: SniSet,
  idx: number,
  file: string,
  durationS: number,
): Promise<LoadPhase> {
  const n = base.count;
  const names = [base.sni(idx), base.sni(n - 1), base.sni(Math.floor(n / 3) === idx ? 0 : Math.floor(n / 3))];
  const wrk = runWrk({
    port: s.port,
    servername: base.sni(idx),
    path: '/',
    connections: 4,
    durationS,
    close: false,
    cpus: ctx.pin.client,
    // A request answered late on the shared 2 cores is slow, not failed: only past 10 s is it a timeout.
    timeoutS: 10,
  });
  const hs = runHsClientProcess(
    {
      port: s.port,
      servername: names[0]!,
      servernames: names,
      ca: ctx.fixtures.ca.certFile,
      protocol: 'TLSv1.3',
      count: 10_000_000,
      concurrency: 2,
      durationMs: durationS * 1000,
      resume: false,
    },
    ctx.pin.client,
  );
  // Both loads exit by themselves after durationS; a failed start rejects here, not later unobserved.
  const settled = Promise.allSettled([wrk, hs]);
  await sleep(500);
  const t0 = performance.now();
  const times: number[] = [];
  const failed = { n: 0 };
  let unobserved = 0;
  const endBy = t0 + durationS * 1000 * 0.8 - 500;
  do {
    const next = reissueSni(base, idx);
    writeFileSync(`${file}.tmp`, next.cert);
    const r0 = performance.now();
    renameSync(`${file}.tmp`, file);
    if (s.reload) await s.reload();
    const ms = await untilServed(s.port, base.sni(idx), next.serial, r0, 60_000, failed);
    if (ms === null) unobserved++;
    else times.push(ms);
    await sleep(50);
  } while (performance.now() < endBy);
  const [w, h] = await settled;
  if (w.status === 'rejected') throw w.reason;
  if (h.status === 'rejected') throw h.reason;
  const e = w.value.socketErrors;
  return {
    durationS,
    rotations: times.length + unobserved,
    unobserved,
    rotationMs: times,
    probeFailures: failed.n,
    wrk: w.value,
    newConns: h.value,
    keepAliveFailed: w.value.non2xx + e.connect + e.read + e.write + e.timeout,
    newConnsFailed: Object.values(h.value.errors).reduce((a, b) => a + b, 0),
  };
}

export interface SoakPhase {
  rotations: number;
  unobserved: number;
  /** Rotation → every worker acked (GET /v1/status), ms. */
  ackMs: number[];
  wallS: number;
  /** Mean worker RSS, MB: before / after, without and with a forced GC. */
  before: number;
  beforeGc: number | null;
  after: number;
  afterGc: number | null;
  samples: Array<{ rotations: number; mb: number }>;
  /** Least-squares slope of the second half's samples, MB per 1,000 rotations. */
  lateSlopePer1000: number | null;
  workersReplaced: boolean;
  heapDir?: string;
}

function slope(points: Array<{ rotations: number; mb: number }>): number | null {
  if (points.length < 3) return null;
  const mx = points.reduce((a, p) => a + p.rotations, 0) / points.length;
  const my = points.reduce((a, p) => a + p.mb, 0) / points.length;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.rotations - mx) * (p.mb - my);
    den += (p.rotations - mx) ** 2;
  }
  return den ? num / den : null;
}

/**
 * The 1,000-rotation soak in one run: one object's file replaced `count` times back
 * to back; each rotation waits for every worker's ack in GET /v1/status (no handshake
 * polling), then ONE handshake for the name checks the new serial (it also builds the
 * name's new context in the worker, as live traffic would). Worker RSS is sampled every
 * 1/20 of the rotations, and read before and after with and without two forced full GCs.
 */
async function soakPhase(
  s: RunningServer,
  base: SniSet,
  idx: number,
  file: string,
  count: number,
  workers: number,
  hookDir: string,
  heap: boolean,
): Promise<SoakPhase> {
  const g = s.gateway!;
  const pids = await servingPids(s);
  const mean = (): number => rssOf(pids).mean / MB;
  if (heap) writeFileSync(join(hookDir, 'heapsnapshot'), '');
  const before = mean();
  const beforeGc = (await forceGc(hookDir, pids)) ? mean() : null;
  const samples: Array<{ rotations: number; mb: number }> = [{ rotations: 0, mb: beforeGc ?? before }];
  const every = Math.max(1, Math.floor(count / 20));
  const ackMs: number[] = [];
  let unobserved = 0;
  const t0 = performance.now();
  const hardEnd = t0 + 3_600_000;
  let made = 0;
  for (; made < count && performance.now() < hardEnd; made++) {
    if (made > 0 && made % every === 0) samples.push({ rotations: made, mb: mean() });
    const v0 = (await statusOf(g)).version;
    const next = reissueSni(base, idx);
    writeFileSync(`${file}.tmp`, next.cert);
    const r0 = performance.now();
    renameSync(`${file}.tmp`, file);
    let acked = false;
    while (performance.now() - r0 < 30_000) {
      const st = await g.status().catch(() => undefined);
      if (st && allAcked(st, workers, v0 + 1)) {
        acked = true;
        break;
      }
      await sleep(2);
    }
    if (acked) ackMs.push(performance.now() - r0);
    const ok =
      acked &&
      ((await peerSerial(s.port, base.sni(idx))) === next.serial ||
        (await untilServed(s.port, base.sni(idx), next.serial, r0, 30_000)) !== null);
    if (!ok) unobserved++;
  }
  const wallS = (performance.now() - t0) / 1000;
  await sleep(1000);
  const after = mean();
  samples.push({ rotations: made, mb: after });
  const afterGc = (await forceGc(hookDir, pids)) ? mean() : null;
  const now = await servingPids(s);
  const lateSlope = slope(samples.filter((x) => x.rotations >= made / 2));
  return {
    rotations: made,
    unobserved,
    ackMs,
    wallS,
    before,
    beforeGc,
    after,
    afterGc,
    samples,
    lateSlopePer1000: lateSlope === null ? null : lateSlope * 1000,
    workersReplaced: now.length !== pids.length || now.some((p) => !pids.includes(p)),
    heapDir: heap ? hookDir : undefined,
  };
}
