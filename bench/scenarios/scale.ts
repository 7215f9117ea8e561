// Scale: N certificates (one SSL object / server block / crt-list line each, distinct SNI)
// loaded beside bench.test: start-to-serving time, snapshot compile time (tlsgate's
// `compile_ms` log field), RSS per worker and per certificate, and handshake CPU with
// N entries vs 1 (the SNI lookup cost).
import { BENCH_SNI, sniSet } from '../lib/fixtures';
import { runWrk } from '../lib/load';
import { which } from '../lib/machine';
import { cpuMicros, processTree, rssBytes } from '../lib/proc';
import { newScenario, type ScenarioResult } from '../lib/report';
import { by, errorText, withServer, type Context, type Scenario } from './context';

const MB = 2 ** 20;

function workerRss(pid: number): { worker: number; total: number } {
  const tree = processTree(pid);
  const rss = tree.map((p) => rssBytes(p.pid));
  const workers = tree.length > 1 ? rss.slice(1) : rss;
  return { worker: workers.reduce((a, b) => a + b, 0) / workers.length, total: rss.reduce((a, b) => a + b, 0) };
}

/** Server CPU over a fixed-duration wrk run of full handshakes to bench.test. */
async function handshakeCpu(ctx: Context, gateway: boolean, pid: number, port: number, durationS: number): Promise<{ cpu: number; requests: number; raw: unknown }> {
  const o = { port, servername: BENCH_SNI, path: '/', connections: 64, close: true, cpus: ctx.pin.client };
  if (gateway && ctx.profile === 'full') await runWrk({ ...o, durationS: 1 }); // warm-up (JIT)
  const c0 = cpuMicros(pid);
  const w = await runWrk({ ...o, durationS });
  return { cpu: cpuMicros(pid) - c0, requests: w.requests, raw: w };
}

export const scale: Scenario = {
  name: 'scale',
  async run(ctx: Context): Promise<ScenarioResult> {
    const r = newScenario(
      'scale',
      'Scale: N certificates loaded (distinct SNIs) beside bench.test',
      'start = spawn → serving (every worker acked, port open); RSS per worker (mean over workers; the process itself when it has none); ' +
        'per cert = (RSS at N − RSS at 0) ÷ N; handshake CPU = wrk full handshakes to bench.test with N entries loaded.',
      [
        { key: 'startMs', label: 'start → serving', unit: 'ms' },
        { key: 'compileMs', label: 'snapshot compile', unit: 'ms' },
        { key: 'workerRssMb', label: 'RSS per worker', unit: 'MB', digits: 1 },
        { key: 'totalRssMb', label: 'RSS all processes', unit: 'MB', digits: 1 },
        { key: 'rssPerCertKb', label: 'RSS per certificate', unit: 'KB', digits: 2 },
        { key: 'cpuUsPerHs', label: 'server CPU / handshake', unit: 'µs' },
      ],
    );
    const sizes = by(ctx, { tiny: [0, 100], quick: [0, 1000], full: [0, 1000, 10_000, 100_000] });
    // nginx and HAProxy build every context at start: 100k would take many minutes and GBs.
    const peerMax = by(ctx, { tiny: 100, quick: 1000, full: 10_000 });
    const durationS = by(ctx, { tiny: 1, quick: 1, full: 5 });
    const base = new Map<string, number>();
    for (const n of sizes) {
      const set = n ? sniSet(n, ctx.log) : undefined;
      if (!which('wrk')) r.skipped.push('handshake CPU: wrk is not installed (apt-get install wrk)');
      for (const t of ctx.targets) {
        if (t.kind === 'peer' && n > peerMax) {
          r.skipped.push(`${t.name} at ${n}: peers are measured up to ${peerMax} certificates`);
          continue;
        }
        const t0 = performance.now();
        try {
          await withServer(ctx, t, { alg: 'ecdsa', protocol: 'TLSv1.3', tickets: false, sniSet: set }, async (s) => {
            const startMs = performance.now() - t0;
            const rss = workerRss(s.pid);
            if (n === 0) base.set(t.name, rss.worker);
            const b = base.get(t.name);
            const w = which('wrk') ? await handshakeCpu(ctx, t.kind === 'gateway', s.pid, s.port, durationS) : undefined;
            const cpu = w?.cpu ?? 0;
            r.rows.push({
              case: `${n.toLocaleString('en-US')} certs`,
              target: t.name,
              metrics: {
                startMs,
                compileMs: s.gateway?.compileMs ?? null,
                workerRssMb: rss.worker / MB,
                totalRssMb: rss.total / MB,
                rssPerCertKb: n && b !== undefined ? (rss.worker - b) / n / 1024 : null,
                cpuUsPerHs: w?.requests ? cpu / w.requests : null,
              },
              raw: { rss, wrk: w?.raw, cpuUs: cpu, readyMs: s.gateway?.readyMs },
            });
            ctx.log(`  scale ${n} ${t.name}: start ${startMs.toFixed(0)} ms, worker RSS ${(rss.worker / MB).toFixed(1)} MB, ${w?.requests ? (cpu / w.requests).toFixed(0) : '—'} µs/hs`);
          });
        } catch (err) {
          r.skipped.push(`${t.name} at ${n}: ${errorText(err)}`);
        }
      }
    }
    return r;
  },
};
