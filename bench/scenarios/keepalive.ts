// Keep-alive requests with autocannon, direct 200 and proxied to the shared upstream. Server
// CPU µs per request is the figure to compare; requests/s on 2 shared cores mostly measures
// autocannon. Every target runs at once (idle but for its turn) and the measurements are
// interleaved in rounds (nginx, haproxy, …, tlsgate/uws, then again): on shared cores the
// machine's load drifts over minutes, and a target measured only at a busy moment would look
// slower than it is. The figure is the median round; the lowest and highest are reported.
import { BENCH_SNI } from '../lib/fixtures';
import { runAutocannon, type AutocannonResult } from '../lib/load';
import { cpuMicros } from '../lib/proc';
import { newScenario, type ScenarioResult } from '../lib/report';
import type { RunningServer, Target } from '../targets/types';
import { by, errorText, withServer, type Context, type Scenario } from './context';

const CASES = [
  ['direct 200', '/'],
  ['proxied', '/proxy'],
] as const;

interface Sample {
  cpuUs: number;
  a: AutocannonResult;
}

export const keepalive: Scenario = {
  name: 'keepalive',
  async run(ctx: Context): Promise<ScenarioResult> {
    const rounds = by(ctx, { tiny: 1, quick: 2, full: 5 });
    // Fixed duration, not count: on a busy machine a fixed count has no upper bound in time.
    const durationS = by(ctx, { tiny: 1, quick: 2, full: 6 });
    const r = newScenario(
      'keepalive',
      'Keep-alive requests (TLS 1.3, ECDSA P-256)',
      `autocannon -c 32, ${durationS} s per measurement, on the client core; server CPU from /proc/<pid>/stat of ` +
        `the server tree ÷ requests. Targets measured in turn, ${rounds} round(s); the figure is the median ` +
        'round. The upstream (same for all) is not in the server tree.',
      [
        { key: 'cpuUsPerReq', label: 'server CPU / request', unit: 'µs', digits: 1 },
        { key: 'cpuMin', label: 'server CPU / request, lowest round', unit: 'µs', digits: 1 },
        { key: 'cpuMax', label: 'server CPU / request, highest round', unit: 'µs', digits: 1 },
        { key: 'rps', label: 'requests/s', unit: '' },
        { key: 'p50', label: 'latency p50', unit: 'ms', digits: 1 },
        { key: 'p99', label: 'latency p99', unit: 'ms', digits: 1 },
        { key: 'errors', label: 'errors', unit: '' },
      ],
    );
    const running: Array<{ t: Target; s: RunningServer }> = [];
    const samples = new Map<string, Sample[]>();
    const failed = new Set<string>();
    const measure = async (): Promise<void> => {
      for (const { t, s } of running) {
        for (const [, path] of CASES) {
          const o = { port: s.port, servername: BENCH_SNI, path, connections: 32, ca: ctx.fixtures.ca.certFile, cpus: ctx.pin.client };
          // Warm-up for JIT-compiled servers (and the upstream pool); C peers don't need it.
          if (t.kind === 'gateway' && ctx.profile !== 'tiny') await runAutocannon({ ...o, durationS: 1 });
        }
      }
      for (let round = 0; round < rounds; round++) {
        for (const { t, s } of running) {
          for (const [name, path] of CASES) {
            const o = { port: s.port, servername: BENCH_SNI, path, connections: 32, ca: ctx.fixtures.ca.certFile, cpus: ctx.pin.client };
            const key = `${t.name}\0${name}`;
            if (failed.has(key)) continue;
            let a: AutocannonResult;
            const c0 = cpuMicros(s.pid);
            try {
              a = await runAutocannon({ ...o, durationS });
            } catch (err) {
              failed.add(key);
              r.skipped.push(`${t.name} ${name}: ${errorText(err)}`);
              continue;
            }
            const cpuUs = cpuMicros(s.pid) - c0;
            if (!samples.has(key)) samples.set(key, []);
            samples.get(key)!.push({ cpuUs, a });
            ctx.log(`  keepalive round ${round + 1} ${name} ${t.name}: ${(cpuUs / a.requests).toFixed(1)} µs/req, ${a.rps.toFixed(0)} req/s`);
          }
        }
      }
    };
    // Start every target (a failed start skips that target only), measure, then stop them all.
    const startAll = async (i: number): Promise<void> => {
      if (i === ctx.targets.length) return measure();
      const t = ctx.targets[i]!;
      let started = false;
      try {
        await withServer(ctx, t, { alg: 'ecdsa', protocol: 'TLSv1.3', tickets: false }, async (s) => {
          started = true;
          running.push({ t, s });
          await startAll(i + 1);
        });
      } catch (err) {
        if (started) throw err;
        r.skipped.push(`${t.name}: ${errorText(err)}`);
        await startAll(i + 1);
      }
    };
    await startAll(0);
    for (const { t } of running) {
      for (const [name] of CASES) {
        const ss = samples.get(`${t.name}\0${name}`) ?? [];
        if (ss.length === 0) continue;
        const per = (x: Sample): number => (x.a.requests ? x.cpuUs / x.a.requests : Infinity);
        const sorted = [...ss].sort((x, y) => per(x) - per(y));
        const mid = sorted[(sorted.length - 1) >> 1]!;
        const finite = (v: number): number | null => (Number.isFinite(v) ? v : null);
        r.rows.push({
          case: name,
          target: t.name,
          metrics: {
            cpuUsPerReq: finite(per(mid)),
            cpuMin: finite(per(sorted[0]!)),
            cpuMax: finite(per(sorted[sorted.length - 1]!)),
            rps: mid.a.rps,
            p50: mid.a.latencyMs.p50,
            p99: mid.a.latencyMs.p99,
            errors: ss.reduce((n, x) => n + x.a.errors + x.a.timeouts + x.a.non2xx, 0),
          },
          raw: { rounds: ss.map((x) => ({ cpuUs: x.cpuUs, autocannon: x.a })) },
        });
      }
    }
    return r;
  },
};
