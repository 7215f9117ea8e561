// When upstreams misbehave: refused, silent, slow, resetting. Each failure is one
// small JSON answer with a stable code, one log line, and dead nodes are skipped.
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Agent } from 'undici';
import { UpstreamSet } from '../src/proxy';
import { closeServer, echoHandler, frontClient, get, listen, memoryLogger, startFront, upstream, until, type Echo } from './helpers/proxy-fixture';

/** A port on 127.0.0.1 with nothing listening: connect is refused at once. */
async function deadPort(): Promise<number> {
  const s = await listen(http.createServer());
  await closeServer(s.server);
  return s.port;
}

const codeOf = (text: string) => (JSON.parse(text) as { error: { code: string } }).error.code;

describe('proxy: upstream failures', () => {
  const servers: Array<http.Server | net.Server> = [];
  const sockets = new Set<net.Socket>();
  let agent: Agent;
  let livePort: number;

  before(async () => {
    const live = await listen(http.createServer(echoHandler('live')));
    servers.push(live.server);
    livePort = live.port;
    agent = frontClient();
  });

  after(async () => {
    await agent.close();
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => (s instanceof http.Server ? closeServer(s) : new Promise<void>((r) => s.close(() => r())))));
  });

  async function rig(ups: Parameters<typeof upstream>[0][], o: { backoffBaseMs?: number } = {}) {
    const log = memoryLogger();
    const set = new UpstreamSet(ups.map(upstream), [], { logger: log, ...o });
    const f = await startFront(set);
    servers.push(f.server);
    return { set, log, url: f.url };
  }

  it('connection refused: 502 TLSGATE_E_UPSTREAM_CONNECT, logged once with upstream, node and reason', async () => {
    const port = await deadPort();
    const { set, log, url } = await rig([{ id: 'api', nodes: [{ host: '127.0.0.1', port, weight: 1 }] }]);
    const r = await get(agent, `${url}/x`);
    assert.equal(r.status, 502);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(r.text), { error: { code: 'TLSGATE_E_UPSTREAM_CONNECT', message: 'upstream api: cannot connect to the upstream' } });
    const failures = log.lines.filter((l) => l.msg === 'upstream request failed');
    assert.equal(failures.length, 1);
    assert.equal(failures[0]!.obj['upstream'], 'api');
    assert.equal(failures[0]!.obj['node'], `127.0.0.1:${port}`);
    assert.match(String(failures[0]!.obj['reason']), /ECONNREFUSED/);
    await set.close();
  });

  it('first node down: an idempotent request goes to the next node, and the dead node is skipped for a back-off', async () => {
    const port = await deadPort();
    const { set, log, url } = await rig(
      [
        {
          id: 'api',
          nodes: [
            { host: '127.0.0.1', port, weight: 1 },
            { host: '127.0.0.1', port: livePort, weight: 1 },
          ],
        },
      ],
      { backoffBaseMs: 1_000 },
    );
    const t0 = Date.now();
    const r = await get(agent, `${url}/`);
    assert.equal(r.status, 200);
    assert.equal((JSON.parse(r.text) as Echo).name, 'live');
    const h = set.health()[0]!;
    assert.equal(h.id, 'api');
    const dead = h.nodes.find((n) => n.port === port)!;
    assert.equal(dead.healthy, false);
    assert.equal(dead.failures, 1);
    // retryAt = the failure's time + the 1 s back-off (the failure came after t0): exact, not a race with the clock.
    assert.ok(dead.retryAt !== null && dead.retryAt >= t0 + 1_000 && dead.retryAt <= Date.now() + 1_000);
    assert.equal(h.nodes.find((n) => n.port === livePort)!.healthy, true);
    assert.equal(log.lines.filter((l) => l.msg.startsWith('upstream node down')).length, 1);

    // while backing off, every request goes straight to the live node: no new failure (requests
    // that start once the back-off is nearly over are not counted: a slow machine may get there)
    let during = 0;
    for (let i = 0; i < 10 && Date.now() < dead.retryAt! - 200; i++, during++) {
      assert.equal((await get(agent, `${url}/`)).status, 200);
    }
    assert.ok(during > 0, 'no request fit in the back-off');
    assert.equal(set.health()[0]!.nodes.find((n) => n.port === port)!.failures, 1);

    // after retryAt the dead node is probed again; its back-off doubles
    await until(() => set.health()[0]!.nodes.find((n) => n.port === port)!.healthy, 'back-off to expire', 5_000);
    let probeStart = 0;
    for (let i = 0; i < 4 && set.health()[0]!.nodes.find((n) => n.port === port)!.failures < 2; i++) {
      probeStart = Date.now();
      assert.equal((await get(agent, `${url}/`)).status, 200);
    }
    const again = set.health()[0]!.nodes.find((n) => n.port === port)!;
    assert.equal(again.failures, 2);
    // The probe failed after probeStart: a doubled back-off puts retryAt at least 2 s past it.
    assert.ok(again.retryAt! - probeStart >= 2_000, 'second back-off is twice the first');
    await set.close();
  });

  it('a POST is not retried on another node: 502', async () => {
    const port = await deadPort();
    const { set, url } = await rig([
      {
        id: 'api',
        nodes: [
          { host: '127.0.0.1', port, weight: 1 },
          { host: '127.0.0.1', port: livePort, weight: 1 },
        ],
      },
    ]);
    const r = await get(agent, `${url}/`, { method: 'POST', body: 'x' });
    assert.equal(r.status, 502);
    assert.equal(codeOf(r.text), 'TLSGATE_E_UPSTREAM_CONNECT');
    await set.close();
  });

  it('all nodes down: still tried (no node is refused outright), 502', async () => {
    const [p1, p2] = [await deadPort(), await deadPort()];
    const { set, url } = await rig([
      {
        id: 'api',
        nodes: [
          { host: '127.0.0.1', port: p1, weight: 1 },
          { host: '127.0.0.1', port: p2, weight: 1 },
        ],
      },
    ]);
    for (let i = 0; i < 3; i++) assert.equal((await get(agent, `${url}/`)).status, 502);
    assert.ok(set.health()[0]!.nodes.every((n) => n.failures >= 1));
    await set.close();
  });

  it('connect timeout (TLS handshake never answered): 504 TLSGATE_E_UPSTREAM_TIMEOUT', async () => {
    // Deterministic stand-in for a black-holed address: TCP is accepted, the
    // ClientHello never answered; the connect timer covers the handshake.
    const silent = net.createServer((s) => void sockets.add(s));
    silent.listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
    servers.push(silent);
    const port = (silent.address() as net.AddressInfo).port;
    const { set, log, url } = await rig([
      { id: 'api', scheme: 'https', nodes: [{ host: '127.0.0.1', port, weight: 1 }], timeout: { connectMs: 300, readMs: 10_000 } },
    ]);
    const t0 = Date.now();
    const r = await get(agent, `${url}/`);
    assert.equal(r.status, 504);
    assert.equal(codeOf(r.text), 'TLSGATE_E_UPSTREAM_TIMEOUT');
    assert.ok(Date.now() - t0 >= 250, 'waited for the connect timeout');
    assert.match(String(log.lines.find((l) => l.msg === 'upstream request failed')!.obj['reason']), /CONNECT_TIMEOUT/);
    await set.close();
  });

  it('read timeout (upstream never answers): 504 TLSGATE_E_UPSTREAM_TIMEOUT', async () => {
    const mute = await listen(http.createServer(() => {}));
    servers.push(mute.server);
    const { set, url } = await rig([
      { id: 'api', nodes: [{ host: '127.0.0.1', port: mute.port, weight: 1 }], timeout: { connectMs: 1_000, readMs: 300 } },
    ]);
    const r = await get(agent, `${url}/`, { method: 'POST', body: 'x' });
    assert.equal(r.status, 504);
    assert.equal(codeOf(r.text), 'TLSGATE_E_UPSTREAM_TIMEOUT');
    await set.close();
  });

  it('upstream resets before answering: 502 TLSGATE_E_UPSTREAM_RESET', async () => {
    const rude = await listen(http.createServer((req) => req.socket.destroy()));
    servers.push(rude.server);
    const { set, url } = await rig([{ id: 'api', nodes: [{ host: '127.0.0.1', port: rude.port, weight: 1 }] }]);
    const r = await get(agent, `${url}/`, { method: 'POST', body: 'x' });
    assert.equal(r.status, 502);
    assert.equal(codeOf(r.text), 'TLSGATE_E_UPSTREAM_RESET');
    await set.close();
  });

  it('upstream sends garbage: 502 TLSGATE_E_UPSTREAM_PROTOCOL', async () => {
    const junk = net.createServer((s) => {
      sockets.add(s);
      s.once('data', () => s.end('NOT HTTP AT ALL\r\n\r\n'));
    });
    junk.listen(0, '127.0.0.1');
    await new Promise((r) => junk.once('listening', r));
    servers.push(junk);
    const { set, url } = await rig([{ id: 'api', nodes: [{ host: '127.0.0.1', port: (junk.address() as net.AddressInfo).port, weight: 1 }] }]);
    const r = await get(agent, `${url}/`, { method: 'POST', body: 'x' });
    assert.equal(r.status, 502);
    assert.equal(codeOf(r.text), 'TLSGATE_E_UPSTREAM_PROTOCOL');
    await set.close();
  });

  it('upstream dies mid-body: the client sees a truncated response, not a fake success', async () => {
    const half = await listen(
      http.createServer((_req, res) => {
        res.writeHead(200, { 'content-length': 1000 });
        res.write('x'.repeat(100), () => res.socket?.destroy());
      }),
    );
    servers.push(half.server);
    const { set, log, url } = await rig([{ id: 'api', nodes: [{ host: '127.0.0.1', port: half.port, weight: 1 }] }]);
    await assert.rejects(get(agent, `${url}/`));
    await until(() => log.lines.some((l) => l.msg === 'upstream request failed'), 'failure logged');
    assert.equal(log.lines.find((l) => l.msg === 'upstream request failed')!.obj['phase'], 'response-body');
    await set.close();
  });

  it('close() is graceful and idempotent; afterwards requests get 502', async () => {
    const { set, url } = await rig([{ id: 'api', nodes: [{ host: '127.0.0.1', port: livePort, weight: 1 }] }]);
    assert.equal((await get(agent, `${url}/`)).status, 200);
    const a = set.close();
    const b = set.close();
    assert.equal(a, b);
    await a;
    assert.equal((await get(agent, `${url}/`)).status, 502);
  });
});
