// Route matching (issue 17, README "Route matching"): exact paths, segment-aware prefixes,
// APISIX-style "/*", priority ties, methods, and attacker paths that try to reach another
// route than the normalized path names. One gateway, a node and a uws listener: every case
// runs on both engines over real TLS sockets.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, Gateway } from './helpers/gateway';
import { startTwoEngineGateway, type EnginePorts } from './helpers/two-engines';
import { request as httpsRequest } from 'node:https';
import { createCA, server } from './helpers/pki';

const ca = createCA('Routing CA');
const front = server(ca, ['r.test', 's.test', 'a.w.test']);
const gw = new Gateway('tlsgate-routing-');
const ports: EnginePorts = { node: 0, uws: 0 };

const route = (id: string, rest: string): string =>
  `  - { id: ${id}, ${rest}, respond: { status: 200, body: ${id} } }`;

before(async () => {
  Object.assign(ports, await startTwoEngineGateway(gw, front, '[r.test, s.test, a.w.test]', `routes:
${[
    route('root', 'hosts: [r.test, a.w.test], paths: ["/*"]'),
    route('ping', 'hosts: [r.test], paths: ["= /ping"]'),
    route('exact-flag', 'hosts: [r.test], paths: [/e/a, /e/b/], exact: true'),
    route('api', 'hosts: [r.test], paths: [/api]'),
    route('api-v1', 'hosts: [r.test], paths: ["/api/v1/*"]'),
    route('slash', 'hosts: [r.test], paths: [/dir/]'),
    route('star', 'hosts: [r.test], paths: ["/st/*"]'),
    route('admin', 'hosts: [r.test], paths: [/admin], methods: [GET]'),
    // priority: the higher wins among equal paths, before host specificity and file order.
    route('t-first', 'hosts: [r.test], paths: [/t]'),
    route('t-high', 'paths: [/t], priority: 7'),
    route('t-low', 'hosts: [r.test], paths: [/t], priority: -1'),
    // equal path and priority: exact host, then *. host, then any host, then file order.
    route('u-any', 'paths: [/u]'),
    route('u-wild', 'hosts: ["*.w.test"], paths: [/u]'),
    route('u-first', 'hosts: [r.test], paths: [/u]'),
    route('u-second', 'hosts: [r.test], paths: [/u]'),
    // methods: exact GET route beside a POST prefix route; s.test has no catch-all.
    route('m-get', 'hosts: [r.test], paths: ["= /m"], methods: [GET]'),
    route('m-post', 'hosts: [r.test], paths: [/m], methods: [POST]'),
    route('s-get', 'hosts: [s.test], paths: [/x], methods: [GET]'),
    route('s-post', 'hosts: [s.test], paths: [/x], methods: [POST]'),
    route('s-only', 'hosts: [s.test], paths: ["= /only"], methods: [POST]'),
    // Other hosts' routes: the table is above the router's scan size, so the indexed lookup answers here
    // (routing-equivalence.test.ts proves the scan gives the same answers).
    ...Array.from({ length: 30 }, (_, i) => route(`other-${i}`, `hosts: [o${i}.test], paths: ["/*", "= /ping", /api]`)),
  ].join('\n')}
`));
});
after(() => gw.stop());

