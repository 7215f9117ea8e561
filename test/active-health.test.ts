// The primary's active health checker on its own, against real HTTP/HTTPS/TCP servers:
// exact thresholds (down after N failing probes, up after M good ones), HTTPS probes with
// the upstream's CA, SNI and client certificate, restarts on change, and no probe after
// an upstream is removed (no timer leak).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttp, type Server } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { ActiveHealth, type ActiveCheck, type NodeHealthMessage } from '../src/proxy/active-health';
import type { UpstreamSnapshot } from '../src/snapshot/types';
import { clientSsl, pki, upstream } from './helpers/proxy-fixture';
import { freePort, waitFor } from './helpers/gateway';

const servers: Server[] = [];
const checkers: ActiveHealth[] = [];
after(() => {
  for (const c of checkers) c.close();
  for (const s of servers) s.close();
});

/** An HTTP node that answers probes with `status` and counts them by path and status. */
async function node(initial = 200): Promise<{
  port: number; status: number; hits: Map<string, number>; byStatus: Map<number, number>; total: () => number;
}> {
  const n = { port: 0, status: initial, hits: new Map<string, number>(), byStatus: new Map<number, number>(),
    total: () => [...n.hits.values()].reduce((a, b) => a + b, 0) };
  const s = createHttp((req, res) => {
    n.hits.set(req.url ?? '', (n.hits.get(req.url ?? '') ?? 0) + 1);
    n.byStatus.set(n.status, (n.byStatus.get(n.status) ?? 0) + 1);
    res.statusCode = n.status;
    res.end();
  });
  servers.push(s);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  n.port = (s.address() as AddressInfo).port;
  return n;
}

function check(o: Partial<ActiveCheck> = {}): ActiveCheck {
  return {
    timeout: 500,
    http_path: '/health',
    ...o,
    healthy: { interval: 50, successes: 2, http_statuses: [200, 302], ...o.healthy },
    unhealthy: {
      interval: 50, http_failures: 3, tcp_failures: 2, timeouts: 3,
      http_statuses: [429, 404, 500, 501, 502, 503, 504, 505], ...o.unhealthy,
    },
  };
}

function checker(onSend?: () => void): { h: ActiveHealth; sent: NodeHealthMessage[]; logs: string[] } {
  const sent: NodeHealthMessage[] = [];
  const logs: string[] = [];
  const log = { info: (_: object, m: string) => logs.push(m), warn: (_: object, m: string) => logs.push(m),
    error: (_: object, m: string) => logs.push(m) };
  const h = new ActiveHealth({ log, broadcast: (m) => {
    sent.push(m);
    onSend?.();
  } });
  checkers.push(h);
  return { h, sent, logs };
}

const up = (id: string, ports: number[], o: Partial<UpstreamSnapshot> = {}): UpstreamSnapshot =>
  upstream({ id, nodes: ports.map((port) => ({ host: '127.0.0.1', port, weight: 1 })), ...o });

test('down after exactly http_failures failing probes, up after exactly successes good ones', async () => {
  const n = await node(200);
  const other = await node(200);
  // What the node had served when each verdict was sent: the next probe is only scheduled
  // after a result, so the count at the verdict is exactly the threshold.
  const atVerdict: Array<[number, number]> = [];
  const { h, sent } = checker(() => atVerdict.push([n.byStatus.get(500) ?? 0, n.byStatus.get(200) ?? 0]));
  const c = check();
  h.sync([up('u', [n.port, other.port])], new Map([['u', c]]), []);
  await waitFor(() => (n.byStatus.get(200) ?? 0) >= 2, 'healthy probes');
  assert.equal(sent.length, 0, 'healthy nodes: nothing sent');
  n.status = 500;
  await waitFor(() => sent.length === 1, 'the node marked down');
  assert.equal(atVerdict[0]![0], 3, 'down after exactly 3 failing probes');
  assert.deepEqual(sent[0], { type: 'node-health', upstream: 'u', down: [`127.0.0.1:${n.port}`] });
  const v = h.view('u')!.get(`127.0.0.1:${n.port}`)!;
  assert.equal(v.healthy, false);
  assert.ok(v.http_failures >= 3);
  assert.equal(v.last?.status, 500);
  assert.equal(v.last?.result, 'http_failure');
  const good = n.byStatus.get(200) ?? 0;
  n.status = 200;
  await waitFor(() => sent.length === 2, 'the node marked up again');
  assert.equal(atVerdict[1]![1] - good, 2, 'up after exactly 2 good probes');
  assert.deepEqual(sent[1]!.down, []);
  assert.equal(h.view('u')!.get(`127.0.0.1:${other.port}`)!.healthy, true, 'the other node never changed');
});

