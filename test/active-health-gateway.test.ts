// Active health checks through the real gateway (two workers, node and uws listeners):
// the primary probes, every worker skips a node it marked unhealthy (whatever the balancer
// and whatever key an attacker sends), takes it back once healthy, shows it in
// GET /v1/upstreams and /metrics; a reload that removes the upstream stops its probes;
// with every node down the answer is today's 502 with its code.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttp, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gateway, freePort, get, waitFor } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

const ca = createCA('Active Health CA');
const front = server(ca, ['app.test']);
const gw = new Gateway();
const ports: Record<'node' | 'uws', number> = { node: 0, uws: 0 };
const ENGINES = ['node', 'uws'] as const;

interface Backend {
  s: Server;
  name: string;
  /** Status of /health. */
  health: number;
  probes: number;
}

function backend(name: string): Backend {
  const b: Backend = {
    name, health: 200, probes: 0,
    s: createHttp((req, res) => {
      if (req.url === '/health') {
        b.probes++;
        res.statusCode = b.health;
        res.end();
        return;
      }
      res.end(name);
    }),
  };
  return b;
}

const flip = backend('flip');
const steady = backend('steady');
const gone = backend('gone');
let deadPort = 0;
const portOf = (b: Backend): number => (b.s.address() as AddressInfo).port;
const CHECK = `{ active: { http_path: /health, timeout: 500ms, healthy: { interval: 100ms, successes: 2 },
      unhealthy: { interval: 100ms, http_failures: 3, tcp_failures: 2 } } }`;

function config(withGone: boolean): string {
  const n = (b: Backend): string => `{ host: 127.0.0.1, port: ${portOf(b)} }`;
  return `
workers: 2
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners:
  - { name: n, listen: 127.0.0.1:${ports.node}, engine: node, default_ssl: front }
  - { name: u, listen: 127.0.0.1:${ports.uws}, engine: uws, default_ssl: front }
ssls:
  - { id: front, snis: [app.test], cert: "$file://front.crt", key: "$file://front.key" }
upstreams:
  - id: rr
    nodes: [${n(flip)}, ${n(steady)}]
    checks: ${CHECK}
  - id: lc
    type: least_conn
    nodes: [${n(flip)}, ${n(steady)}]
    checks: ${CHECK}
  - id: ch
    type: chash
    hash_on: header
    key: x-user
    nodes: [${n(flip)}, ${n(steady)}]
    checks: ${CHECK}
  - id: dead
    nodes: [{ host: 127.0.0.1, port: ${deadPort} }]
    checks: { active: { type: tcp, healthy: { interval: 100ms }, unhealthy: { interval: 100ms } } }
${withGone ? `  - id: gone
    nodes: [${n(gone)}]
    checks: ${CHECK}` : ''}
routes:
  - { id: rr, paths: [/rr], upstream: rr }
  - { id: lc, paths: [/lc], upstream: lc }
  - { id: ch, paths: [/ch], upstream: ch }
  - { id: dead, paths: [/dead], upstream: dead }
`;
}

