// An operator rotates the gateway's client certificate for an mTLS upstream
// while traffic flows: new requests present the new certificate, requests in
// flight finish on the old connections, the old pool closes, nothing fails.
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { Agent } from 'undici';
import { UpstreamSet } from '../src/proxy';
import { clientSsl, closeServer, echoHandler, frontClient, get, listen, memoryLogger, pki, startFront, until, upstream, type Echo } from './helpers/proxy-fixture';

describe('proxy: rotation with update()', () => {
  const servers: Array<http.Server | https.Server> = [];
  let agent: Agent;
  /** Open upstream TLS sockets by the client certificate CN they presented. */
  const open = new Map<string, Set<TLSSocket>>();
  const held: Array<() => void> = [];
  let mtlsPort: number;

  before(async () => {
    const p = pki();
    const s = https.createServer(
      { cert: p.upstreamServer.cert, key: p.upstreamServer.key, requestCert: true, rejectUnauthorized: true, ca: p.clientCa.cert },
      (req, res) => {
        const cn = String((req.socket as TLSSocket).getPeerCertificate().subject.CN);
        const answer = () => res.end(JSON.stringify({ cn, port: req.socket.remotePort }));
        if (req.url === '/hold') held.push(answer);
        else answer();
      },
    );
    s.on('secureConnection', (sock: TLSSocket) => {
      const cn = String(sock.getPeerCertificate().subject.CN);
      if (!open.has(cn)) open.set(cn, new Set());
      open.get(cn)!.add(sock);
      sock.on('close', () => open.get(cn)!.delete(sock));
    });
    const l = await listen(s);
    servers.push(l.server);
    mtlsPort = l.port;
    agent = frontClient();
  });

  after(async () => {
    await agent.close();
    await Promise.all(servers.map(closeServer));
  });

  const mtls = (sni = 'api.internal') =>
    upstream({
      id: 'api',
      scheme: 'https',
      nodes: [{ host: '127.0.0.1', port: mtlsPort, weight: 1 }],
      tls: { verify: true, ca: pki().upstreamCa.cert, clientSsl: 'gw', sni },
    });

  it('rotating the upstream client certificate under load loses no request', async () => {
    const p = pki();
    const set = new UpstreamSet([mtls()], [clientSsl('gw', p.client)], { logger: memoryLogger() });
    const f = await startFront(set);
    servers.push(f.server);

    // Two requests parked on the upstream across the rotation: in flight on the old pool.
    const parked = [get(agent, `${f.url}/hold`), get(agent, `${f.url}/hold`)];
    await until(() => held.length === 2, 'two requests parked on the upstream');

    let stop = false;
    let rotated = false;
    const results: Array<{ status: number; cn: string; afterRotation: boolean }> = [];
    const worker = async (): Promise<void> => {
      for (let i = 0; i < 2_000 && !stop; i++) {
        const startedAfter = rotated;
        const r = await get(agent, `${f.url}/`);
        results.push({ status: r.status, cn: r.status === 200 ? (JSON.parse(r.text) as { cn: string }).cn : r.text, afterRotation: startedAfter });
      }
    };
    const load = Promise.all(Array.from({ length: 8 }, worker));
    await until(() => results.length >= 100, '100 requests before the rotation');
    set.update([mtls()], [clientSsl('gw', p.client2)]);
    rotated = true;
    await until(() => results.filter((r) => r.afterRotation).length >= 100, '100 requests after the rotation');

    // The parked requests finish on the old pool, with the old certificate.
    for (const release of held.splice(0)) release();
    const parkedReplies = await Promise.all(parked);
    stop = true;
    await load;

    assert.deepEqual(
      results.filter((r) => r.status !== 200),
      [],
      'no request failed',
    );
    assert.ok(parkedReplies.every((r) => r.status === 200 && (JSON.parse(r.text) as { cn: string }).cn === 'gateway-1'));
    assert.ok(results.filter((r) => r.afterRotation).every((r) => r.cn === 'gateway-2'), 'new requests present the new certificate');
    assert.ok(results.some((r) => !r.afterRotation && r.cn === 'gateway-1'));
    // The old pool closes once idle: its connections go away.
    await until(() => (open.get('gateway-1')?.size ?? 0) === 0, 'old pool connections to close');
    assert.ok((open.get('gateway-2')?.size ?? 0) > 0, 'new pool keeps its keep-alive connections');
    await set.close();
  });

  it('an update that changes nothing keeps the pool and its keep-alive connections', async () => {
    const up = await listen(http.createServer(echoHandler('a')));
    servers.push(up.server);
    const snap = upstream({ id: 'api', nodes: [{ host: '127.0.0.1', port: up.port, weight: 1 }] });
    const other = upstream({ id: 'other', nodes: [{ host: '127.0.0.1', port: up.port, weight: 1 }] });
    const set = new UpstreamSet([snap], [], { logger: memoryLogger() });
    const f = await startFront(set);
    servers.push(f.server);
    const ping = async (): Promise<void> => assert.equal((await get(agent, `${f.url}/`)).status, 200);
    await ping();
    const sockets = () => new Promise<number>((resolve, reject) => up.server.getConnections((e, n) => (e ? reject(e) : resolve(n))));
    assert.equal(await sockets(), 1);
    set.update([{ ...snap }, other], []);
    for (let i = 0; i < 5; i++) await ping();
    assert.equal(await sockets(), 1, 'same keep-alive connection reused after a no-op update');
    // removing an upstream: its id is then unknown
    set.update([other], []);
    const r = await get(agent, `${f.url}/`);
    assert.equal(r.status, 502);
    assert.equal((JSON.parse(r.text) as { error: { code: string } }).error.code, 'TLSGATE_E_UPSTREAM_UNKNOWN');
    await set.close();
  });

  it('an update that moves an upstream to another node sends new requests there', async () => {
    const a = await listen(http.createServer(echoHandler('a')));
    const b = await listen(http.createServer(echoHandler('b')));
    servers.push(a.server, b.server);
    const set = new UpstreamSet([upstream({ id: 'api', nodes: [{ host: '127.0.0.1', port: a.port, weight: 1 }] })], [], { logger: memoryLogger() });
    const f = await startFront(set);
    servers.push(f.server);
    assert.equal((JSON.parse((await get(agent, `${f.url}/`)).text) as Echo).name, 'a');
    set.update([upstream({ id: 'api', nodes: [{ host: '127.0.0.1', port: b.port, weight: 1 }] })], []);
    assert.equal((JSON.parse((await get(agent, `${f.url}/`)).text) as Echo).name, 'b');
    await set.close();
  });
});
