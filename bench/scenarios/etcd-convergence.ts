// Two gateways on one etcd (TLS, client certificates): a PUT through node A's Admin API, then
// new handshakes on A and B until both present the new certificate. Convergence = PUT sent →
// both nodes serve it. Target (issue 14): p95 ≤ 100 ms, max ≤ 300 ms on loopback.
import { existsSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd, ETCD_BIN, storeBlock } from '../../test/helpers/etcd';
import { Gateway, freePort } from '../../test/helpers/gateway';
import { createCA, server } from '../../test/helpers/pki';
import { adminWrite } from '../../test/helpers/store-admin';
import { newScenario, type ScenarioResult } from '../lib/report';
import { percentile } from '../lib/stats';
import { peerFingerprint } from './rotation';
import { by, errorText, type Context, type Scenario } from './context';

const SNI = 'conv.test';
const TIMEOUT_MS = 10_000; // one PUT not served by then is a failure, not a hang

export const etcdConvergence: Scenario = {
  name: 'etcd-convergence',
  async run(ctx: Context): Promise<ScenarioResult> {
    const r = newScenario(
      'etcd-convergence',
      'Config store: a PUT through node A served by new handshakes on nodes A and B',
      'PUT /v1/ssls/conv (a new certificate each time) on node A, sequential; from just before the PUT, new TLS ' +
        'handshakes (SNI conv.test) on A and B every 2 ms until each presents the new fingerprint; ' +
        'convergence = the later of the two. etcd 3.4 on loopback with TLS and --client-cert-auth.',
      [
        { key: 'p50', label: 'both nodes p50', unit: 'ms', digits: 1 },
        { key: 'p95', label: 'both nodes p95', unit: 'ms', digits: 1 },
        { key: 'p99', label: 'both nodes p99', unit: 'ms', digits: 1 },
        { key: 'max', label: 'both nodes max', unit: 'ms', digits: 1 },
        { key: 'putP50', label: 'PUT answered p50', unit: 'ms', digits: 1 },
        { key: 'bP95', label: 'node B p95', unit: 'ms', digits: 1 },
        { key: 'puts', label: 'PUTs', unit: '' },
        { key: 'failed', label: 'not converged', unit: '' },
      ],
    );
    if (!existsSync(ETCD_BIN)) {
      r.skipped.push(`${ETCD_BIN} is not installed (Debian etcd-server)`);
      return r;
    }
    const puts = by(ctx, { tiny: 3, quick: 50, full: 100 });
    const ca = createCA('Bench Store CA');
    const certs = Array.from({ length: puts + 1 }, () => server(ca, [SNI]));
    const etcd = await Etcd.start();
    const nodes = [new Gateway('tlsgate-bench-etcd-a-'), new Gateway('tlsgate-bench-etcd-b-')];
    try {
      await etcd.put('/tlsgate/ssls/conv', { snis: [SNI], cert: certs[0]!.cert, key: certs[0]!.key });
      const ports: number[] = [];
      for (const g of nodes) {
        const port = await freePort();
        ports.push(port);
        g.adminPort = await freePort();
        await g.start(`
workers: ${ctx.workers}
admin: { listen: 127.0.0.1:${g.adminPort}, api_keys: ["${g.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port}, default_ssl: conv }]
${storeBlock(etcd, g.dir)}
`);
      }
      const a = nodes[0]!;
      // The bench's own client: Node's global fetch loads its undici on first use (~200 ms in
      // this process), which the first PUT's figure showed as a 340-370 ms outlier.
      await adminWrite(a.adminPort, a.apiKey, 'GET', '/v1/status');
      const both: number[] = [];
      const onB: number[] = [];
      const putMs: number[] = [];
      let failed = 0;
      for (let i = 1; i <= puts; i++) {
        const c = certs[i]!;
        const want = new X509Certificate(c.cert).fingerprint256;
        const t0 = performance.now();
        const seen = ports.map(async (port) => {
          for (;;) {
            if ((await peerFingerprint(port, SNI).catch(() => '')) === want) return performance.now() - t0;
            if (performance.now() - t0 > TIMEOUT_MS) throw new Error(`port ${port} did not serve PUT ${i}`);
            await sleep(2);
          }
        });
        const res = await adminWrite(a.adminPort, a.apiKey, 'PUT', '/v1/ssls/conv', {
          snis: [SNI],
          cert: c.cert,
          key: c.key,
        });
        putMs.push(performance.now() - t0);
        if (res.status !== 200) throw new Error(`PUT ${i}: ${res.status} ${JSON.stringify(res.body)}`);
        try {
          const [ta, tb] = await Promise.all(seen);
          both.push(Math.max(ta!, tb!));
          onB.push(tb!);
        } catch (err) {
          failed++;
          ctx.log(`  etcd-convergence: ${errorText(err)}`);
        }
        await sleep(20);
      }
      // Where the PUTs' time went (node A's log: check against the running config, etcd commit, applied).
      const parts = nodes[0]!.logs.filter((l) => l.msg === 'config store object written').slice(0, 3);
      for (const l of parts) {
        ctx.log(`  etcd-convergence: PUT parts check ${l.check_ms} ms, write ${l.write_ms} ms, seen ${l.seen_ms} ms`);
      }
      const p = (xs: number[], q: number): number => percentile(xs, q);
      r.rows.push({
        case: `${puts} PUTs, ${ctx.workers} worker(s) per node`,
        target: 'tlsgate/node',
        metrics: {
          p50: p(both, 50),
          p95: p(both, 95),
          p99: p(both, 99),
          max: Math.max(...both),
          putP50: p(putMs, 50),
          bP95: p(onB, 95),
          puts,
          failed,
        },
        raw: { both, onB, putMs },
      });
      ctx.log(
        `  etcd-convergence: p50 ${p(both, 50).toFixed(1)} ms, p95 ${p(both, 95).toFixed(1)} ms, ` +
          `p99 ${p(both, 99).toFixed(1)} ms, max ${Math.max(...both).toFixed(1)} ms, ${failed} not converged`,
      );
    } finally {
      await Promise.all(nodes.map((g) => g.stop()));
      await etcd.close();
    }
    return r;
  },
};