function send(port: number, method: string, path: string, host: string): Promise<{ status: number; body: string;
  allow: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({
      host: '127.0.0.1', port, path, method, servername: host, headers: { host }, ca: ca.cert, agent: false,
    }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, allow: res.headers.allow }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** The route id that answered (its body), or the status when no route body came back. */
async function who(port: number, path: string, host = 'r.test', method = 'GET'): Promise<string> {
  const r = await send(port, method, path, host);
  return r.status === 200 ? r.body : String(r.status);
}

async function table(port: number, cases: Array<[string, string]>, host = 'r.test'): Promise<void> {
  const got: Array<[string, string]> = [];
  for (const [path] of cases) got.push([path, await who(port, path, host)]);
  assert.deepEqual(got, cases);
}

for (const engine of ['node', 'uws'] as const) describe(`route matching, engine ${engine}`, () => {
  const port = (): number => ports[engine];

  test('an exact path matches itself only: /ping is not /pingpong, /ping/ or /ping/x', async () => {
    await table(port(), [
      ['/ping', 'ping'], ['/ping?x=1', 'ping'], ['/pingpong', 'root'], ['/ping/', 'root'], ['/ping/x', 'root'],
      ['/e/a', 'exact-flag'], ['/e/a/', 'root'], ['/e/b/', 'exact-flag'], ['/e/b', 'root'], ['/e/a/x', 'root'],
    ]);
  });

  test('a prefix matches on segment boundaries: /api is /api, /api/, /api/x, never /apix', async () => {
    await table(port(), [
      ['/api', 'api'], ['/api/', 'api'], ['/api/x', 'api'], ['/api/x/y?q', 'api'], ['/apix', 'root'],
      ['/ap', 'root'], ['/dir', 'slash'], ['/dir/', 'slash'], ['/dir/x', 'slash'], ['/dirx', 'root'],
    ]);
  });

  test('"/*" is every path; "/a/*" is below /a/ only; the longest prefix wins', async () => {
    await table(port(), [
      ['/', 'root'], ['/anything/at/all', 'root'],
      ['/st', 'root'], ['/st/', 'star'], ['/st/x', 'star'], ['/stx', 'root'],
      ['/api/v1', 'api'], ['/api/v1/', 'api-v1'], ['/api/v1/x', 'api-v1'], ['/api/v10', 'api'],
    ]);
  });

  test('priority breaks ties on equal paths, then exact host, *. host, any host, file order', async () => {
    assert.equal(await who(port(), '/t'), 't-high');
    assert.equal(await who(port(), '/t/x'), 't-high');
    assert.equal(await who(port(), '/u'), 'u-first');
    assert.equal(await who(port(), '/u', 'a.w.test'), 'u-wild');
    assert.equal(await who(port(), '/u', 's.test'), 'u-any');
  });

  test('methods + exact: the exact route answers its method, 405 otherwise, never a shorter route', async () => {
    assert.equal(await who(port(), '/m'), 'm-get');
    const post = await send(port(), 'POST', '/m', 'r.test');
    assert.equal(post.status, 405); // the exact /m path wins over the /m prefix, and allows GET only
    assert.equal(post.allow, 'GET');
    assert.equal(await who(port(), '/m/x', 'r.test', 'POST'), 'm-post');
    const getSub = await send(port(), 'GET', '/m/x', 'r.test');
    assert.equal(getSub.status, 405); // not the catch-all "/*"
    assert.equal(getSub.allow, 'POST');
    // Two routes on one path split by method.
    assert.equal(await who(port(), '/x', 's.test', 'GET'), 's-get');
    assert.equal(await who(port(), '/x', 's.test', 'POST'), 's-post');
    const put = await send(port(), 'PUT', '/x', 's.test');
    assert.equal(put.status, 405);
    const only = await send(port(), 'GET', '/only', 's.test');
    assert.equal(only.status, 405);
    assert.equal(only.allow, 'POST');
    assert.equal(await who(port(), '/onlyx', 's.test'), '404');
  });

  test('attacker paths reach the route their normalized path names, no other', async () => {
    await table(port(), [
      ['/api/../admin', 'admin'], ['/x/../ping', 'ping'], ['/%61pi', 'api'], ['/%70ing', 'ping'],
      ['//api', 'api'], ['//ping', 'ping'], ['/./api/x', 'api'], ['/API', 'root'], ['/Ping', 'root'],
      // ";params" and %2F / %5C read as an upstream would: under /api, never the catch-all.
      ['/api;x', 'api'], ['/api;v=1/x', 'api'], ['/api%2fx', 'api'], ['/api%5Cx', 'api'], ['/apix;a', 'root'],
      ['/ping;x', 'ping'], ['/ping%2F', 'root'],
      // A dot segment an upstream could still see is refused before matching.
      ['/api%2f..', '400'], ['/api/..%2fadmin', '400'], ['/api/..;/admin', '400'], ['/%2e%2e/api', '400'],
    ]);
    // The GET-only /admin route cannot be reached with POST through any spelling.
    for (const p of ['/admin', '//admin', '/%61dmin', '/api/../admin', '/admin;x', '/admin%2Fx']) {
      assert.equal((await send(port(), 'POST', p, 'r.test')).status, 405, p);
    }
  });
});

describe('validate: paths syntax, exact, priority', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tlsgate-routing-validate-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const validate = (routes: string): Promise<{ code: number; out: string }> => {
    const file = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
    writeFileSync(file, `listeners: [{ name: public, listen: 127.0.0.1:8443 }]\nroutes:\n${routes}\n`);
    return new Promise((resolve) => {
      execFile(process.execPath, [CLI, 'validate', '--config', file], (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
    });
  };

  test('the accepted forms pass', async () => {
    const r = await validate(route('a', 'paths: ["/*", "= /ping", "=/pong", /api, /api/, "/a/*", "/;x", "/a%2Fb"]') +
      '\n' + route('b', 'paths: [/e], exact: true, priority: 1000000'));
    assert.equal(r.code, 0, r.out);
  });

  test('"*" anywhere but a final "/*", "=" with exact, bad priority and unnormalized paths: each named', async () => {
    const r = await validate([
      route('a', 'paths: ["/api*", "/a/*/b", "*", "/*x", "= /p/*", "api", "/a b", "/a?b"]'),
      route('b', 'paths: ["= /p", /q], exact: true'),
      route('c', 'paths: [/c], priority: 1.5'),
      route('d', 'paths: [/d], priority: 1000001'),
      route('e', 'paths: [/e], priority: "high"'),
      route('f', 'paths: ["/a//b", "/%61", "/a/./b", "/x/..", "/%zz", "/%2e%2e%2Fa"]'),
    ].join('\n'));
    assert.equal(r.code, 1, r.out);
    const expect: RegExp[] = [
      /routes\[0\]\.paths\[0\]: "\/api\*" may hold "\*" only as a final "\/\*"/,
      /routes\[0\]\.paths\[1\]: "\/a\/\*\/b" may hold "\*" only/,
      /routes\[0\]\.paths\[2\]: "\*" must be a path prefix starting with "\/"/,
      /routes\[0\]\.paths\[3\]: "\/\*x" may hold "\*" only/,
      /routes\[0\]\.paths\[4\]: "= \/p\/\*" is an exact path: it cannot hold "\*"/,
      /routes\[0\]\.paths\[5\]: "api" must be a path prefix starting with "\/"/,
      /routes\[0\]\.paths\[6\]: "\/a b" holds a space/,
      /routes\[0\]\.paths\[7\]: "\/a\?b" holds a character that is not allowed/,
      /routes\[1\]\.paths\[0\]: "= \/p" has "=" while the route has exact: true/,
      /routes\[2\]\.priority: must be an integer, got 1\.5/,
      /routes\[3\]\.priority: must be between -1000000 and 1000000, got 1000001/,
      /routes\[4\]\.priority: must be an integer/,
      /routes\[5\]\.paths\[0\]: "\/a\/\/b" is not normalized .*write "\/a\/b"/,
      /routes\[5\]\.paths\[1\]: "\/%61" is not normalized .*write "\/a"/,
      /routes\[5\]\.paths\[2\]: "\/a\/\.\/b" is not normalized .*write "\/a\/b"/,
      /routes\[5\]\.paths\[3\]: "\/x\/\.\." is not normalized .*write "\/"/,
      /routes\[5\]\.paths\[4\]: "\/%zz" is not a valid path/,
      /routes\[5\]\.paths\[5\]: "\/%2e%2e%2Fa" is not a valid path/,
    ];
    for (const e of expect) assert.match(r.out, e);
    assert.doesNotMatch(r.out, /routes\[1\]\.paths\[1\]/);
  });
});

