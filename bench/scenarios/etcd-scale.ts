// Config store at scale and under failure (issue 14):
// - etcd-cold: N SSL objects (literal PEMs) in etcd vs the same N in the config file: a cold
//   node from spawn to serving the last object's SNI. The ratio etcd ÷ file is the figure
//   (absolute times move with the machine's load; both are measured back to back, alternating).
// - etcd-outage: two gateways on one etcd, a request loop over new and kept connections;
//   etcd stopped for 10 s (SIGTERM, then restarted on the same ports and data dir); failed
//   requests on each node, then a PUT after etcd returns until both nodes serve it.
import { existsSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Etcd, ETCD_BIN, storeBlock } from '../../test/helpers/etcd';
import { Gateway, freePort, get, waitFor } from '../../test/helpers/gateway';
import { createCA, server } from '../../test/helpers/pki';
import { adminWrite } from '../../test/helpers/store-admin';
import { pushFile } from '../../src/store/push';
import type { EtcdSettings } from '../../src/store/settings';
import { sniSet } from '../lib/fixtures';
import { cpuMicros } from '../lib/proc';
import { newScenario, type ScenarioResult } from '../lib/report';
import { percentile } from '../lib/stats';
import { peerFingerprint } from './rotation';
import { by, errorText, type Context, type Scenario } from './context';

const median = (xs: number[]): number => percentile(xs, 50);

function settingsOf(etcd: Etcd): EtcdSettings {
  return {
    endpoints: [etcd.endpoint],
    prefix: '/tlsgate',
    tls: { ca: etcd.ca.cert, cert: etcd.client.cert, key: etcd.client.key },
    startTimeout: 10_000,
    declared: {} as EtcdSettings['declared'],
  };
}

