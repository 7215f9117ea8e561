// Rotation under load, as a program: start a gateway (uws listener), keep keep-alive and
// new-connection clients busy, rotate the certificate of the name they use N times (and
// serve at least M requests), print one JSON line with the counts. Counts, not rates: the
// deadline only bounds a hang, so a slow machine takes longer but checks the same.
// test/uws-engine.test.ts runs it inside its own network namespace (unshare -n) so it can
// set net.ipv4.tcp_migrate_req there only.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { Gateway, freePort, get, handshake } from './gateway';
import { createCA, server } from './pki';

export interface RotationResult {
  rotations: number;
  generations: number;
  ok: number;
  failures: string[];
  workersBefore: number[];
  workersAfter: number[];
  primaryAlive: boolean;
  lastCertServed: boolean;
  rssKbBefore: number[];
  rssKbAfter: number[];
  migrateReq: string;
}

function rssKb(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

export async function rotationUnderLoad(
  wantRotations: number,
  wantRequests: number,
  seconds: number,
): Promise<RotationResult> {
  const ca = createCA('Rotation load CA');
  const certs = { v1: server(ca, ['site.test']), v2: server(ca, ['site.test']) };
  const gw = new Gateway('tlsgate-rotload-');
  const port = await freePort();
  gw.adminPort = await freePort();
  for (const [n, i] of Object.entries(certs)) {
    gw.write(`${n}.crt`, i.cert);
    gw.write(`${n}.key`, i.key);
  }
  const config = (site: 'v1' | 'v2'): string => `
workers: 2
log: { level: debug }
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners: [{ name: fast, listen: 127.0.0.1:${port}, engine: uws }]
ssls:
  - { id: site, snis: [site.test], cert: "$file://${site}.crt", key: "$file://${site}.key" }
routes: [{ id: hello, paths: [/], respond: { status: 200, body: hello } }]
`;
  await gw.start(config('v1'));
  try {
    const before = await gw.status();
    let stop = false;
    let ok = 0;
    let newOk = 0;
    const failures: string[] = [];
    const loop = async (agent: Agent | false): Promise<void> => {
      while (!stop) {
        try {
          const r = await get(port, '/', { servername: 'site.test', agent });
          if (r.status === 200 && r.body === 'hello') {
            ok++;
            if (!agent) newOk++;
          }
          else failures.push(`${agent ? 'keep-alive' : 'new'}: ${r.status} ${r.body}`);
        } catch (err) {
          failures.push(`${agent ? 'keep-alive' : 'new'}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
      }
    };
    const agents = Array.from({ length: 3 }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
    // Warm up: the name is installed in both workers before the first rotation.
    for (let i = 0; i < 8; i++) await get(port, '/', { servername: 'site.test' });
    const rssKbBefore = before.workers.map((w) => rssKb(w.pid));
    const load = [...agents.map((a) => loop(a)), loop(false), loop(false)];
    const deadline = Date.now() + seconds * 1000;
    let rotations = 0;
    let site: 'v1' | 'v2' = 'v1';
    while (Date.now() < deadline && (rotations < wantRotations || ok < wantRequests)) {
      site = site === 'v1' ? 'v2' : 'v1';
      gw.write('gateway.yaml', config(site));
      const r = await gw.admin('POST', '/v1/reload');
      if (r.status !== 200) throw new Error(`reload ${r.status}: ${JSON.stringify(r.body)}`);
      rotations++;
      // New connections handshake on the new generation before the next rotation (each of the
      // two new-connection loops has at most one request that began before the reload), so a
      // rotation always finds site.test installed in some worker's current generation.
      const mark = newOk;
      while (newOk < mark + 3 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 2));
    }
    stop = true;
    await Promise.all(load);
    for (const a of agents) a.destroy();
    const after = await gw.status();
    const want = new X509Certificate(certs[site].cert).fingerprint256;
    let lastCertServed = true;
    for (let i = 0; i < 8; i++) lastCertServed &&= (await handshake(port, { servername: 'site.test' })).cert?.fingerprint256 === want;
    return {
      rotations,
      generations: gw.logs.filter((l) => l.msg === 'uws generation rotated').length,
      ok,
      failures,
      workersBefore: before.workers.map((w) => w.pid).sort(),
      workersAfter: after.workers.map((w) => w.pid).sort(),
      primaryAlive: gw.exitCode === undefined,
      lastCertServed,
      rssKbBefore,
      rssKbAfter: after.workers.map((w) => rssKb(w.pid)),
      migrateReq: readFileSync('/proc/sys/net/ipv4/tcp_migrate_req', 'utf8').trim(),
    };
  } finally {
    await gw.stop();
  }
}

if (require.main === module) {
  const [rotations, requests, secs] = process.argv.slice(2).map(Number);
  rotationUnderLoad(rotations || 100, requests || 500, secs || 90).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (err: Error) => {
      process.stderr.write(`${err.stack ?? err.message}\n`);
      process.exit(1);
    },
  );
}
