// Certificate rotation on a gateway (tlsgate contract): write a new certificate into the
// config dir and point the config at it, then measure (a) until GET /v1/status shows every
// worker on the new version, (b) until a new handshake presents the new certificate.
// Then the same under continuous keep-alive load plus new connections: failures must be 0.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from 'node:tls';
import { BENCH_SNI, reissue, sniSet, type CertPair } from '../lib/fixtures';
import { runHsClient } from '../lib/hs-client';
import { runAutocannon } from '../lib/load';
import { newScenario, type ScenarioResult } from '../lib/report';
import { summarize } from '../lib/stats';
import { allAcked } from '../targets/gateway';
import type { GatewayControl, RunningServer } from '../targets/types';
import { by, errorText, withServer, type Context, type Scenario } from './context';

const TIMEOUT_MS = 30_000; // one rotation that takes longer is a failure, not a hang

export function peerFingerprint(port: number, servername: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const fp = s.getPeerX509Certificate()?.fingerprint256 ?? '';
      s.destroy();
      resolve(fp);
    });
    s.setTimeout(5000, () => s.destroy(new Error('ETIMEDOUT')));
    s.on('error', reject);
  });
}

interface RotationTiming {
  ackMs: number;
  certMs: number;
}

/** One rotation: returns when both conditions hold, or throws past TIMEOUT_MS. */
export async function rotateOnce(s: RunningServer, g: GatewayControl, workers: number, pair: CertPair): Promise<RotationTiming> {
  const v0 = (await g.status()).version;
  const t0 = performance.now();
  g.rotate(pair);
  const deadline = t0 + TIMEOUT_MS;
  const ack = (async () => {
    for (;;) {
      const st = await g.status().catch(() => undefined);
      if (st && allAcked(st, workers, v0 + 1)) return performance.now() - t0;
      if (performance.now() > deadline) throw new Error(`workers did not ack a version > ${v0} in ${TIMEOUT_MS} ms: ${JSON.stringify(st)}`);
      await sleep(2);
    }
  })();
  const cert = (async () => {
    for (;;) {
      const fp = await peerFingerprint(s.port, BENCH_SNI).catch(() => '');
      if (fp === pair.fingerprint256) return performance.now() - t0;
      if (performance.now() > deadline) throw new Error(`new certificate not served after ${TIMEOUT_MS} ms`);
      await sleep(2);
    }
  })();
  const [ackMs, certMs] = await Promise.all([ack, cert]);
  return { ackMs, certMs };
}

export const rotation: Scenario = {
  name: 'rotation',
  async run(ctx: Context): Promise<ScenarioResult> {
    const r = newScenario(
      'rotation',
      'Certificate rotation (config file write), gateways only',
      'ack = write → GET /v1/status shows every worker on the new version (polled every 2 ms); cert = write → a new handshake presents the new fingerprint; ' +
        'under load = the same rotations during autocannon (-c 16, keep-alive) plus 2 loops of new connections (node:tls, Connection: close).',
      [
        { key: 'ackP50', label: 'ack p50', unit: 'ms', digits: 1 },
        { key: 'ackP99', label: 'ack p99', unit: 'ms', digits: 1 },
        { key: 'certP50', label: 'new cert served p50', unit: 'ms', digits: 1 },
        { key: 'certP99', label: 'new cert served p99', unit: 'ms', digits: 1 },
        { key: 'rotations', label: 'rotations', unit: '' },
        { key: 'loadAckP99', label: 'under load: ack p99', unit: 'ms', digits: 1 },
        { key: 'loadRequests', label: 'under load: keep-alive requests', unit: '' },
        { key: 'loadFailed', label: 'under load: failed requests', unit: '' },
        { key: 'newConns', label: 'under load: new connections', unit: '' },
        { key: 'newConnsFailed', label: 'under load: failed/reset connections', unit: '' },
      ],
    );
    const loaded = by(ctx, { tiny: [0], quick: [0], full: [0, 1000, 10000] });
    const rotations = by(ctx, { tiny: 1, quick: 5, full: 50 });
    const loadRotations = by(ctx, { tiny: 1, quick: 3, full: 20 });
    const loadS = by(ctx, { tiny: 2, quick: 3, full: 15 });
    const gateways = ctx.targets.filter((t) => t.kind === 'gateway');
    if (gateways.length === 0) r.skipped.push('no gateway target available');
    const issueDir = mkdtempSync(join(tmpdir(), 'tlsgate-bench-rot-'));
    try {
      for (const n of loaded) {
        const set = n ? sniSet(n, ctx.log) : undefined;
        const name = `${n + 1} certs loaded`;
        for (const t of gateways) {
          try {
            await withServer(ctx, t, { alg: 'ecdsa', protocol: 'TLSv1.3', tickets: false, sniSet: set }, async (s) => {
              const g = s.gateway!;
              const timings: RotationTiming[] = [];
              let k = 0;
              const next = (): CertPair => reissue(ctx.fixtures, 'ecdsa', issueDir, `rot-${k++}`);
              for (let i = 0; i < rotations; i++) {
                timings.push(await rotateOnce(s, g, ctx.workers, next()));
                await sleep(20);
              }
              // Under load: keep-alive traffic and new connections while rotating.
              const o = { port: s.port, servername: BENCH_SNI, ca: ctx.fixtures.ca.certFile };
              const ac = runAutocannon({ ...o, path: '/', connections: 16, durationS: loadS, cpus: ctx.pin.client });
              const nc = runHsClient({ ...o, protocol: 'TLSv1.3', count: 1_000_000, concurrency: 2, durationMs: loadS * 1000, resume: false });
              const loadTimings: RotationTiming[] = [];
              const gap = Math.max(50, (loadS * 1000 * 0.7) / loadRotations);
              await sleep(300);
              for (let i = 0; i < loadRotations; i++) {
                loadTimings.push(await rotateOnce(s, g, ctx.workers, next()));
                await sleep(gap);
              }
              const [a, c] = await Promise.all([ac, nc]);
              const ack = summarize(timings.map((x) => x.ackMs));
              const cert = summarize(timings.map((x) => x.certMs));
              const ncFailed = Object.values(c.errors).reduce((x, y) => x + y, 0);
              r.rows.push({
                case: name,
                target: t.name,
                metrics: {
                  ackP50: ack.p50,
                  ackP99: ack.p99,
                  certP50: cert.p50,
                  certP99: cert.p99,
                  rotations: timings.length,
                  loadAckP99: summarize(loadTimings.map((x) => x.ackMs)).p99,
                  loadRequests: a.requests,
                  loadFailed: a.errors + a.timeouts + a.non2xx + a.resets,
                  newConns: c.completed,
                  newConnsFailed: ncFailed,
                },
                raw: { timings, loadTimings, autocannon: a, newConnections: c },
              });
              ctx.log(`  rotation ${name} ${t.name}: ack p50 ${ack.p50.toFixed(1)} ms, cert p50 ${cert.p50.toFixed(1)} ms, failed under load ${a.errors + a.timeouts + a.non2xx}/${ncFailed}`);
            });
          } catch (err) {
            r.skipped.push(`${t.name} ${name}: ${errorText(err)}`);
          }
        }
      }
    } finally {
      rmSync(issueDir, { recursive: true, force: true });
    }
    return r;
  },
};