test('a status in neither list counts for nothing; tcp failures and timeouts have their own thresholds', async () => {
  const n = await node(301);
  const { h, sent } = checker();
  h.sync([up('neither', [n.port])], new Map([['neither', check()]]), []);
  await waitFor(() => (h.view('neither')!.values().next().value?.probes ?? 0) >= 6, 'six probes');
  assert.equal(sent.length, 0, '301 is in neither list: never a failure');
  assert.equal(h.view('neither')!.values().next().value!.last!.result, 'other');

  const dead = await freePort();
  h.sync([up('refused', [dead])], new Map([['refused', check()]]), []);
  await waitFor(() => sent.find((m) => m.upstream === 'refused'), 'refused node down');
  assert.equal(h.view('refused')!.get(`127.0.0.1:${dead}`)!.tcp_failures, 2);

  // Accepts and never answers: each probe times out.
  const silent = createHttp(() => undefined);
  servers.push(silent);
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const sp = (silent.address() as AddressInfo).port;
  h.sync([up('silent', [sp])], new Map([['silent', check({ timeout: 100 })]]), []);
  await waitFor(() => sent.find((m) => m.upstream === 'silent'), 'silent node down', 10_000);
  const sv = h.view('silent')!.get(`127.0.0.1:${sp}`)!;
  assert.equal(sv.timeouts, 3);
  assert.equal(sv.last?.result, 'timeout');
  // A removed upstream that had nodes down: the workers are told to forget them.
  h.sync([], new Map(), []);
  assert.ok(sent.some((m) => m.upstream === 'silent' && m.down.length === 0));
  assert.ok(sent.some((m) => m.upstream === 'refused' && m.down.length === 0));
  assert.equal(h.size, 0);
});

test('HTTPS probes use the upstream tls settings: CA, SNI and client certificate; a wrong CA fails', async () => {
  const p = pki();
  const seen: Array<string | null> = [];
  const opts = { cert: p.upstreamServer.cert, key: p.upstreamServer.key, ca: p.clientCa.cert, requestCert: true,
    rejectUnauthorized: true };
  const s = createHttps(opts, (req, res) => {
    const sock = req.socket as TLSSocket;
    seen.push(`${sock.servername}|${sock.getPeerCertificate().subject?.CN}`);
    res.end();
  });
  servers.push(s as unknown as Server);
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as AddressInfo).port;
  const gwClient = clientSsl('gw-client', p.client);
  const tls = { verify: true, ca: p.upstreamCa.cert, sni: 'api.internal', clientSsl: 'gw-client' };
  const { h, sent } = checker();
  h.sync([up('tls', [port], { scheme: 'https', tls })], new Map([['tls', check()]]), [gwClient]);
  await waitFor(() => seen.length >= 2, 'two HTTPS probes');
  assert.equal(seen[0], 'api.internal|gateway-1');
  assert.equal(h.view('tls')!.get(`127.0.0.1:${port}`)!.last!.result, 'success');
  // The same node with a CA that did not sign it: every probe is a TLS failure.
  const wrong = { ...tls, ca: p.otherCa.cert };
  h.sync([up('tls', [port], { scheme: 'https', tls: wrong })], new Map([['tls', check()]]), [gwClient]);
  await waitFor(() => sent.find((m) => m.upstream === 'tls'), 'node down for a wrong CA');
  assert.equal(h.view('tls')!.get(`127.0.0.1:${port}`)!.last!.result, 'tcp_failure');
});

test('a changed check restarts (new path); a removed upstream gets no probe again (no timer left)', async () => {
  const n = await node(200);
  const canary = await node(200);
  const { h } = checker();
  const c = check();
  h.sync([up('a', [n.port]), up('canary', [canary.port])], new Map([['a', c], ['canary', c]]), []);
  await waitFor(() => (n.hits.get('/health') ?? 0) >= 2, 'probes on /health');
  h.sync([up('a', [n.port]), up('canary', [canary.port])],
    new Map([['a', check({ http_path: '/health2' })], ['canary', c]]), []);
  const onOld = n.hits.get('/health') ?? 0;
  await waitFor(() => (n.hits.get('/health2') ?? 0) >= 3, 'probes on /health2');
  assert.ok((n.hits.get('/health') ?? 0) <= onOld + 1, 'the old path is not probed after the restart');
  h.sync([up('canary', [canary.port])], new Map([['canary', c]]), []);
  const atRemoval = n.total();
  // Same interval: six more canary probes span five intervals of the removed node.
  const canaryAt = canary.total();
  await waitFor(() => canary.total() >= canaryAt + 6, 'canary probes');
  assert.ok(n.total() <= atRemoval + 1, `removed upstream still probed: ${n.total() - atRemoval} probes`);
  h.close();
  const closedAt = canary.total();
  const other = await node(200);
  const { h: h2 } = checker();
  h2.sync([up('b', [other.port])], new Map([['b', c]]), []);
  await waitFor(() => other.total() >= 6, 'a second checker probing');
  assert.ok(canary.total() <= closedAt + 1, 'close() stops every probe');
});