export const etcdCold: Scenario = {
  name: 'etcd-cold',
  async run(ctx: Context): Promise<ScenarioResult> {
    const r = newScenario(
      'etcd-cold',
      'Config store: a cold node lists and serves N SSL objects from etcd vs from its file',
      'Same N SSL objects (distinct SNIs, cert and key as $file:// references) in the config file or in etcd (TLS, ' +
        '--client-cert-auth); spawn → "tlsgate started" (every worker acked) → a handshake for the last SNI ' +
        'presents its certificate. Runs alternate file / etcd (file first, then etcd first); ratio = median etcd ÷ ' +
        'median file.',
      [
        { key: 'fileMs', label: 'file: start → serving (median)', unit: 'ms' },
        { key: 'etcdMs', label: 'etcd: start → serving (median)', unit: 'ms' },
        { key: 'ratio', label: 'etcd ÷ file', unit: '×', digits: 2 },
        { key: 'fileCpu', label: 'file: gateway CPU to serving (median)', unit: 's', digits: 1 },
        { key: 'etcdCpu', label: 'etcd: gateway CPU to serving (median)', unit: 's', digits: 1 },
        { key: 'cpuRatio', label: 'CPU etcd ÷ file', unit: '×', digits: 2 },
        { key: 'fileCompile', label: 'file: compile_ms', unit: 'ms' },
        { key: 'etcdCompile', label: 'etcd: compile_ms', unit: 'ms' },
        { key: 'runs', label: 'runs each', unit: '' },
      ],
    );
    if (!existsSync(ETCD_BIN)) {
      r.skipped.push(`${ETCD_BIN} is not installed (Debian etcd-server)`);
      return r;
    }
    const n = by(ctx, { tiny: 50, quick: 10_000, full: 10_000 });
    const runs = by(ctx, { tiny: 1, quick: 2, full: 3 });
    const set = sniSet(n, ctx.log);
    // `$file://` references, as README recommends for keys: in etcd they resolve against each
    // node's own directory, where `sni` links to the fixture set (literal keys would also log
    // one "literal key" warning per object from a file, not from etcd).
    const lines: string[] = [];
    for (let i = 0; i < n; i++) {
      // Read once: the first start does not pay a cold page cache for the fixtures (measured: 58-70 s
      // for the first run, 28 s for the next, on the same loaded machine).
      readFileSync(set.certFile(i));
      const o = { id: `s${i}`, snis: [set.sni(i)], cert: `$file://sni/certs/${i}.crt`, key: '$file://sni/leaf.key' };
      lines.push(`  - ${JSON.stringify(o)}`);
    }
    const objects = `ssls:\n${lines.join('\n')}\n`;
    const last = set.sni(n - 1);
    const want = new X509Certificate(readFileSync(set.certFile(n - 1), 'utf8')).fingerprint256;
    const etcd = await Etcd.start();
    try {
      const seed = join(etcd.dir, 'objects.yaml');
      writeFileSync(seed, objects);
      const t0 = performance.now();
      await pushFile(seed, settingsOf(etcd));
      ctx.log(`  etcd-cold: ${n} objects pushed in ${(performance.now() - t0).toFixed(0)} ms`);
      const times: Record<'file' | 'etcd', number[]> = { file: [], etcd: [] };
      const compile: Record<'file' | 'etcd', number[]> = { file: [], etcd: [] };
      const cpu: Record<'file' | 'etcd', number[]> = { file: [], etcd: [] };
      for (let i = 0; i < runs; i++) {
        // Alternating order too: neither kind always runs first.
        for (const kind of i % 2 ? (['etcd', 'file'] as const) : (['file', 'etcd'] as const)) {
          const g = new Gateway(`tlsgate-bench-cold-${kind}-`);
          try {
            const port = await freePort();
            g.adminPort = await freePort();
            const head = `
workers: ${ctx.workers}
admin: { listen: 127.0.0.1:${g.adminPort}, api_keys: ["${g.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port} }]
`;
            symlinkSync(set.dir, join(g.dir, 'sni'));
            const config = kind === 'file' ? head + objects : head + storeBlock(etcd, g.dir) + '\n';
            const s0 = performance.now();
            // Gateway.start() gives up after 20 s: 10k objects on a loaded machine take longer.
            await g.start(config).catch((err: Error) => {
              if (!/timed out waiting for gateway start/.test(err.message)) throw err;
            });
            await waitFor(() => g.logs.find((l) => l.msg === 'tlsgate started'), `${kind} start`, 300_000, 20);
            for (;;) {
              if ((await peerFingerprint(port, last).catch(() => '')) === want) break;
              if (performance.now() - s0 > 300_000) throw new Error(`${kind}: ${last} not served after 300 s`);
              await sleep(5);
            }
            times[kind].push(performance.now() - s0);
            // utime + stime of the primary and its workers (not etcd's): steadier than wall time on busy cores.
            cpu[kind].push(cpuMicros(g.proc!.pid!) / 1e6);
            const started = g.logs.find((l) => l.msg === 'tlsgate started');
            compile[kind].push(Number(started?.compile_ms ?? NaN));
            ctx.log(`  etcd-cold ${kind} run ${i + 1}: ${(performance.now() - s0).toFixed(0)} ms, ` +
              `CPU ${cpu[kind].at(-1)!.toFixed(1)} s`);
          } finally {
            await g.stop();
          }
        }
      }
      r.rows.push({
        case: `${n.toLocaleString('en-US')} SSL objects, ${ctx.workers} worker(s)`,
        target: 'tlsgate/node',
        metrics: {
          fileMs: median(times.file),
          etcdMs: median(times.etcd),
          ratio: median(times.etcd) / median(times.file),
          fileCpu: median(cpu.file),
          etcdCpu: median(cpu.etcd),
          cpuRatio: median(cpu.etcd) / median(cpu.file),
          fileCompile: median(compile.file),
          etcdCompile: median(compile.etcd),
          runs,
        },
        raw: { times, compile, cpu },
      });
      ctx.log(`  etcd-cold: file ${times.file.map((x) => x.toFixed(0)).join('/')} ms, etcd ` +
        `${times.etcd.map((x) => x.toFixed(0)).join('/')} ms, ` +
        `ratio ${(median(times.etcd) / median(times.file)).toFixed(2)}`);
    } catch (err) {
      r.skipped.push(`etcd-cold: ${errorText(err)}`);
    } finally {
      await etcd.close();
    }
    return r;
  },
};

