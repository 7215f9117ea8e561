// An operator names and labels SSL objects, upstreams and routes (env, team) and asks the
// admin API for the production ones. Labels are bookkeeping: through either engine, not a
// byte of them reaches a client or an upstream. A malformed label or filter is refused.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CertValidator } from '../src/certs/pool';
import { resolveConfig } from '../src/config/resolve';
import { validateConfig } from '../src/config/schema';
import { SecretStore } from '../src/secrets/store';
import { encodeSnapshot } from '../src/snapshot/codec';
import { compileSnapshot } from '../src/snapshot/compile';
import { CLI, Gateway, get } from './helpers/gateway';
import { twoEngineHead, twoEnginePorts, type EnginePorts } from './helpers/two-engines';
import { createCA, server } from './helpers/pki';

const ca = createCA('Labels Test CA');
const prod = server(ca, ['prod.test']);
const stage = server(ca, ['stage.test']);
const gw = new Gateway();
// Distinctive strings: if any shows up on a wire, the test sees it.
const CANARY = 'lblcanary7f3a';
let ports: EnginePorts = { node: 0, uws: 0 };
let upstream: Server;
let upstreamPort = 0;
const seen: string[] = [];

const config = (): string => `${twoEngineHead(gw, ports, 'prod')}ssls:
  - id: prod
    name: "Production site ${CANARY}-name"
    desc: "the one customers see ${CANARY}-desc"
    labels: { env: prod, team: web, canary: ${CANARY}-ssl }
    snis: [prod.test]
    cert: "$file://prod.crt"
    key: "$file://prod.key"
  - { id: stage, labels: { env: stage, team: web }, snis: [stage.test], cert: "$file://stage.crt", key: "$file://stage.key" }
upstreams:
  - { id: app, name: "App ${CANARY}", labels: { env: prod, canary: ${CANARY}-up }, nodes: [{ host: 127.0.0.1, port: ${upstreamPort} }] }
  - { id: spare, labels: { env: stage }, nodes: [{ host: 127.0.0.1, port: ${upstreamPort} }] }
routes:
  - { id: api, name: "API ${CANARY}", desc: "d ${CANARY}", labels: { env: prod, canary: ${CANARY}-route }, paths: [/api], upstream: app }
  - { id: ping, labels: { env: prod, team: ops, canary: ${CANARY}-ping }, paths: [/ping], respond: { status: 200, body: pong } }
  - { id: rest, paths: [/], upstream: spare }
`;

