// Keep-alive requests with autocannon: a fixed number of requests (bounded in time),
// direct 200 and proxied to the shared upstream. Server CPU µs per request is the
// figure to compare; requests/s on 2 shared cores mostly measures autocannon.
import { BENCH_SNI } from '../lib/fixtures';
import { runAutocannon } from '../lib/load';
import { cpuMicros } from '../lib/proc';
import { newScenario, type ScenarioResult } from '../lib/report';
import { by, errorText, withServer, type Context, type Scenario } from './context';

export const keepalive: Scenario = {
  name: 'keepalive',
  async run(ctx: Context): Promise<ScenarioResult> {
    const r = newScenario(
      'keepalive',
      'Keep-alive requests (TLS 1.3, ECDSA P-256)',
      'autocannon -c 32, fixed duration, on the client core; server CPU from /proc/<pid>/stat of the server tree ÷ requests. The upstream (same for all) is not in the server tree.',
      [
        { key: 'cpuUsPerReq', label: 'server CPU / request', unit: 'µs', digits: 1 },
        { key: 'rps', label: 'requests/s', unit: '' },
        { key: 'p50', label: 'latency p50', unit: 'ms', digits: 1 },
        { key: 'p99', label: 'latency p99', unit: 'ms', digits: 1 },
        { key: 'errors', label: 'errors', unit: '' },
      ],
    );
    // Fixed duration, not count: on a busy machine a fixed count has no upper bound in time.
    const durationS = by(ctx, { tiny: 1, quick: 2, full: 15 });
    for (const t of ctx.targets) {
      try {
        await withServer(ctx, t, { alg: 'ecdsa', protocol: 'TLSv1.3', tickets: false }, async (s) => {
          for (const [name, path] of [
            ['direct 200', '/'],
            ['proxied', '/proxy'],
          ] as const) {
            const o = { port: s.port, servername: BENCH_SNI, path, connections: 32, ca: ctx.fixtures.ca.certFile, cpus: ctx.pin.client };
            // Warm-up for JIT-compiled servers (and the upstream pool); C peers don't need it.
            if (t.kind === 'gateway' && ctx.profile !== 'tiny') await runAutocannon({ ...o, durationS: 1 });
            const c0 = cpuMicros(s.pid);
            const a = await runAutocannon({ ...o, durationS });
            const cpu = cpuMicros(s.pid) - c0;
            r.rows.push({
              case: name,
              target: t.name,
              metrics: {
                cpuUsPerReq: a.requests ? cpu / a.requests : null,
                rps: a.rps,
                p50: a.latencyMs.p50,
                p99: a.latencyMs.p99,
                errors: a.errors + a.timeouts + a.non2xx,
              },
              raw: { autocannon: a, cpuUs: cpu },
            });
            ctx.log(`  keepalive ${name} ${t.name}: ${(cpu / a.requests).toFixed(1)} µs/req, ${a.rps.toFixed(0)} req/s`);
          }
        });
      } catch (err) {
        r.skipped.push(`${t.name}: ${errorText(err)}`);
      }
    }
    return r;
  },
};
