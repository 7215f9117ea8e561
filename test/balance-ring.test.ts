// The balancers' pure parts (src/proxy/balance.ts), over many keys: the ring's weights,
// that removing or adding a node moves only that node's keys, the walk past skipped nodes,
// and least_conn's order and ties. Deterministic (the hash is not seeded): no flake.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HashRing, hash32, keyReader, pickLeastConn, MAX_RING_POINTS } from '../src/proxy/balance';

const nodes = (spec: Array<[string, number]>) => spec.map(([key, weight]) => ({ key, weight, current: 0 }));
const KEYS = Array.from({ length: 20_000 }, (_, i) => `key-${i}`);
const all = (): boolean => true;

test('ring: keys spread by weight (1:3) and weight 0 owns nothing', () => {
  const ns = nodes([['10.0.0.1:80', 1], ['10.0.0.2:80', 3], ['10.0.0.3:80', 0]]);
  const ring = new HashRing(ns);
  assert.equal(ring.size, 160 * 4);
  const count = [0, 0, 0];
  for (const k of KEYS) count[ring.pick(hash32(k), all)]!++;
  assert.equal(count[2], 0);
  const share = count[1]! / KEYS.length;
  assert.ok(share > 0.65 && share < 0.85, `weight 3 of 4 got ${share}`);
});

test('ring: removing a node moves only its keys; adding one takes keys only for itself', () => {
  const three = nodes([['a:1', 1], ['b:1', 2], ['c:1', 1]]);
  const two = nodes([['a:1', 1], ['b:1', 2]]);
  const r3 = new HashRing(three);
  const r2 = new HashRing(two);
  let moved = 0;
  for (const k of KEYS) {
    const h = hash32(k);
    const before = three[r3.pick(h, all)]!.key;
    const after = two[r2.pick(h, all)]!.key;
    if (before !== 'c:1') assert.equal(after, before, `${k} moved though its node stayed`);
    else moved++;
  }
  assert.ok(moved > 0);
  // The other way round (c added): only keys that land on c change.
  for (const k of KEYS) {
    const h = hash32(k);
    const now = three[r3.pick(h, all)]!.key;
    if (now !== 'c:1') assert.equal(now, two[r2.pick(h, all)]!.key);
  }
});

test('ring: a skipped node sends its keys to the next node clockwise; none accepted: -1', () => {
  const ns = nodes([['a:1', 1], ['b:1', 1], ['c:1', 1]]);
  const ring = new HashRing(ns);
  for (const k of KEYS.slice(0, 2000)) {
    const h = hash32(k);
    const first = ring.pick(h, all);
    const second = ring.pick(h, (i) => i !== first);
    assert.notEqual(second, first);
    // Skipping a node that is not the key's first choice changes nothing.
    const other = (first + 1) % 3;
    assert.equal(ring.pick(h, (i) => i !== other), first);
  }
  assert.equal(ring.pick(hash32('x'), () => false), -1);
  assert.equal(new HashRing([]).pick(1, all), -1);
});

test('ring: very large weights are scaled to the cap, every node keeps points', () => {
  const ring = new HashRing(nodes([['a:1', 10_000], ['b:1', 10_000], ['c:1', 1]]));
  assert.ok(ring.size <= MAX_RING_POINTS + 3);
  const seen = new Set<number>();
  for (const k of KEYS) seen.add(ring.pick(hash32(k), all));
  assert.deepEqual([...seen].sort(), [0, 1, 2]);
});

test('least_conn: fewest in flight per weight; ties by smooth WRR; skipped and excluded nodes', () => {
  const ns = nodes([['a', 2], ['b', 1], ['c', 1]]);
  const inflight = new Int32Array([2, 1, 0]);
  assert.equal(pickLeastConn(ns, inflight, all), 2, 'c has none');
  inflight.set([2, 1, 1]);
  // a: 2/2 = b: 1/1 = c: 1/1: smooth WRR over the three, weights 2:1:1.
  const order = Array.from({ length: 4 }, () => ns[pickLeastConn(ns, inflight, all)]!.key).join('');
  assert.equal([...order].sort().join(''), 'aabc');
  inflight.set([0, 0, 0]);
  assert.equal(pickLeastConn(ns, inflight, (n) => n.key !== 'a', ns[1]), 2, 'a skipped, b excluded');
  assert.ok([0, 2].includes(pickLeastConn(ns, inflight, () => false, ns[1])), 'none eligible: any but the excluded');
  assert.equal(pickLeastConn(nodes([['z', 0]]), new Int32Array(1), all), -1);
});

test('chash keys: header, cookie, argument, uri, host; absent or empty → the client address', () => {
  const req = { rawHeaders: ['Host', 'a.test', 'X-User', 'u1', 'Cookie', 'sid=abc; theme=dark'],
    target: '/p/q?x=1&user=bob', remoteAddress: '10.1.2.3', authority: 'A.test:8443' };
  const k = (hashOn: 'vars' | 'header' | 'cookie', key: string) => keyReader({ type: 'chash', hashOn, key })(req);
  assert.equal(k('header', 'x-user'), 'u1');
  assert.equal(k('vars', 'http_x_user'), 'u1');
  assert.equal(k('cookie', 'theme'), 'dark');
  assert.equal(k('vars', 'cookie_sid'), 'abc');
  assert.equal(k('vars', 'arg_user'), 'bob');
  assert.equal(k('vars', 'uri'), '/p/q');
  assert.equal(k('vars', 'request_uri'), '/p/q?x=1&user=bob');
  assert.equal(k('vars', 'query_string'), 'x=1&user=bob');
  assert.equal(k('vars', 'host'), 'a.test');
  assert.equal(k('vars', 'remote_addr'), '10.1.2.3');
  assert.equal(k('header', 'x-missing'), '10.1.2.3');
  assert.equal(k('vars', 'arg_none'), '10.1.2.3');
  const empty = keyReader({ type: 'chash', hashOn: 'header', key: 'x-e' });
  assert.equal(empty({ ...req, rawHeaders: ['x-e', ''] }), '10.1.2.3');
});
