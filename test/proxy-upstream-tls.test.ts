// Re-encryption: the gateway talks TLS to the upstream, checks its certificate,
// and presents its own client certificate when the upstream asks for mTLS.
import assert from 'node:assert/strict';
import https from 'node:https';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import type { Agent } from 'undici';
import { TlsgateError } from '../src/errors';
import { UpstreamSet } from '../src/proxy';
import { clientSsl, closeServer, frontClient, get, listen, memoryLogger, pki, startFront, upstream } from './helpers/proxy-fixture';

interface Seen {
  sni: string | false;
  peer: string | null;
  authorized: boolean;
}

function tlsUpstream(cert: { cert: string; key: string }, mtls: boolean) {
  return https.createServer(
    {
      cert: cert.cert,
      key: cert.key,
      ...(mtls ? { requestCert: true, rejectUnauthorized: true, ca: pki().clientCa.cert } : {}),
    },
    (req, res) => {
      const s = req.socket as TLSSocket;
      const peer = s.getPeerCertificate();
      const cn = peer && peer.subject ? peer.subject.CN : undefined;
      const seen: Seen = { sni: s.servername ?? false, peer: typeof cn === 'string' ? cn : null, authorized: s.authorized };
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(seen));
    },
  );
}

describe('proxy: HTTPS upstreams (re-encryption, upstream mTLS)', () => {
  const servers: https.Server[] = [];
  let set: UpstreamSet;
  let front: string;
  let agent: Agent;
  const log = memoryLogger();

  before(async () => {
    const p = pki();
    const plain = await listen(tlsUpstream(p.upstreamServer, false));
    const mtls = await listen(tlsUpstream(p.upstreamServer, true));
    const foreign = await listen(tlsUpstream(p.otherServer, false));
    servers.push(plain.server, mtls.server, foreign.server);
    const node = (port: number) => [{ host: '127.0.0.1', port, weight: 1 }];
    set = new UpstreamSet(
      [
        upstream({ id: 'tls', scheme: 'https', nodes: node(plain.port), tls: { verify: true, ca: p.upstreamCa.cert, sni: 'api.internal' } }),
        upstream({ id: 'tls-ip', scheme: 'https', nodes: node(plain.port), tls: { verify: true, ca: p.upstreamCa.cert } }),
        upstream({ id: 'system-store', scheme: 'https', nodes: node(plain.port), tls: { verify: true } }),
        upstream({ id: 'mtls', scheme: 'https', nodes: node(mtls.port), tls: { verify: true, ca: p.upstreamCa.cert, sni: 'api.internal', clientSsl: 'gw' } }),
        upstream({ id: 'mtls-nocert', scheme: 'https', nodes: node(mtls.port), tls: { verify: true, ca: p.upstreamCa.cert, sni: 'api.internal' } }),
        upstream({ id: 'wrong-ca', scheme: 'https', nodes: node(foreign.port), tls: { verify: true, ca: p.upstreamCa.cert, sni: 'api.internal' } }),
        upstream({ id: 'no-verify', scheme: 'https', nodes: node(foreign.port), tls: { verify: false, sni: 'api.internal' } }),
        upstream({ id: 'wrong-name', scheme: 'https', nodes: node(plain.port), tls: { verify: true, ca: p.upstreamCa.cert, sni: 'other.internal' } }),
      ],
      [clientSsl('gw', p.client)],
      { logger: log },
    );
    const f = await startFront(set);
    servers.push(f.server);
    front = f.url;
    agent = frontClient();
  });

  after(async () => {
    await agent.close();
    await set.close();
    await Promise.all(servers.map(closeServer));
  });

  const call = (id: string, host?: string) => get(agent, `${front}/`, { headers: { 'x-upstream': id, ...(host ? { host } : {}) } });
  const codeOf = (text: string) => (JSON.parse(text) as { error: { code: string } }).error.code;

  it('verifies the upstream against tls.ca and sends tls.sni', async () => {
    const r = await call('tls');
    assert.equal(r.status, 200, r.text);
    const seen = JSON.parse(r.text) as Seen;
    assert.equal(seen.sni, 'api.internal');
    assert.equal(seen.peer, null);
  });

  it('without tls.sni, an IP node is checked against the IP SANs and the client Host never becomes the SNI', async () => {
    for (const host of ['a.example.com', 'b.example.com']) {
      const r = await call('tls-ip', host);
      assert.equal(r.status, 200, r.text);
      assert.equal((JSON.parse(r.text) as Seen).sni, false);
    }
  });

  it('refuses an upstream certificate from another CA: 502 TLSGATE_E_UPSTREAM_TLS', async () => {
    const r = await call('wrong-ca');
    assert.equal(r.status, 502);
    assert.equal(codeOf(r.text), 'TLSGATE_E_UPSTREAM_TLS');
    const line = log.lines.find((l) => l.msg === 'upstream request failed' && l.obj['upstream'] === 'wrong-ca');
    assert.ok(line, 'failure logged');
    assert.match(String(line.obj['node']), /^127\.0\.0\.1:\d+$/);
    assert.match(String(line.obj['reason']), /UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
  });

  it('uses the system store when tls.ca is absent (a private CA is refused)', async () => {
    const r = await call('system-store');
    assert.equal(r.status, 502);
    assert.equal(codeOf(r.text), 'TLSGATE_E_UPSTREAM_TLS');
  });

  it('refuses a certificate that does not name tls.sni', async () => {
    const r = await call('wrong-name');
    assert.equal(r.status, 502);
    assert.equal(codeOf(r.text), 'TLSGATE_E_UPSTREAM_TLS');
  });

  it('accepts any certificate with verify: false, and warned about it once at construction', async () => {
    const r = await call('no-verify');
    assert.equal(r.status, 200, r.text);
    const warnings = log.lines.filter((l) => l.level === 'warn' && l.obj['upstream'] === 'no-verify' && /NOT verified/.test(l.msg));
    assert.equal(warnings.length, 1);
  });

  it('presents the client SSL object to an mTLS upstream', async () => {
    const r = await call('mtls');
    assert.equal(r.status, 200, r.text);
    const seen = JSON.parse(r.text) as Seen;
    assert.equal(seen.peer, 'gateway-1');
    assert.equal(seen.authorized, true);
  });

  it('is refused by an mTLS upstream without a client certificate: 502', async () => {
    const r = await call('mtls-nocert');
    assert.equal(r.status, 502);
    assert.match(codeOf(r.text), /^TLSGATE_E_UPSTREAM_(TLS|RESET|CONNECT)$/);
  });

  it('refuses a snapshot whose client_ssl is missing or of type server, naming the path', () => {
    const p = pki();
    const up = upstream({ id: 'x', scheme: 'https', nodes: [{ host: '127.0.0.1', port: 1, weight: 1 }], tls: { verify: true, clientSsl: 'srv' } });
    const server = { ...clientSsl('srv', p.upstreamServer), type: 'server' as const };
    assert.throws(
      () => new UpstreamSet([up], [server], { logger: memoryLogger() }),
      (e: unknown) => e instanceof TlsgateError && e.code === 'TLSGATE_E_REF_UNKNOWN' && /upstreams\.x\.tls\.client_ssl: .*type server/.test(e.message),
    );
    assert.throws(
      () => new UpstreamSet([up], new Map(), { logger: memoryLogger() }),
      (e: unknown) => e instanceof TlsgateError && /no SSL object "srv"/.test(e.message),
    );
    // update() refuses the same way and keeps serving the old upstreams
    assert.throws(() => set.update([up], []), TlsgateError);
  });
});