before(async () => {
  await Promise.all([flip, steady, gone].map((b) => new Promise<void>((r) => b.s.listen(0, '127.0.0.1', r))));
  [ports.node, ports.uws, gw.adminPort, deadPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  gw.write('front.crt', front.cert);
  gw.write('front.key', front.key);
  await gw.start(config(true));
});
after(async () => {
  await gw.stop();
  for (const b of [flip, steady, gone]) b.s.close();
});

const ask = (engine: 'node' | 'uws', path: string, headers: Record<string, string> = {}) =>
  get(ports[engine], path, { servername: 'app.test', headers });

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- admin JSON asserted field by field
async function nodeView(upstream: string, b: Backend): Promise<any> {
  const r = await gw.admin('GET', '/v1/upstreams');
  const u = r.body.upstreams.find((x: { id: string }) => x.id === upstream);
  return u.nodes.find((x: { port: number }) => x.port === portOf(b));
}

async function metrics(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${gw.adminPort}/metrics`, { headers: { 'x-api-key': gw.apiKey } });
  return res.text();
}

describe('active health checks in the gateway', () => {
  test('healthy nodes: probed by the primary only, shown healthy with their counters', async () => {
    await waitFor(async () => (await nodeView('rr', flip))?.active?.successes >= 2, 'two good probes in the view');
    const v = await nodeView('rr', flip);
    assert.equal(v.active.state, 'healthy');
    assert.equal(v.healthy, true);
    assert.equal(v.active.last.status, 200);
    assert.equal(v.active.last.result, 'success');
    const r = await gw.admin('GET', '/v1/upstreams');
    assert.equal(r.body.upstreams.find((u: { id: string }) => u.id === 'ch').type, 'chash');
    assert.equal(r.body.upstreams.find((u: { id: string }) => u.id === 'ch').active_checks, true);
  });

  test('three failing probes: every worker and every balancer skips the node; back after two good ones', async () => {
    flip.health = 503;
    await waitFor(async () => (await nodeView('rr', flip))?.active?.state === 'unhealthy', 'flip unhealthy', 10_000);
    const v = await nodeView('rr', flip);
    assert.equal(v.healthy, false);
    assert.ok(v.active.http_failures >= 3);
    // The primary sends the verdict after committing it to the view: poll until the workers have it.
    const skips = async (): Promise<boolean> =>
      (await ask('node', '/rr/x')).body === 'steady' && (await ask('uws', '/rr/x')).body === 'steady';
    await waitFor(skips, 'workers skip flip');
    for (const engine of ENGINES) {
      // New connections each: both workers answer some of them.
      for (let i = 0; i < 12; i++) {
        for (const path of ['/rr/a', '/lc/a']) {
          const r = await ask(engine, path);
          assert.equal(r.body, 'steady', `${engine} ${path} went to an unhealthy node`);
        }
        const key = i % 3 === 0 ? 'x'.repeat(2000) : i % 3 === 1 ? '' : `attacker-${i}`;
        const r = await ask(engine, '/ch/a', { 'x-user': key });
        assert.equal(r.status, 200);
        assert.equal(r.body, 'steady', `${engine}: key ${key.slice(0, 12)} pinned to the unhealthy node`);
      }
    }
    // A worker that starts while the node is down gets the verdicts with its snapshot.
    const st = await gw.status();
    const victim = st.workers[0]!.pid;
    process.kill(victim, 'SIGKILL');
    await waitFor(async () => {
      const now = await gw.status();
      return now.workers.length === 2 && !now.workers.some((w) => w.pid === victim) &&
        now.workers.every((w) => w.version >= st.version);
    }, 'a respawned worker serving', 15_000);
    for (let i = 0; i < 12; i++) {
      assert.equal((await ask(i % 2 ? 'node' : 'uws', '/rr/c')).body, 'steady', 'the new worker routes to flip');
    }
    const text = await metrics();
    const label = `upstream="rr",node="127.0.0.1:${portOf(flip)}"`;
    assert.match(text, new RegExp(`tlsgate_upstream_node_healthy\\{${label}\\} 0`));
    assert.match(text, new RegExp(`tlsgate_upstream_health_checks_total\\{${label},result="http_failure"\\} [1-9]`));
    const steadyLabel = `upstream="rr",node="127.0.0.1:${portOf(steady)}"`;
    assert.match(text, new RegExp(`tlsgate_upstream_node_healthy\\{${steadyLabel}\\} 1`));

    flip.health = 200;
    await waitFor(async () => (await nodeView('rr', flip))?.active?.state === 'healthy', 'flip healthy again', 10_000);
    for (const engine of ENGINES) {
      await waitFor(async () => {
        const seen = new Set<string>();
        for (let i = 0; i < 6; i++) seen.add((await ask(engine, '/rr/b')).body);
        return seen.has('flip');
      }, `${engine}: flip gets requests again`);
    }
    assert.match(await metrics(), new RegExp(`tlsgate_upstream_node_healthy\\{${label}\\} 1`));
  });

  test('every node down (tcp checks): 502 with the connect code, as without checks', async () => {
    await waitFor(async () => (await gw.admin('GET', '/v1/upstreams')).body.upstreams
      .find((u: { id: string }) => u.id === 'dead').nodes[0].active?.state === 'unhealthy', 'dead node unhealthy');
    for (const engine of ENGINES) {
      const r = await ask(engine, '/dead/x');
      assert.equal(r.status, 502);
      assert.equal(JSON.parse(r.body).error.code, 'TLSGATE_E_UPSTREAM_CONNECT');
    }
  });

  test('a reload that removes an upstream stops its probes; its metrics go', async () => {
    await waitFor(() => gone.probes >= 2, 'gone probed');
    assert.match(await metrics(), new RegExp(`tlsgate_upstream_node_healthy\\{upstream="gone"`));
    const v = (await gw.status()).version;
    gw.write('gateway.yaml', config(false));
    await gw.waitVersion(v + 1);
    const atRemoval = gone.probes;
    // Same interval on steady (three upstreams): 15 more probes there span five intervals.
    const steadyAt = steady.probes;
    await waitFor(() => steady.probes >= steadyAt + 15, 'steady still probed');
    assert.ok(gone.probes <= atRemoval + 1, `${gone.probes - atRemoval} probes reached a removed upstream`);
    assert.doesNotMatch(await metrics(), /upstream="gone"/);
  });
});