export const etcdOutage: Scenario = {
  name: 'etcd-outage',
  async run(ctx: Context): Promise<ScenarioResult> {
    const r = newScenario(
      'etcd-outage',
      'Config store: etcd stopped under load, two nodes',
      'Two gateways on one etcd (TLS); a sequential loop of GETs alternating node A / B and new / kept ' +
        '(keep-alive) connections; etcd stopped (SIGTERM) for the outage, then restarted on the same ports and ' +
        'data dir; a PUT of a new route through node A once both report connected, polled on both nodes.',
      [
        { key: 'outageS', label: 'etcd down', unit: 's', digits: 1 },
        { key: 'requests', label: 'requests', unit: '' },
        { key: 'during', label: 'served while down', unit: '' },
        { key: 'failed', label: 'failed', unit: '' },
        { key: 'reconnectMs', label: 'etcd healthy → both connected', unit: 'ms' },
        { key: 'convergeMs', label: 'PUT → both serve it', unit: 'ms' },
      ],
    );
    if (!existsSync(ETCD_BIN)) {
      r.skipped.push(`${ETCD_BIN} is not installed (Debian etcd-server)`);
      return r;
    }
    const outageMs = by(ctx, { tiny: 1_000, quick: 10_000, full: 10_000 });
    const ca = createCA('Bench Outage CA');
    const site = server(ca, ['site.test']);
    const etcd = await Etcd.start();
    const nodes = [new Gateway('tlsgate-bench-out-a-'), new Gateway('tlsgate-bench-out-b-')];
    const agents = nodes.map(() => new Agent({ keepAlive: true, maxSockets: 1 }));
    try {
      await etcd.put('/tlsgate/ssls/site', { snis: ['site.test'], cert: site.cert, key: site.key });
      await etcd.put('/tlsgate/routes/hello', { paths: ['/'], respond: { status: 200, body: 'hello' } });
      const ports: number[] = [];
      for (const g of nodes) {
        const port = await freePort();
        ports.push(port);
        g.adminPort = await freePort();
        await g.start(`
workers: ${ctx.workers}
admin: { listen: 127.0.0.1:${g.adminPort}, api_keys: ["${g.apiKey}"] }
listeners: [{ name: public, listen: 127.0.0.1:${port}, default_ssl: site }]
${storeBlock(etcd, g.dir)}
`);
      }
      let requests = 0;
      let failed = 0;
      let down = false;
      let during = 0;
      let stop = false;
      const loop = (async () => {
        const end = Date.now() + outageMs + 120_000;
        for (let i = 0; !stop && i < 2_000_000 && Date.now() < end; i++) {
          const agent = i % 4 < 2 ? agents[i % 2]! : false;
          requests++;
          const ok = await get(ports[i % 2]!, '/', { servername: 'site.test', agent }).then(
            (x) => x.status === 200 && x.body === 'hello',
            () => false,
          );
          if (!ok) failed++;
          else if (down) during++;
        }
      })();
      const connected = async (want: boolean): Promise<void> => {
        const until = Date.now() + 60_000;
        for (;;) {
          const s = await Promise.all(nodes.map((g) => g.admin('GET', '/v1/status')));
          if (s.every((x) => x.body.store.connected === want)) return;
          if (Date.now() > until) throw new Error(`nodes not connected=${want} after 60 s`);
          await sleep(20);
        }
      };
      await sleep(1_000);
      const t0 = performance.now();
      down = true;
      await etcd.stop();
      await connected(false);
      // The outage is the point of the scenario: a fixed duration here, not a synchronisation.
      await sleep(Math.max(0, outageMs - (performance.now() - t0)));
      await etcd.run();
      down = false;
      const outageS = (performance.now() - t0) / 1000;
      const t1 = performance.now();
      await connected(true);
      const reconnectMs = performance.now() - t1;
      const t2 = performance.now();
      const put = await adminWrite(nodes[0]!.adminPort, nodes[0]!.apiKey, 'PUT', '/v1/routes/after', {
        paths: ['/after'],
        respond: { body: 'after' },
      });
      if (put.status !== 201) throw new Error(`PUT after the outage: ${put.status} ${JSON.stringify(put.body)}`);
      const until = Date.now() + 30_000;
      for (const port of ports) {
        while ((await get(port, '/after', { servername: 'site.test' }).catch(() => undefined))?.body !== 'after') {
          if (Date.now() > until) throw new Error(`port ${port} does not serve the PUT after 30 s`);
          await sleep(5);
        }
      }
      const convergeMs = performance.now() - t2;
      stop = true;
      await loop;
      r.rows.push({
        case: `etcd down ${(outageMs / 1000).toFixed(0)} s, ${ctx.workers} worker(s) per node`,
        target: 'tlsgate/node',
        metrics: { outageS, requests, during, failed, reconnectMs, convergeMs },
      });
      ctx.log(`  etcd-outage: ${outageS.toFixed(1)} s down, ${requests} requests (${during} while down), ` +
        `${failed} failed; reconnected in ${reconnectMs.toFixed(0)} ms; ` +
        `PUT served by both in ${convergeMs.toFixed(0)} ms`);
    } catch (err) {
      r.skipped.push(`etcd-outage: ${errorText(err)}`);
    } finally {
      for (const a of agents) a.destroy();
      await Promise.all(nodes.map((g) => g.stop()));
      await etcd.close();
    }
    return r;
  },
};
