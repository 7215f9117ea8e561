// Full handshakes (wrk, Connection: close, its session dropped on reconnect by the shim
// bench/lib/full-handshake.c, which also counts resumed ones: must be 0) and resumed
// handshakes (hs-client with session tickets). The figure to compare is server CPU µs
// per handshake, from /proc/<pid>/stat of the whole server process tree.
import { BENCH_SNI, type Alg } from '../lib/fixtures';
import { runHsClientProcess, runWrk, wrkShim } from '../lib/load';
import { which } from '../lib/machine';
import { cpuMicros } from '../lib/proc';
import { chartsByCase, newScenario, type ScenarioResult } from '../lib/report';
import type { Protocol } from '../targets/types';
import { by, errorText, withServer, type Context, type Scenario } from './context';

const label = (p: Protocol, a: Alg): string => `${p.replace('TLSv', 'TLS')} ${a === 'ecdsa' ? 'ECDSA P-256' : 'RSA-2048'}`;

export const handshake: Scenario = {
  name: 'handshake',
  async run(ctx: Context): Promise<ScenarioResult> {
    const r = newScenario(
      'handshake',
      'Full TLS handshakes (new connection per request)',
      'wrk -t1 -c64 with `Connection: close` on the client core (C client; the LD_PRELOAD shim ' +
        'bench/lib/full-handshake.c drops the session wrk would offer on reconnect and counts resumed handshakes: ' +
        'must be 0); server CPU from /proc/<pid>/stat of the server tree ÷ handshakes; ' +
        'wrk latency = request written → response, after the handshake; handshake p50/p99 = TCP connect + TLS handshake, from a node:tls probe (1 loop) beside wrk.',
      [
        { key: 'cpuUsPerHs', label: 'server CPU / handshake', unit: 'µs' },
        { key: 'hsPerS', label: 'handshakes/s', unit: '' },
        { key: 'probeP50', label: 'handshake p50', unit: 'ms', digits: 2 },
        { key: 'probeP99', label: 'handshake p99', unit: 'ms', digits: 2 },
        { key: 'wrkP50', label: 'wrk latency p50', unit: 'ms', digits: 2 },
        { key: 'wrkP99', label: 'wrk latency p99', unit: 'ms', digits: 2 },
        { key: 'errors', label: 'errors', unit: '' },
        { key: 'resumed', label: 'resumed handshakes (must be 0)', unit: '' },
      ],
    );
    const shim = wrkShim();
    if ('error' in shim) r.notes.push(`wrk's resumed handshakes not counted nor prevented: ${shim.error}`);
    const cases: Array<[Protocol, Alg]> = by(ctx, {
      tiny: [['TLSv1.3', 'ecdsa']],
      quick: [['TLSv1.3', 'ecdsa']],
      full: [
        ['TLSv1.3', 'ecdsa'],
        ['TLSv1.3', 'rsa'],
        ['TLSv1.2', 'ecdsa'],
        ['TLSv1.2', 'rsa'],
      ],
    });
    const durationS = by(ctx, { tiny: 1, quick: 2, full: 10 });
    if (!which('wrk')) r.skipped.push('full handshakes: wrk is not installed (apt-get install wrk)');
    for (const [protocol, alg] of which('wrk') ? cases : []) {
      for (const t of ctx.targets) {
        try {
          await withServer(ctx, t, { alg, protocol, tickets: false }, async (s) => {
            if (t.kind === 'gateway' && ctx.profile !== 'tiny') await runWrk({ port: s.port, servername: BENCH_SNI, path: '/', connections: 64, durationS: 1, close: true, cpus: ctx.pin.client }); // warm-up (JIT)
            const c0 = cpuMicros(s.pid);
            const [w, probe] = await Promise.all([
              runWrk({ port: s.port, servername: BENCH_SNI, path: '/', connections: 64, durationS, close: true, cpus: ctx.pin.client }),
              runHsClientProcess(
                { port: s.port, servername: BENCH_SNI, ca: ctx.fixtures.ca.certFile, protocol, count: 100_000, concurrency: 1, durationMs: durationS * 1000 - 200, resume: false },
                ctx.pin.client,
              ),
            ]);
            const cpu = cpuMicros(s.pid) - c0;
            const hs = w.requests + probe.completed;
            // wrk offers its last session on every reconnect; the shim drops it and counts.
            const resumed = w.tls ? w.tls.resumed + probe.resumed : null;
            if (resumed) {
              const what = `${t.name} ${label(protocol, alg)}`;
              r.notes.push(`**${what}: ${resumed} resumed handshakes in a full-handshake run**`);
            }
            const errors = Object.values(w.socketErrors).reduce((a, b) => a + b, 0) + w.non2xx + Object.values(probe.errors).reduce((a, b) => a + b, 0);
            r.rows.push({
              case: label(protocol, alg),
              target: t.name,
              metrics: {
                cpuUsPerHs: hs ? cpu / hs : null,
                hsPerS: w.rps,
                probeP50: probe.handshakeMs.p50,
                probeP99: probe.handshakeMs.p99,
                wrkP50: w.latencyMs.p50,
                wrkP99: w.latencyMs.p99,
                errors,
                resumed,
              },
              raw: { wrk: w, probe, cpuUs: cpu, handshakes: hs },
            });
            ctx.log(`  handshake ${label(protocol, alg)} ${t.name}: ${(cpu / hs).toFixed(0)} µs/hs, ${w.rps.toFixed(0)} hs/s`);
          });
        } catch (err) {
          r.skipped.push(`${t.name} ${label(protocol, alg)}: ${errorText(err)}`);
        }
      }
    }

    // Resumed handshakes: tickets on; no C tool here resumes reliably with SNI (wrk resumes
    // every other reconnect, `openssl s_time` sends no SNI), so hs-client: node:tls, 4 loops, client core.
    const resumeCases: Array<[Protocol, Alg]> = by(ctx, {
      tiny: [['TLSv1.3', 'ecdsa']],
      quick: [['TLSv1.3', 'ecdsa']],
      full: [
        ['TLSv1.3', 'ecdsa'],
        ['TLSv1.2', 'ecdsa'],
      ],
    });
    const count = by(ctx, { tiny: 200, quick: 1000, full: 20000 });
    for (const [protocol, alg] of resumeCases) {
      for (const t of ctx.targets) {
        try {
          await withServer(ctx, t, { alg, protocol, tickets: true }, async (s) => {
            const opts = { port: s.port, servername: BENCH_SNI, ca: ctx.fixtures.ca.certFile, protocol, concurrency: 4, resume: true };
            if (t.kind === 'gateway' && ctx.profile === 'full') await runHsClientProcess({ ...opts, count: 500, durationMs: 3000 }, ctx.pin.client);
            const c0 = cpuMicros(s.pid);
            const h = await runHsClientProcess({ ...opts, count, durationMs: by(ctx, { tiny: 1000, quick: 1500, full: 20000 }) }, ctx.pin.client);
            const cpu = cpuMicros(s.pid) - c0;
            r.rows.push({
              case: `${label(protocol, alg)} resumed (tickets)`,
              target: t.name,
              metrics: {
                cpuUsPerHs: h.completed ? cpu / h.completed : null,
                hsPerS: (h.completed / h.wallMs) * 1000,
                probeP50: h.handshakeMs.p50,
                probeP99: h.handshakeMs.p99,
                resumedPct: h.completed ? (100 * h.resumed) / h.completed : null,
                errors: Object.values(h.errors).reduce((a, b) => a + b, 0),
              },
              raw: { client: h, cpuUs: cpu },
            });
            ctx.log(`  resumed ${label(protocol, alg)} ${t.name}: ${(cpu / h.completed).toFixed(0)} µs/hs, ${((100 * h.resumed) / h.completed).toFixed(0)}% resumed`);
          });
        } catch (err) {
          r.skipped.push(`${t.name} ${label(protocol, alg)} resumed: ${errorText(err)}`);
        }
      }
    }
    r.metrics.push({ key: 'resumedPct', label: 'resumed', unit: '%' });
    type Probe = { handshakeCdf?: number[]; completed: number };
    r.charts = chartsByCase(r.rows, (c) => `Handshake latency, ${c} (connect + TLS)`, 'ms', (row) => {
      const raw = row.raw as { probe?: Probe; client?: Probe } | undefined;
      const p = raw?.probe ?? raw?.client;
      return p?.handshakeCdf ? { points: p.handshakeCdf, n: p.completed } : undefined;
    });
    r.notes.push('resumed rows: hs-client (node:tls, 4 sequential loops) — handshakes/s there is bound by the Node client, CPU/handshake is not.');
    return r;
  },
};