before(async () => {
  upstream = createServer((req, res) => {
    seen.push(req.rawHeaders.join('\n') + '\n' + req.url);
    res.end('upstream');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  upstreamPort = (upstream.address() as { port: number }).port;
  ports = await twoEnginePorts(gw);
  gw.write('prod.crt', prod.cert);
  gw.write('prod.key', prod.key);
  gw.write('stage.crt', stage.cert);
  gw.write('stage.key', stage.key);
  await gw.start(config());
});
after(async () => {
  await gw.stop();
  await new Promise((r) => upstream.close(r));
});

const ids = (list: Array<{ id: string }>): string[] => list.map((x) => x.id).sort();

test('name, desc and labels are shown on ssls, upstreams and routes', async () => {
  const s = (await gw.admin('GET', '/v1/ssls/prod')).body;
  assert.equal(s.name, `Production site ${CANARY}-name`);
  assert.equal(s.desc, `the one customers see ${CANARY}-desc`);
  assert.deepEqual(s.labels, { env: 'prod', team: 'web', canary: `${CANARY}-ssl` });
  const stageSsl = (await gw.admin('GET', '/v1/ssls/stage')).body;
  assert.deepEqual([stageSsl.name, stageSsl.desc, stageSsl.labels], [null, null, { env: 'stage', team: 'web' }]);
  const ups = (await gw.admin('GET', '/v1/upstreams')).body.upstreams;
  assert.deepEqual(ups.find((u: { id: string }) => u.id === 'app').labels, { env: 'prod', canary: `${CANARY}-up` });
  const routes = (await gw.admin('GET', '/v1/routes')).body.routes;
  assert.deepEqual(ids(routes), ['api', 'ping', 'rest']);
  const api = routes.find((r: { id: string }) => r.id === 'api');
  assert.deepEqual([api.name, api.desc, api.upstream], [`API ${CANARY}`, `d ${CANARY}`, 'app']);
  assert.deepEqual(routes.find((r: { id: string }) => r.id === 'rest').labels, {});
});

test('?label=key:value filters; repeated labels must all hold; ?label=key asks for the key', async () => {
  const q = async (path: string): Promise<string[]> => {
    const r = await gw.admin('GET', path);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return ids(r.body.ssls ?? r.body.upstreams ?? r.body.routes);
  };
  assert.deepEqual(await q('/v1/ssls?label=env:prod'), ['prod']);
  assert.deepEqual(await q('/v1/ssls?label=team:web'), ['prod', 'stage']);
  assert.deepEqual(await q('/v1/ssls?label=team:web&label=env:stage'), ['stage']);
  assert.deepEqual(await q('/v1/ssls?label=team:web&label=env:qa'), []);
  assert.deepEqual(await q('/v1/ssls?label=canary'), ['prod']);
  assert.deepEqual(await q('/v1/ssls?label=env:pro'), [], 'values match whole, not as prefixes');
  assert.deepEqual(await q('/v1/upstreams?label=env:prod'), ['app']);
  assert.deepEqual(await q('/v1/routes?label=env:prod'), ['api', 'ping']);
  assert.deepEqual(await q('/v1/routes?label=env:prod&label=team:ops'), ['ping']);
  assert.deepEqual(await q('/v1/routes?label=team'), ['ping']);
  // Labels inherited from nothing: an object without labels never matches a filter.
  assert.deepEqual(await q('/v1/routes?label=env'), ['api', 'ping']);
});

test('a malformed or unknown filter is a 400, never "no filter"', async () => {
  const bad = [
    '/v1/ssls?label=',
    '/v1/ssls?label=:prod',
    '/v1/ssls?label=env:',
    '/v1/ssls?label=env:pr%20od',
    '/v1/ssls?label=bad%20key:x',
    '/v1/ssls?label=env%0d%0aX-Injected:1',
    '/v1/ssls?labels=env:prod',
    '/v1/ssls?label=env:prod&name=x',
    `/v1/upstreams?label=${'k'.repeat(65)}:v`,
    `/v1/routes?label=env:${'v'.repeat(65)}`,
  ];
  for (const path of bad) {
    const r = await gw.admin('GET', path);
    assert.equal(r.status, 400, path);
    assert.equal(r.body.error.code, 'TLSGATE_E_ADMIN_QUERY', path);
    assert.ok(!('ssls' in r.body || 'routes' in r.body || 'upstreams' in r.body), path);
  }
});

test('through both engines, no label, name or desc reaches the upstream or the client', async () => {
  for (const port of [ports.node, ports.uws]) {
    for (const path of ['/api/x', '/ping', '/other']) {
      const r = await get(port, path, { servername: 'prod.test', ca: ca.cert });
      assert.equal(r.status, 200, `${port} ${path}`);
      const wire = JSON.stringify(r.headers) + r.body;
      assert.ok(!wire.includes(CANARY), `client saw a label on ${path}: ${wire}`);
    }
  }
  assert.ok(seen.length >= 4, `upstream saw ${seen.length} requests`);
  for (const h of seen) assert.ok(!h.includes(CANARY), `upstream saw a label: ${h}`);
});

test('the snapshot the workers get holds no label, name or desc', async () => {
  const meta = (what: string) => ({ name: `${what} ${CANARY}`, desc: CANARY, labels: { canary: `${CANARY}-${what}` } });
  const raw = {
    listeners: [{ name: 'n', listen: '127.0.0.1:8443' }],
    ssls: [{ id: 's', ...meta('ssl'), snis: ['prod.test'], cert: prod.cert, key: prod.key }],
    upstreams: [{ id: 'u', ...meta('up'), nodes: [{ host: '127.0.0.1', port: 1 }] }],
    routes: [{ id: 'r', ...meta('route'), paths: ['/'], upstream: 'u' }],
  };
  const v = validateConfig(raw, join(gw.dir, 'x.yaml'));
  assert.ok(v.config, JSON.stringify(v.issues));
  const store = new SecretStore({ logger: { warn: () => undefined } });
  const validator = new CertValidator(1);
  try {
    const c = await compileSnapshot(await resolveConfig(v.config, store), validator);
    const bytes = Buffer.from(encodeSnapshot({ ...c.snapshot, version: 1, createdAt: 0, ticketKeys: Buffer.alloc(48) }));
    assert.ok(bytes.length > 1000);
    assert.ok(!bytes.includes(CANARY), 'a label, name or desc is in the snapshot');
  } finally {
    await validator.close();
    await store.close();
  }
});

test('validate refuses bad labels, names and descriptions with their paths', async () => {
  const many = Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, 'v']));
  const file = join(gw.dir, 'bad-labels.yaml');
  writeFileSync(file, `
listeners: [{ name: public, listen: 127.0.0.1:8443 }]
ssls:
  - { id: a, snis: [a.test], cert: "$file://prod.crt", key: "$file://prod.key",
      labels: { "bad key": x, env: "has space", "-lead": x, "a:b": x, ok: [1] } }
upstreams:
  - { id: u, labels: ${JSON.stringify(many)}, name: "line\\nbreak", nodes: [{ host: 127.0.0.1, port: 1 }] }
routes:
  - { id: r, labels: [env], desc: "${'d'.repeat(257)}", name: "${'n'.repeat(101)}", paths: [/], respond: { status: 200 } }
`);
  const out = await new Promise<string>((resolve) =>
    execFile(process.execPath, [CLI, 'validate', '--config', file], (_e, o, er) => resolve(o + er)));
  assert.match(out, /ssls\[0\]\.labels\["bad key"\]: label key "bad key" must be 1-64 letters/);
  assert.match(out, /ssls\[0\]\.labels\["env"\]: label value "has space" must be 1-64/);
  assert.match(out, /ssls\[0\]\.labels\["-lead"\]: label key/);
  assert.match(out, /ssls\[0\]\.labels\["a:b"\]: label key/);
  assert.match(out, /ssls\[0\]\.labels\["ok"\]: must be a string, got a list/);
  assert.match(out, /upstreams\[0\]\.labels: has 17 labels; at most 16/);
  assert.match(out, /upstreams\[0\]\.name: must not hold control/);
  assert.match(out, /routes\[0\]\.labels: must be a mapping, got a list/);
  assert.match(out, /routes\[0\]\.desc: must be at most 256 characters, got 257/);
  assert.match(out, /routes\[0\]\.name: must be at most 100 characters, got 101/);
});
