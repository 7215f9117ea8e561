// The warm standby worker (standby_worker, on by default): it holds the current state
// (full snapshot, then deltas like the others) without listening; a killed worker's place
// goes to it, and it accepts only once it holds the current version. With one worker, every
// handshake after the kill is served by the replacement, so a stale certificate would show.
// Both engines; then standby_worker: false (a killed worker is forked again).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Gateway, freePort, handshake, waitFor } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;

interface Status {
  version: number;
  workers: Array<{ pid: number; version: number }>;
  standby?: { pid: number; version: number };
}

const status = async (gw: Gateway): Promise<Status> => (await gw.admin('GET', '/v1/status')).body as Status;

for (const engine of ['node', 'uws'] as const)
  describe(`standby worker, engine ${engine}`, () => {
    const ca = createCA('Standby CA');
    const names = ['s0.test', 's1.test'];
    const certs = names.map((n) => server(ca, [n]));
    const gw = new Gateway();
    let port = 0;

    before(async () => {
      [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
      certs.forEach((c, i) => {
        gw.write(`s${i}.crt`, c.cert);
        gw.write(`s${i}.key`, c.key);
      });
      const ssls = names
        .map((n, i) => `    - { id: s${i}, snis: [${n}], cert: "$file://s${i}.crt", key: "$file://s${i}.key" }`)
        .join('\n');
      await gw.start(`
  workers: 1
  admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
  listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: ${engine} }]
  ssls:
${ssls}
  routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
  `);
    });
    after(() => gw.stop());

    /** The standby, once it holds `version`. */
    const standbyAt = (version: number): Promise<{ pid: number; version: number }> =>
      waitFor(async () => {
        const s = await status(gw);
        return s.standby && s.standby.version >= version ? s.standby : undefined;
      }, `a standby holding version ${version}`, 20_000);

    /** Rotate s0's certificate; resolves once the serving worker acked the new version. */
    const rotate = async (): Promise<string> => {
      const { version } = await status(gw);
      const next = server(ca, [names[0]!]);
      gw.write('s0.key', next.key);
      gw.write('s0.crt', next.cert);
      await gw.waitVersion(version + 1, 15_000);
      certs[0] = next;
      return fp(next.cert);
    };

    test('the standby holds the current version and is not a serving worker', async () => {
      const s0 = await status(gw);
      const sb = await standbyAt(s0.version);
      assert.equal(s0.workers.length, 1);
      assert.ok(!s0.workers.some((w) => w.pid === sb.pid), 'the standby is not listed among serving workers');
      // It follows deltas: a rotation reaches it too.
      await rotate();
      const s1 = await status(gw);
      assert.equal((await standbyAt(s1.version)).pid, sb.pid);
      const h = await handshake(port, { servername: names[0] });
      assert.equal(h.cert?.fingerprint256, fp(certs[0]!.cert));
    });

    test('a killed worker is replaced by the standby, which serves the current version at once', async () => {
      const want = await rotate();
      const s0 = await status(gw);
      const sb = await standbyAt(s0.version);
      const victim = s0.workers[0]!.pid;
      process.kill(victim, 'SIGKILL');
      // One worker: every handshake that succeeds from now on is the replacement's. None may be stale.
      const seen: string[] = [];
      await waitFor(async () => {
        const h = await handshake(port, { servername: names[0] });
        if (h.ok) seen.push(h.cert!.fingerprint256);
        return seen.length >= 3;
      }, 'three handshakes served by the replacement', 20_000, 5);
      assert.deepEqual(new Set(seen), new Set([want]), 'every handshake after the kill: the current certificate');
      const s1 = await waitFor(async () => {
        const s = await status(gw);
        return s.workers.length === 1 && s.workers[0]!.pid !== victim && s.workers[0]!.version === s.version
          ? s
          : undefined;
      }, 'the replacement acked');
      assert.equal(s1.workers[0]!.pid, sb.pid, 'the standby took the dead worker\'s place');
      assert.equal(s1.version, s0.version, 'a promotion is not a new snapshot');
      // A new standby behind it, at the current version, and the promoted worker takes deltas.
      const next = await standbyAt(s1.version);
      assert.notEqual(next.pid, sb.pid);
      const again = await rotate();
      const h = await handshake(port, { servername: names[0] });
      assert.equal(h.cert?.fingerprint256, again);
      const h1 = await handshake(port, { servername: names[1] });
      assert.equal(h1.cert?.fingerprint256, fp(certs[1]!.cert));
    });

    test('a worker killed right after a change: the replacement never serves the previous certificate', async () => {
      const s0 = await status(gw);
      await standbyAt(s0.version);
      const before = fp(certs[0]!.cert);
      const next = server(ca, [names[0]!]);
      gw.write('s0.key', next.key);
      gw.write('s0.crt', next.cert);
      // Killed as soon as the new version is acked, while the standby may still be applying it.
      await gw.waitVersion(s0.version + 1, 15_000);
      const victim = (await status(gw)).workers[0]!.pid;
      process.kill(victim, 'SIGKILL');
      certs[0] = next;
      const seen: string[] = [];
      await waitFor(async () => {
        const h = await handshake(port, { servername: names[0] });
        if (h.ok) seen.push(h.cert!.fingerprint256);
        return seen.length >= 3;
      }, 'three handshakes served by the replacement', 20_000, 5);
      assert.ok(!seen.includes(before), 'no handshake after the kill presents the previous certificate');
      assert.deepEqual(new Set(seen), new Set([fp(next.cert)]));
    });
  });

describe('standby_worker: false', () => {
  const ca = createCA('No Standby CA');
  const site = server(ca, ['site.test']);
  const gw = new Gateway();
  let port = 0;

  before(async () => {
    [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
    gw.write('site.crt', site.cert);
    gw.write('site.key', site.key);
    await gw.start(`
  workers: 1
  standby_worker: false
  admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
  listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: node }]
  ssls: [{ id: site, snis: [site.test], cert: "$file://site.crt", key: "$file://site.key" }]
  routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
  `);
  });
  after(() => gw.stop());

  test('no standby; a killed worker is forked again and serves', async () => {
    const s0 = await status(gw);
    assert.equal(s0.standby, undefined);
    process.kill(s0.workers[0]!.pid, 'SIGKILL');
    await waitFor(async () => {
      const s = await status(gw);
      return s.workers.length === 1 && s.workers[0]!.pid !== s0.workers[0]!.pid && s.workers[0]!.version === s.version;
    }, 'a new worker serving', 20_000);
    const h = await handshake(port, { servername: 'site.test' });
    assert.equal(h.cert?.fingerprint256, fp(site.cert));
    assert.equal((await status(gw)).standby, undefined);
  });
});
