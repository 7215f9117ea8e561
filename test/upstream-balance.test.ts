// Balancers through the real gateway (node and uws listeners over one snapshot):
// least_conn sends fewer requests to a node that holds them; chash keeps a key on its node,
// on both engines, moves only the removed node's keys when a node goes, retries on the next
// node of the ring, and an attacker's key cannot crash it.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttp, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Gateway, freePort, get } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

const ca = createCA('Balance CA');
const front = server(ca, ['app.test']);
const gw = new Gateway();
const ports: Record<'node' | 'uws', number> = { node: 0, uws: 0 };
const ENGINES = ['node', 'uws'] as const;

/** Answers its name; /hold requests wait until `release()`. */
function backend(name: string) {
  const held: ServerResponse[] = [];
  let arrived: (() => void) | undefined;
  const s = createHttp((req: IncomingMessage, res: ServerResponse) => {
    if ((req.url ?? '').includes('/hold/') && name === 'slow') {
      held.push(res);
      arrived?.();
      return;
    }
    res.setHeader('content-type', 'text/plain');
    res.end(name);
  });
  return {
    s,
    name,
    held,
    /** Resolves at the next held request. */
    nextHeld: () => new Promise<void>((r) => (arrived = r)),
    release: () => {
      for (const r of held.splice(0)) r.end(name);
    },
  };
}

const fast = backend('fast');
const slow = backend('slow');
const a = backend('a');
const b = backend('b');
const c = backend('c');
let deadPort = 0;
const portOf = (x: { s: { address(): unknown } }): number => (x.s.address() as AddressInfo).port;

function config(withC: boolean): string {
  const node = (x: { s: { address(): unknown } }): string => `{ host: 127.0.0.1, port: ${portOf(x)} }`;
  const ring = withC ? `[${node(a)}, ${node(b)}, ${node(c)}]` : `[${node(a)}, ${node(b)}]`;
  return `
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners:
  - { name: n, listen: 127.0.0.1:${ports.node}, engine: node, default_ssl: front }
  - { name: u, listen: 127.0.0.1:${ports.uws}, engine: uws, default_ssl: front }
ssls:
  - { id: front, snis: [app.test], cert: "$file://front.crt", key: "$file://front.key" }
upstreams:
  - { id: lc, type: least_conn, nodes: [${node(fast)}, ${node(slow)}] }
  - { id: rr, nodes: [${node(fast)}, ${node(slow)}] }
  - { id: ch, type: chash, hash_on: header, key: X-User, nodes: ${ring} }
  - { id: ch-addr, type: chash, nodes: [${node(a)}, ${node(b)}, ${node(c)}] }
  - { id: ch-dead, type: chash, key: http_x_user, nodes: [{ host: 127.0.0.1, port: ${deadPort} }, ${node(a)}] }
routes:
  - { id: lc, paths: [/lc], upstream: lc }
  - { id: rr, paths: [/rr], upstream: rr }
  - { id: ch, paths: [/ch], upstream: ch }
  - { id: ch-addr, paths: [/addr], upstream: ch-addr }
  - { id: ch-dead, paths: [/dead], upstream: ch-dead }
`;
}

