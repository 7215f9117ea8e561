// Memory per streamed MiB: one big proxied download through each target, the server
// tree's RSS sampled from /proc while it runs; then a client that stops reading, to see
// how much the server takes from the upstream and holds. These were thresholds in
// test/proxy-streaming.test.ts until they flaked on 2 shared cores (GC timing): here they
// are figures, side by side with nginx and HAProxy. The tests assert the behaviour
// (every byte arrives, bytes flow before the sender is done, a stalled client stalls the upstream).
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { streamBody } from '../../test/helpers/stream-body';
import { BENCH_SNI } from '../lib/fixtures';
import { treeRss } from '../lib/proc';
import { newScenario, type ScenarioResult } from '../lib/report';
import { by, errorText, withServer, type Context, type Scenario } from './context';

const MiB = 1024 * 1024;
const KiB = 1024;

interface Upstream {
  port: number;
  /** The response being written now: bytes written and whether its writes are blocked. */
  current: { written: number; res: http.ServerResponse | null };
  close(): Promise<void>;
}

/** `GET /proxy…?size=N`: N bytes written with backpressure. In the bench process, on the client core. */
async function startStreamingUpstream(): Promise<Upstream> {
  const up: Upstream = { port: 0, current: { written: 0, res: null }, close: async () => undefined };
  const server = http.createServer((req, res) => {
    const size = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('size')) || 0;
    const state = { written: 0, res };
    up.current = state;
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    streamBody(res, size, { fill: 'z', onWrite: (n) => (state.written = n) });
  });
  server.keepAliveTimeout = 75_000; // 75 seconds, as the gateways' pools
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  up.port = (server.address() as AddressInfo).port;
  up.close = () =>
    new Promise<void>((r) => {
      server.closeAllConnections();
      server.close(() => r());
    });
  return up;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export const streaming: Scenario = {
  name: 'streaming',
  async run(ctx: Context): Promise<ScenarioResult> {
    const size = by(ctx, { tiny: 8 * MiB, quick: 32 * MiB, full: 256 * MiB });
    const r = newScenario(
      'streaming',
      `Proxied streaming: memory per streamed MiB (${size / MiB} MiB download)`,
      'one https download of the body through /proxy from a node:http upstream (backpressure, 64 KiB writes) ' +
        'on the client core; RSS of the whole server tree (every process, /proc/<pid>/status VmRSS) sampled ' +
        'every 50 ms, growth over the value after a 1 MiB warm-up. Stalled: the client stops reading after ' +
        'the headers; once the upstream has been blocked for 1 s, how much it got out and how much the tree grew.',
      [
        { key: 'kibPerMib', label: 'peak RSS growth / streamed MiB', unit: 'KiB', digits: 1 },
        { key: 'peakMib', label: 'peak RSS growth', unit: 'MiB', digits: 1 },
        { key: 'mibPerS', label: 'throughput', unit: 'MiB/s', digits: 0 },
        { key: 'stalledInFlightMib', label: 'stalled: upstream bytes out', unit: 'MiB', digits: 1 },
        { key: 'stalledRssMib', label: 'stalled: RSS growth', unit: 'MiB', digits: 1 },
        { key: 'errors', label: 'errors (bytes short)', unit: '' },
      ],
    );
    r.notes.push(
      'nginx buffers a response the client does not read to temporary files (proxy_buffering on, its default): ' +
        'its stalled figure is not held in memory.',
    );
    const ca = readFileSync(ctx.fixtures.ca.certFile);
    const up = await startStreamingUpstream();
    try {
      for (const t of ctx.targets) {
        try {
          const spec = { alg: 'ecdsa', protocol: 'TLSv1.3', tickets: false, upstreamPort: up.port } as const;
          await withServer(ctx, t, spec, async (s) => {
            const agent = new https.Agent({ ca, servername: BENCH_SNI, keepAlive: true, maxSockets: 1 });
            const get = (n: number): Promise<http.IncomingMessage> =>
              new Promise((resolve, reject) => {
                const path = `/proxy/stream?size=${n}`;
                const o = { host: '127.0.0.1', port: s.port, path, agent, headers: { host: BENCH_SNI } };
                const req = https.get(o, resolve);
                req.setTimeout(60_000, () => req.destroy(new Error('no progress for 60 s')));
                req.on('error', reject);
              });
            const drain = async (res: http.IncomingMessage): Promise<number> => {
              let n = 0;
              for await (const c of res) n += (c as Buffer).length;
              return n;
            };
            try {
              await drain(await get(MiB)); // warm-up: pools, JIT, buffers
              const base = treeRss(s.pid).total;
              let peak = base;
              const sampler = setInterval(() => (peak = Math.max(peak, treeRss(s.pid).total)), 50);
              const t0 = performance.now();
              let got: number;
              try {
                got = await drain(await get(size));
              } finally {
                clearInterval(sampler);
              }
              const secs = (performance.now() - t0) / 1000;
              peak = Math.max(peak, treeRss(s.pid).total);

              // Stalled client: bounded in time whatever the target does (the stand-in never stalls).
              const stallBase = treeRss(s.pid).total;
              // Far more than loopback socket buffers hold (~10-13 MiB measured over two hops),
              // destroyed once stalled. nginx spools what the client does not read to a
              // temporary file (up to 1 GiB by default): kept small in the CI profile.
              const res = await get(by(ctx, { tiny: 64 * MiB, quick: 128 * MiB, full: 256 * MiB }));
              res.pause();
              let last = -1;
              let still = 0;
              const deadline = Date.now() + by(ctx, { tiny: 5_000, quick: 5_000, full: 30_000 });
              while (still < 20 && Date.now() < deadline) {
                const cur = up.current;
                still = cur.res?.writableNeedDrain === true && cur.written === last ? still + 1 : 0;
                last = cur.written;
                await sleep(50);
              }
              const stalledInFlight = still >= 20 ? up.current.written : null;
              const stalledRss = treeRss(s.pid).total - stallBase;
              res.destroy();
              r.rows.push({
                case: 'download',
                target: t.name,
                metrics: {
                  kibPerMib: (peak - base) / KiB / (size / MiB),
                  peakMib: (peak - base) / MiB,
                  mibPerS: size / MiB / secs,
                  stalledInFlightMib: stalledInFlight === null ? null : stalledInFlight / MiB,
                  stalledRssMib: stalledRss / MiB,
                  errors: got === size ? 0 : 1,
                },
                raw: { size, got, base, peak, stallBase, stalledRss, stalledInFlight },
              });
              const perMib = (peak - base) / KiB / (size / MiB);
              const peakMib = (peak - base) / MiB;
              ctx.log(`  streaming ${t.name}: ${perMib.toFixed(1)} KiB/MiB, peak +${peakMib.toFixed(1)} MiB`);
            } finally {
              agent.destroy();
            }
          });
        } catch (err) {
          r.skipped.push(`${t.name}: ${errorText(err)}`);
        }
      }
    } finally {
      await up.close();
    }
    return r;
  },
};
