// The router answers small tables by scanning one sorted array and larger ones through its
// path/host maps (src/routing/router.ts). Both must give the same route for every request:
// compared here on randomized route tables (fixed seed, bounded count), plus the README's rules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Router, matchPath } from '../src/routing/router';
import type { RouteSnapshot } from '../src/snapshot/types';

function rng(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % n;
  };
}

const SEGS = ['a', 'b', 'ab', 'api', 'x'];
const HOSTS = ['h.test', 'a.w.test', 'b.w.test', 'z.test'];

test('scan and maps pick the same route (3000 random tables, 20 requests each)', () => {
  const rnd = rng(17);
  const path = (): string => {
    let p = '';
    for (let i = rnd(4); i > 0; i--) p += '/' + SEGS[rnd(SEGS.length)]!;
    return (p || '/') + (p && rnd(3) === 0 ? '/' : '');
  };
  let compared = 0;
  for (let t = 0; t < 3000; t++) {
    const routes: RouteSnapshot[] = [];
    for (let i = 1 + rnd(12); i > 0; i--) {
      let p = path();
      const kind = rnd(4);
      if (kind === 0) p = '= ' + p;
      else if (kind === 1) p = p.endsWith('/') ? p + '*' : p + '/*';
      const r: RouteSnapshot = { id: `r${routes.length}`, paths: [p], respond: { status: 200, body: '', headers: {} } };
      const h = rnd(4);
      if (h > 0) r.hosts = [['h.test'], ['*.w.test'], ['h.test', '*.w.test']][h - 1]!;
      if (rnd(3) === 0) r.priority = rnd(3);
      if (rnd(3) === 0) r.methods = rnd(2) ? ['GET'] : ['POST'];
      if (rnd(6) === 0) {
        r.exact = true;
        r.paths = [path()];
      }
      routes.push(r);
    }
    const scan = new Router(routes, Infinity);
    const maps = new Router(routes, 0);
    for (let q = 0; q < 20; q++) {
      const host = rnd(5) === 0 ? null : HOSTS[rnd(HOSTS.length)]!;
      const p = path();
      const m = rnd(2) ? 'GET' : 'POST';
      assert.equal(scan.match(host, p, m)?.id, maps.match(host, p, m)?.id, JSON.stringify({ routes, host, p, m }));
      compared++;
    }
  }
  assert.equal(compared, 60_000);
});

test('both lookups on the README rules', () => {
  const R = (id: string, paths: string[], o: Partial<RouteSnapshot> = {}): RouteSnapshot =>
    ({ id, paths, respond: { status: 200, body: '', headers: {} }, ...o });
  const routes = [
    R('root', ['/*']), R('api', ['/api']), R('v1', ['/api/v1/*']), R('ping', ['= /ping']),
    R('lo', ['/t'], { priority: 1 }), R('hi', ['/t'], { priority: 5, hosts: ['*.w.test'] }),
    R('get', ['/m'], { methods: ['GET'], exact: true }), R('post', ['/m'], { methods: ['POST'] }),
  ];
  const cases: Array<[string | null, string, string, string | undefined]> = [
    [null, '/', 'GET', 'root'], [null, '/apix', 'GET', 'root'], [null, '/api', 'GET', 'api'],
    [null, '/api/v1', 'GET', 'api'], [null, '/api/v1/', 'GET', 'v1'], [null, '/ping', 'GET', 'ping'],
    [null, '/pingpong', 'GET', 'root'], ['a.w.test', '/t/x', 'GET', 'hi'], ['h.test', '/t/x', 'GET', 'lo'],
    [null, '/m', 'POST', 'get'], [null, '/m/x', 'GET', 'post'], [null, '/m/x', 'POST', 'post'],
    [null, '/api;v=1/x', 'GET', 'api'], [null, '/api%2Fx', 'GET', 'api'], [null, '*', 'OPTIONS', undefined],
  ];
  for (const max of [0, Infinity]) {
    const r = new Router(routes, max);
    for (const [h, p, m, want] of cases) assert.equal(r.match(h, p, m)?.id, want, `${max} ${h} ${m} ${p}`);
  }
  assert.equal(matchPath('/a;x/b%5Cc;y/'), '/a/b/c/');
});