before(async () => {
  await Promise.all([fast, slow, a, b, c].map((x) => new Promise<void>((r) => x.s.listen(0, '127.0.0.1', r))));
  [ports.node, ports.uws, gw.adminPort, deadPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  gw.write('front.crt', front.cert);
  gw.write('front.key', front.key);
  await gw.start(config(true));
});
after(async () => {
  slow.release();
  await gw.stop();
  for (const x of [fast, slow, a, b, c]) x.s.close();
});

const ask = (engine: 'node' | 'uws', path: string, headers: Record<string, string> = {}) =>
  get(ports[engine], path, { servername: 'app.test', headers });

/**
 * Ten requests one after the other, each sent once the previous one was answered or held
 * by the slow node: how many reached each node.
 */
async function tenRequests(engine: 'node' | 'uws', path: string): Promise<{ fast: number; slow: number }> {
  const n = { fast: 0, slow: 0 };
  const pending: Array<Promise<unknown>> = [];
  for (let i = 0; i < 10; i++) {
    const held = slow.nextHeld().then(() => 'held' as const);
    const p = ask(engine, `${path}/hold/${i}`);
    pending.push(p);
    const r = await Promise.race([p, held]);
    if (r === 'held') n.slow++;
    else {
      assert.equal(r.status, 200);
      assert.equal(r.body, 'fast');
      n.fast++;
    }
  }
  slow.release();
  await Promise.all(pending);
  return n;
}

for (const engine of ENGINES) {
  describe(`balancers (${engine})`, () => {
    test('least_conn: a node holding its requests gets at most one of ten; round robin gives it half', async () => {
      const lc = await tenRequests(engine, '/lc');
      assert.ok(lc.slow <= 1, `least_conn sent ${lc.slow} of 10 to the slow node`);
      assert.equal(lc.fast + lc.slow, 10);
      const rr = await tenRequests(engine, '/rr');
      assert.equal(rr.slow, 5, 'round robin alternates whatever the load');
    });

    test('least_conn: the in-flight count is back to 0 once the held requests end (admin view)', async () => {
      const r = await gw.admin('GET', '/v1/upstreams');
      const lc = r.body.upstreams.find((u: { id: string }) => u.id === 'lc');
      assert.equal(lc.type, 'least_conn');
      for (const n of lc.nodes) assert.equal(n.in_flight, 0, `node ${n.port} still counts requests`);
    });

    test('chash: a key stays on its node, keys spread over the nodes, both engines agree', async () => {
      const where = new Map<string, string>();
      for (let i = 0; i < 30; i++) {
        const key = `user-${i}`;
        const r1 = await ask(engine, '/ch/x', { 'x-user': key });
        const r2 = await ask(engine, `/ch/other/path?i=${i}`, { 'x-user': key });
        const other = await ask(engine === 'node' ? 'uws' : 'node', '/ch/y', { 'x-user': key });
        assert.equal(r1.status, 200);
        assert.equal(r2.body, r1.body, `${key} moved between requests`);
        assert.equal(other.body, r1.body, `${key} maps elsewhere on the other engine`);
        where.set(key, r1.body);
      }
      assert.equal(new Set(where.values()).size, 3, 'thirty keys all on one or two nodes');
    });

    test('chash: without the key header a request hashes on the client address (one node for all)', async () => {
      const seen = new Set<string>();
      for (let i = 0; i < 8; i++) seen.add((await ask(engine, '/ch/nokey')).body);
      assert.equal(seen.size, 1);
      const addr = new Set<string>();
      for (let i = 0; i < 8; i++) addr.add((await ask(engine, '/addr/x')).body);
      assert.equal(addr.size, 1, 'key remote_addr (the default) is one node for one client');
    });

    test('chash: a dead node on the ring is skipped by the retry: every key answers 200', async () => {
      for (let i = 0; i < 20; i++) {
        const r = await ask(engine, '/dead/x', { 'x-user': `k${i}` });
        assert.equal(r.status, 200, `key k${i}: ${r.body}`);
        assert.equal(r.body, 'a');
      }
    });

    test('chash: attacker-chosen keys (empty, 4 KiB, odd bytes) are answered, never crash', async () => {
      const keys = ['', ' ', 'x'.repeat(4096), '\u00ff\u00fe%00', '../../etc', '${jndi:x}', 'a,b', '0'];
      for (const k of keys) {
        const r = await ask(engine, '/ch/x', { 'x-user': k });
        assert.equal(r.status, 200, `key ${JSON.stringify(k.slice(0, 20))}`);
        assert.match(r.body, /^[abc]$/);
      }
      const r = await ask(engine, '/dead/x', { 'x-user': 'k1' });
      assert.equal(r.status, 200);
    });
  });
}

test('chash: removing a node moves only the keys it had; the others keep their node', async () => {
  const keys = Array.from({ length: 80 }, (_, i) => `mover-${i}`);
  const before = new Map<string, string>();
  for (const k of keys) before.set(k, (await ask('node', '/ch/x', { 'x-user': k })).body);
  const onC = keys.filter((k) => before.get(k) === 'c');
  assert.ok(onC.length > 0 && onC.length < keys.length, 'node c owns some of the keys');
  const v = (await gw.status()).version;
  gw.write('gateway.yaml', config(false));
  await gw.waitVersion(v + 1);
  for (const engine of ENGINES) {
    for (const k of keys) {
      const now = (await ask(engine, '/ch/x', { 'x-user': k })).body;
      if (before.get(k) === 'c') assert.match(now, /^[ab]$/, `${k} (was on c)`);
      else assert.equal(now, before.get(k), `${k} moved from ${before.get(k)} to ${now} though its node stayed`);
    }
  }
  gw.write('gateway.yaml', config(true));
  await gw.waitVersion(v + 2);
  for (const k of keys) assert.equal((await ask('uws', '/ch/x', { 'x-user': k })).body, before.get(k), `${k} back`);
});
