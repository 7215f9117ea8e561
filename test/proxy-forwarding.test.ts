// An operator puts an HTTP service behind the gateway: requests arrive over TLS,
// leave over plain HTTP with the right headers, spread over the nodes by weight.
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { after, before, describe, it } from 'node:test';
import type { Agent } from 'undici';
import { UpstreamSet } from '../src/proxy';
import {
  closeServer,
  echoHandler,
  frontClient,
  get,
  listen,
  memoryLogger,
  pki,
  startFront,
  upstream,
  type Echo,
} from './helpers/proxy-fixture';

describe('proxy: forwarding to HTTP upstreams', () => {
  const servers: Array<http.Server | https.Server> = [];
  let set: UpstreamSet;
  let front: string;
  let frontCc: string;
  let agent: Agent;
  const log = memoryLogger();

  before(async () => {
    const a = await listen(http.createServer(echoHandler('a')));
    const b = await listen(http.createServer(echoHandler('b')));
    servers.push(a.server, b.server);
    set = new UpstreamSet(
      [
        upstream({ id: 'api', nodes: [{ host: '127.0.0.1', port: a.port, weight: 1 }] }),
        upstream({ id: 'vhost', host: 'backend.internal', nodes: [{ host: '127.0.0.1', port: a.port, weight: 1 }] }),
        upstream({
          id: 'wrr',
          nodes: [
            { host: '127.0.0.1', port: a.port, weight: 3 },
            { host: '127.0.0.1', port: b.port, weight: 1 },
          ],
        }),
        upstream({
          id: 'ident',
          nodes: [{ host: '127.0.0.1', port: a.port, weight: 1 }],
          clientIdentityHeaders: { subject: 'X-Client-Cert-Subject', fingerprint: 'X-Client-Cert-Fingerprint', verify: 'X-Client-Verify' },
        }),
      ],
      [],
      { logger: log },
    );
    const f = await startFront(set);
    const fc = await startFront(set, { clientCert: { subject: 'CN=alice\nO=Example', fingerprint: 'AB:CD:EF' } });
    servers.push(f.server, fc.server);
    front = f.url;
    frontCc = fc.url;
    agent = frontClient();
  });

  after(async () => {
    await agent.close();
    await set.close();
    await Promise.all(servers.map(closeServer));
  });

  it('passes method, path, query, Host and body through', async () => {
    const r = await get(agent, `${front}/a/b?c=d&e`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'hello' });
    assert.equal(r.status, 200);
    const e = JSON.parse(r.text) as Echo;
    assert.equal(e.method, 'POST');
    assert.equal(e.url, '/a/b?c=d&e');
    assert.equal(e.headers.host, new URL(front).host);
    assert.equal(e.bytes, 5);
  });

  it('sets X-Forwarded-For (appended), -Proto and -Host (replaced)', async () => {
    const r = await get(agent, `${front}/`, {
      headers: { 'x-forwarded-for': '203.0.113.9', 'x-forwarded-proto': 'gopher', 'x-forwarded-host': 'evil.example' },
    });
    const e = JSON.parse(r.text) as Echo;
    assert.equal(e.headers['x-forwarded-for'], '203.0.113.9, 127.0.0.1');
    assert.equal(e.headers['x-forwarded-proto'], 'https');
    assert.equal(e.headers['x-forwarded-host'], new URL(front).host);
    assert.equal(e.rawHeaders.filter((h) => h.toLowerCase() === 'x-forwarded-proto').length, 1);
  });

  it('replaces Host when the upstream sets host', async () => {
    const e = JSON.parse((await get(agent, `${front}/`, { headers: { 'x-upstream': 'vhost' } })).text) as Echo;
    assert.equal(e.headers.host, 'backend.internal');
    assert.equal(e.headers['x-forwarded-host'], new URL(front).host);
  });

  it('removes hop-by-hop headers and those named in Connection, both ways', async () => {
    // A raw request: undici (the client) refuses to send some of these itself.
    const hopServer = await listen(
      http.createServer((req, res) => {
        res.setHeader('x-seen', JSON.stringify(req.headers));
        res.setHeader('Connection', 'keep-alive, X-Upstream-Private');
        res.setHeader('X-Upstream-Private', 'secret');
        res.setHeader('Keep-Alive', 'timeout=5');
        res.setHeader('Upgrade', 'h2c');
        res.setHeader('X-Kept', 'yes');
        res.end('ok');
      }),
    );
    servers.push(hopServer.server);
    const local = new UpstreamSet([upstream({ id: 'hop', nodes: [{ host: '127.0.0.1', port: hopServer.port, weight: 1 }] })], [], {
      logger: memoryLogger(),
    });
    const f = await startFront(local, { route: () => 'hop' });
    servers.push(f.server);
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const r = https.request(
        `${f.url}/`,
        {
          ca: pki().frontCa.cert,
          servername: 'localhost',
          headers: {
            Connection: 'keep-alive, X-Private, Foo',
            'X-Private': 'p',
            Foo: 'f',
            'Keep-Alive': '300',
            TE: 'trailers',
            'Proxy-Connection': 'keep-alive',
            Upgrade: 'websocket',
            'X-Normal': 'n',
          },
        },
        resolve,
      );
      r.on('error', reject);
      r.end();
    });
    let body = '';
    for await (const c of res) body += String(c);
    await local.close();
    assert.equal(body, 'ok');
    const seen = JSON.parse(String(res.headers['x-seen'])) as Record<string, string>;
    for (const h of ['x-private', 'foo', 'keep-alive', 'te', 'proxy-connection', 'upgrade', 'transfer-encoding']) {
      assert.equal(seen[h], undefined, `request header ${h} must not reach the upstream`);
    }
    assert.notEqual(seen['connection'], 'keep-alive, X-Private, Foo');
    assert.equal(seen['x-normal'], 'n');
    assert.equal(res.headers['x-upstream-private'], undefined);
    assert.equal(res.headers['upgrade'], undefined);
    assert.notEqual(res.headers['keep-alive'], 'timeout=5, X-Upstream-Private');
    assert.equal(res.headers['x-kept'], 'yes');
  });

  it('strips forged client identity headers when there is no client certificate', async () => {
    const forged = { 'x-client-cert-subject': 'CN=admin', 'x-client-cert-fingerprint': '00', 'x-client-verify': 'SUCCESS' };
    for (const id of ['api', 'ident']) {
      const e = JSON.parse((await get(agent, `${front}/`, { headers: { ...forged, 'x-upstream': id } })).text) as Echo;
      assert.equal(e.headers['x-client-cert-subject'], undefined, id);
      assert.equal(e.headers['x-client-cert-fingerprint'], undefined, id);
      assert.equal(e.headers['x-client-verify'], undefined, id);
    }
  });

  it('sets client identity headers from the verified certificate, replacing forged ones', async () => {
    const e = JSON.parse(
      (await get(agent, `${frontCc}/`, { headers: { 'x-upstream': 'ident', 'x-client-cert-subject': 'CN=admin', 'x-client-verify': 'NONE' } })).text,
    ) as Echo;
    assert.equal(e.headers['x-client-cert-subject'], 'CN=alice,O=Example');
    assert.equal(e.headers['x-client-cert-fingerprint'], 'AB:CD:EF');
    assert.equal(e.headers['x-client-verify'], 'SUCCESS');
    assert.equal(e.rawHeaders.filter((h) => h.toLowerCase() === 'x-client-cert-subject').length, 1);
  });

  it('does not send identity headers to an upstream that did not ask for them', async () => {
    const e = JSON.parse((await get(agent, `${frontCc}/`, { headers: { 'x-upstream': 'api' } })).text) as Echo;
    assert.equal(e.headers['x-client-cert-subject'], undefined);
    assert.equal(e.headers['x-client-verify'], undefined);
  });

  it('spreads requests 3:1 exactly with smooth weighted round robin', async () => {
    const counts: Record<string, number> = { a: 0, b: 0 };
    const seq: string[] = [];
    for (let i = 0; i < 400; i++) {
      const e = JSON.parse((await get(agent, `${front}/`, { headers: { 'x-upstream': 'wrr' } })).text) as Echo;
      counts[e.name] = (counts[e.name] ?? 0) + 1;
      if (i < 8) seq.push(e.name);
    }
    assert.deepEqual(counts, { a: 300, b: 100 });
    // smooth: b is interleaved, never four a's in a row then b
    assert.deepEqual(seq, ['a', 'a', 'b', 'a', 'a', 'a', 'b', 'a']);
  });

  it('answers 502 TLSGATE_E_UPSTREAM_UNKNOWN for an upstream id the worker does not know', async () => {
    const r = await get(agent, `${front}/`, { headers: { 'x-upstream': 'nope' } });
    assert.equal(r.status, 502);
    assert.equal(r.headers['content-type'], 'application/json');
    assert.equal((JSON.parse(r.text) as { error: { code: string } }).error.code, 'TLSGATE_E_UPSTREAM_UNKNOWN');
  });

  it('relays chunked and content-length responses, and status text', async () => {
    const s = await listen(
      http.createServer((req, res) => {
        if (req.url === '/chunked') {
          res.writeHead(201, 'Made It', { 'content-type': 'text/plain' });
          res.write('a');
          res.write('b');
          res.end('c');
        } else {
          res.writeHead(200, { 'content-length': 3 });
          res.end('xyz');
        }
      }),
    );
    servers.push(s.server);
    const local = new UpstreamSet([upstream({ id: 'x', nodes: [{ host: '127.0.0.1', port: s.port, weight: 1 }] })], [], { logger: memoryLogger() });
    const f = await startFront(local, { route: () => 'x' });
    servers.push(f.server);
    const raw = (path: string) =>
      new Promise<{ res: http.IncomingMessage; body: string }>((resolve, reject) => {
        https
          .get(`${f.url}${path}`, { ca: pki().frontCa.cert, servername: 'localhost' }, async (res) => {
            let body = '';
            for await (const c of res) body += String(c);
            resolve({ res, body });
          })
          .on('error', reject);
      });
    const c = await raw('/chunked');
    assert.equal(c.res.statusCode, 201);
    assert.equal(c.res.statusMessage, 'Made It');
    assert.equal(c.res.headers['transfer-encoding'], 'chunked');
    assert.equal(c.body, 'abc');
    const l = await raw('/len');
    assert.equal(l.res.headers['content-length'], '3');
    assert.equal(l.body, 'xyz');
    await local.close();
  });

  it('Expect: 100-continue: 100 is sent once the upstream connection is ready, then the body flows', async () => {
    const local = new UpstreamSet([upstream({ id: 'api', nodes: [{ host: '127.0.0.1', port: (servers[0]!.address() as { port: number }).port, weight: 1 }] })], [], {
      logger: memoryLogger(),
    });
    for (const checkContinue of [true, false]) {
      const f = await startFront(local, { checkContinue });
      servers.push(f.server);
      const { status, echo, sawContinue } = await new Promise<{ status: number; echo: Echo; sawContinue: boolean }>((resolve, reject) => {
        let sawContinue = false;
        const r = https.request(`${f.url}/upload`, {
          method: 'PUT',
          ca: pki().frontCa.cert,
          servername: 'localhost',
          headers: { expect: '100-continue', 'content-length': '11' },
        });
        r.on('continue', () => {
          sawContinue = true;
          r.end('hello world');
        });
        r.on('response', async (res) => {
          let body = '';
          for await (const c of res) body += String(c);
          resolve({ status: res.statusCode ?? 0, echo: JSON.parse(body) as Echo, sawContinue });
        });
        r.on('error', reject);
      });
      assert.equal(status, 200, `checkContinue=${checkContinue}`);
      assert.ok(sawContinue);
      assert.equal(echo.bytes, 11);
      assert.equal(echo.headers['expect'], undefined);
    }
    await local.close();
  });

  it('Expect: 100-continue to a dead upstream: a final 502, never a 100', async () => {
    const dead = await listen(http.createServer());
    const port = dead.port;
    await closeServer(dead.server);
    const local = new UpstreamSet([upstream({ id: 'api', nodes: [{ host: '127.0.0.1', port, weight: 1 }] })], [], { logger: memoryLogger() });
    const f = await startFront(local, { checkContinue: true });
    servers.push(f.server);
    const { status, sawContinue } = await new Promise<{ status: number; sawContinue: boolean }>((resolve, reject) => {
      let sawContinue = false;
      const r = https.request(`${f.url}/upload`, {
        method: 'PUT',
        ca: pki().frontCa.cert,
        servername: 'localhost',
        headers: { expect: '100-continue', 'content-length': '11' },
      });
      r.on('continue', () => (sawContinue = true));
      r.on('response', (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, sawContinue });
      });
      r.on('error', reject);
    });
    assert.equal(status, 502);
    assert.equal(sawContinue, false);
    await local.close();
  });
});
