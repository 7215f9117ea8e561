// HTTP/2 requests with h2load (nghttp2-client): one connection, 100 concurrent streams,
// direct 200 and proxied (the upstream stays HTTP/1.1). Server CPU µs per request is the
// figure, tlsgate's node engine against nginx with HTTP/2 on, in the same run. Only these
// two: the node-https stand-in and uws serve no h2, HAProxy is not configured for it here.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BENCH_SNI } from '../lib/fixtures';
import { which } from '../lib/machine';
import { cpuMicros } from '../lib/proc';
import { newScenario, type ScenarioResult } from '../lib/report';
import { freePort, runToEnd } from '../lib/spawn';
import { nginxConf, startNginx } from '../peers/nginx';
import type { RunningServer } from '../targets/types';
import { by, errorText, withServer, type Context, type Scenario } from './context';

export interface H2loadResult {
  done: number;
  succeeded: number;
  failed: number;
  errored: number;
  seconds: number;
  rps: number;
  protocol: string | null;
}

/** h2load's summary: `finished in 1.02s, 9786.65 req/s, …` and `requests: … succeeded, … failed, …`. */
export function parseH2load(out: string): H2loadResult {
  const fin = /finished in ([\d.]+)(ms|s), ([\d.]+) req\/s/.exec(out);
  const req = /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(out);
  if (!fin || !req) throw new Error(`h2load printed no summary: ${out.slice(-1000)}`);
  return {
    done: Number(req[3]),
    succeeded: Number(req[4]),
    failed: Number(req[5]),
    errored: Number(req[6]),
    seconds: Number(fin[1]) / (fin[2] === 'ms' ? 1000 : 1),
    rps: Number(fin[3]),
    protocol: /Application protocol: (\S+)/.exec(out)?.[1] ?? null,
  };
}

async function h2load(port: number, path: string, requests: number, cpus?: string): Promise<H2loadResult> {
  // SNI and :authority bench.test, connected to 127.0.0.1 (h2load does not verify the certificate).
  const args = ['-n', String(requests), '-c', '1', '-m', '100', '-t', '1', `--connect-to=127.0.0.1:${port}`];
  args.push(`https://${BENCH_SNI}:${port}${path}`);
  const r = await runToEnd('h2load', 'h2load', args, { cpus, timeoutMs: 120_000 });
  return parseH2load(r.stdout);
}

/**
 * nginx 1.22 (Debian 12) turns HTTP/2 on with the `listen … ssl http2` parameter; the
 * `http2 on;` directive exists from 1.25.1, where the parameter still works (deprecated).
 */
async function startNginxH2(ctx: Context, workDir: string): Promise<RunningServer> {
  const port = await freePort();
  const pair = ctx.fixtures.ecdsa;
  const conf = nginxConf({
    prefix: workDir, port, workers: ctx.workers, upstreamPort: ctx.upstreamPort,
    certFile: pair.certFile, keyFile: pair.keyFile, protocol: 'TLSv1.3', tickets: false,
  }).replace(' ssl default_server;', ' ssl http2 default_server;');
  return startNginx('nginx', workDir, conf, port, ctx.pin.server, 60_000, ctx.workers);
}

export const h2: Scenario = {
  name: 'h2',
  async run(ctx: Context): Promise<ScenarioResult> {
    const r = newScenario(
      'h2',
      'HTTP/2 requests (TLS 1.3, ECDSA P-256, one connection, 100 concurrent streams)',
      'h2load -c 1 -m 100, fixed count, on the client core; server CPU from /proc/<pid>/stat of the server tree ÷ requests. Upstream HTTP/1.1 (same for all).',
      [
        { key: 'cpuUsPerReq', label: 'server CPU / request', unit: 'µs', digits: 1 },
        { key: 'rps', label: 'requests/s', unit: '' },
        { key: 'errors', label: 'errors', unit: '' },
      ],
    );
    if (!which('h2load')) {
      r.skipped.push('h2load is not installed (apt-get install nghttp2-client)');
      return r;
    }
    const requests = by(ctx, { tiny: 500, quick: 5_000, full: 30_000 });
    const rounds = by(ctx, { tiny: 1, quick: 1, full: 3 });
    const targets = ctx.targets.filter((t) => t.name === 'nginx' || t.name === 'tlsgate/node');
    for (const t of targets) {
      try {
        const start = t.name === 'nginx'
          ? (workDir: string): Promise<RunningServer> => startNginxH2(ctx, workDir)
          : undefined;
        const measure = async (s: RunningServer): Promise<void> => {
          for (const [name, path] of [['direct 200', '/'], ['proxied', '/proxy']] as const) {
            // Warm-up for the JIT (and the upstream pool).
            if (t.kind === 'gateway') await h2load(s.port, path, Math.min(requests, 5_000), ctx.pin.client);
            // Rounds: the cores are shared, the spread says how much.
            const perRound: number[] = [];
            let last: H2loadResult | undefined;
            let errors = 0;
            for (let i = 0; i < rounds; i++) {
              const c0 = cpuMicros(s.pid);
              last = await h2load(s.port, path, requests, ctx.pin.client);
              const cpu = cpuMicros(s.pid) - c0;
              if (last.protocol !== 'h2') throw new Error(`${t.name} negotiated ${last.protocol ?? 'nothing'}, not h2`);
              perRound.push(last.succeeded ? cpu / last.succeeded : NaN);
              errors += last.failed + last.errored;
            }
            perRound.sort((a, b) => a - b);
            const median = perRound[perRound.length >> 1]!;
            r.rows.push({
              case: name,
              target: t.name,
              metrics: { cpuUsPerReq: Number.isFinite(median) ? median : null, rps: last!.rps, errors },
              raw: { rounds: perRound, h2load: last },
            });
            const spread = perRound.map((v) => v.toFixed(1)).join(', ');
            ctx.log(`  h2 ${name} ${t.name}: ${median.toFixed(1)} µs/req (rounds ${spread}), ${last!.rps.toFixed(0)} req/s`);
          }
        };
        if (start) {
          const dir = mkdtempSync(join(tmpdir(), 'tlsgate-bench-nginx-h2-'));
          const s = await start(dir);
          try {
            await measure(s);
          } finally {
            await s.stop();
            rmSync(dir, { recursive: true, force: true });
          }
        } else {
          await withServer(ctx, t, { alg: 'ecdsa', protocol: 'TLSv1.3', tickets: false }, measure);
        }
      } catch (err) {
        r.skipped.push(`${t.name}: ${errorText(err)}`);
      }
    }
    return r;
  },
};
