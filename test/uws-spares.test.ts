// uws: every freed generation's app is reused. uWS never frees an app's own structures, so
// an app not kept as a spare stays allocated for good. With at most 64 spares kept, more than
// 64 generations retired within the reap delay (an installed name rotated faster than about
// 2 a second: the cert-rotation bench's soak) made the next rotations create new apps, and
// worker RSS grew with the rotations made (~42 KB each). Found by the bench soak; this
// reproduces it: 80 generations retired and freed, then one rotation per spare must each reuse
// a freed app (uses > 1), and every rotation still serves the new certificate.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { Gateway, freePort, handshake, waitFor } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

const ROTATIONS = 80; // more than the old cap of 64 spares

/** One worker, one uws listener, one SSL object `<n>.test` read from files; rotate() makes a generation. */
function uwsOne(n: string): {
  gw: Gateway;
  rotated: () => Array<{ generation?: number; uses?: number }>;
  rotate: () => Promise<void>;
} {
  const ca = createCA(`${n} CA`);
  const first = server(ca, [`${n}.test`]);
  const gw = new Gateway();
  let port = 0;
  before(async () => {
    [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
    gw.write(`${n}.crt`, first.cert);
    gw.write(`${n}.key`, first.key);
    await gw.start(`
  workers: 1
  standby_worker: false
  log: { level: debug }
  admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
  listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: uws }]
  ssls: [{ id: ${n}, snis: [${n}.test], cert: "$file://${n}.crt", key: "$file://${n}.key" }]
  routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
  `);
  });
  after(() => gw.stop());
  const rotated = (): Array<{ generation?: number; uses?: number }> =>
    gw.logs.filter((l) => l.msg === 'uws generation rotated') as Array<{ generation?: number; uses?: number }>;
  /** Install the name in the current generation (a handshake), then replace its certificate: a new generation. */
  async function rotate(): Promise<void> {
    const before = rotated().length;
    const h = await handshake(port, { servername: `${n}.test` });
    assert.equal(h.ok, true, h.error);
    const { version } = await gw.status();
    const next = server(ca, [`${n}.test`], { key: createPrivateKey(first.key) });
    gw.write(`${n}.crt`, next.cert);
    await gw.waitVersion(version + 1, 15_000);
    await waitFor(() => rotated().length > before || undefined, 'a new generation');
    const served = await handshake(port, { servername: `${n}.test` });
    assert.equal(served.cert?.fingerprint256, new X509Certificate(next.cert).fingerprint256);
  }
  return { gw, rotated, rotate };
}

describe('uws: every freed app is reused as a later generation', () => {
  const { gw, rotated, rotate } = uwsOne('s0');

  test(`${ROTATIONS} retired generations freed, then as many rotations as spares all reuse one`, async (t) => {
    for (let i = 0; i < ROTATIONS; i++) await rotate();
    const freed = (): number => gw.logs.filter((l) => l.msg === 'uws generation freed').length;
    // Every retired generation freed (one "freed" per "rotated"): all apps but the current one are spares.
    await waitFor(() => freed() >= rotated().length || undefined, 'every retired generation freed', 120_000, 250);
    // Apps made so far: the first generation's and each rotation's that did not reuse a spare.
    const apps = 1 + rotated().filter((l) => (l.uses ?? 1) < 2).length;
    const spares = apps - 1;
    // On a slow machine the first batch outlives the 30 s reap delay and reuses spares itself,
    // so fewer than 64 apps exist and the old cap is not reached: still checked, but weaker.
    if (spares <= 64) t.diagnostic(`only ${spares} spares (the old cap was 64): the cap is not exercised`);
    const before = rotated().length;
    for (let i = 0; i < spares; i++) await rotate();
    const second = rotated().slice(before);
    assert.equal(second.length, spares);
    const fresh = second.filter((l) => (l.uses ?? 1) < 2).map((l) => l.generation);
    assert.deepEqual(fresh, [], 'generations that made a new app instead of reusing a freed one');
  });
});

// More than 32 generations retired within the 30 s reap delay: those idle for 2 s are freed at
// each rotation and their apps reused, so a burst of rotations does not leave one app per
// rotation allocated for good (the bench's 1,000-rotation soak: +29 MB per worker before).
describe('uws: a burst of rotations frees idle retired generations before the reap delay', () => {
  const { rotated, rotate } = uwsOne('b0');

  test('60 rotations: freed generations are reused within the burst, each rotation serves its certificate', async (t) => {
    const t0 = performance.now();
    for (let i = 0; i < 60; i++) await rotate();
    const s = (performance.now() - t0) / 1000;
    // A burst longer than the 30 s delay reuses apps even without the pressure rule: then this proves less.
    if (s > 25) t.diagnostic(`the burst took ${s.toFixed(1)} s: the 30 s reap may have freed generations too`);
    const reused = rotated().filter((l) => (l.uses ?? 1) >= 2).length;
    assert.ok(reused > 0, `no generation reused a freed app in ${rotated().length} rotations (${s.toFixed(1)} s)`);
  });
});
