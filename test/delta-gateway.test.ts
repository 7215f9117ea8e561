// Delta snapshots through the real primary: one certificate file replaced among several
// objects reaches the workers as a one-object delta; a killed worker comes back on a full
// snapshot and then takes deltas like the others; a bad certificate is refused whole and
// every name keeps its certificate. Both engines.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { Gateway, freePort, handshake, waitFor } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;

for (const engine of ['node', 'uws'] as const)
  describe(`delta snapshots through the primary, engine ${engine}`, () => {
    const ca = createCA('Delta GW CA');
    const names = ['s0.test', 's1.test', 's2.test', 's3.test'];
    const first = names.map((n) => server(ca, [n]));
    const gw = new Gateway();
    let port = 0;

    before(async () => {
      [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
      first.forEach((c, i) => {
        gw.write(`s${i}.crt`, c.cert);
        gw.write(`s${i}.key`, c.key);
      });
      const ssls = names
        .map((n, i) => `    - { id: s${i}, snis: [${n}], cert: "$file://s${i}.crt", key: "$file://s${i}.key" }`)
        .join('\n');
      await gw.start(`
  workers: 2
  log: { level: debug }
  admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
  listeners: [{ name: public, listen: 127.0.0.1:${port}, engine: ${engine} }]
  ssls:
${ssls}
  routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
  `);
    });
    after(() => gw.stop());

    /** Certificate served per name, by several fresh handshakes (both workers answer). */
    const served = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const n of names) {
        const seen = new Set<string>();
        for (let k = 0; k < 4; k++) {
          const h = await handshake(port, { servername: n });
          seen.add(h.ok ? h.cert!.fingerprint256 : `refused ${h.error}`);
        }
        out.push(`${n} → ${[...seen].sort().join(' | ')}`);
      }
      return out;
    };
    const deltaLogs = (version: number): Array<Record<string, unknown>> =>
      gw.logs.filter((l) => l.msg === 'delta applied' && l.version === version);

    test('one certificate file replaced: every worker gets a one-object delta and serves it', async () => {
      const { version } = await gw.status();
      const next = server(ca, ['s2.test']);
      gw.write('s2.key', next.key);
      gw.write('s2.crt', next.cert);
      await waitFor(async () => {
        const s = await gw.status();
        if (!s.workers.every((w) => w.version > version)) return false;
        return (await handshake(port, { servername: 's2.test' })).cert?.fingerprint256 === fp(next.cert);
      }, 'new certificate served');
      const v = (await gw.status()).version;
      const logs = await waitFor(() => (deltaLogs(v).length === 2 ? deltaLogs(v) : undefined), 'both deltas');
      for (const l of logs) assert.deepEqual([l.upsert, l.remove], [1, 0]);
      const expect = names.map((n, i) => `${n} → ${i === 2 ? fp(next.cert) : fp(first[i]!.cert)}`);
      assert.deepEqual(await served(), expect);
      first[2] = next;
    });

    test('a killed worker comes back on a full snapshot, then takes deltas like the others', async () => {
      const st = await gw.status();
      const victim = st.workers[0]!.pid;
      process.kill(victim, 'SIGKILL');
      await waitFor(async () => {
        const s = await gw.status();
        return s.workers.length === 2 && s.workers.every((w) => w.pid !== victim && w.version === st.version);
      }, 'replacement serving the current version');
      const fresh = (await gw.status()).workers.map((w) => w.pid).filter((p) => !st.workers.some((w) => w.pid === p));
      assert.equal(fresh.length, 1);
      const next = server(ca, ['s0.test']);
      gw.write('s0.key', next.key);
      gw.write('s0.crt', next.cert);
      await gw.waitVersion(st.version + 1);
      const v = st.version + 1;
      const logs = await waitFor(() => (deltaLogs(v).length === 2 ? deltaLogs(v) : undefined), 'both deltas');
      assert.ok(logs.some((l) => l.pid === fresh[0]), 'the respawned worker applied the delta');
      first[0] = next;
      assert.deepEqual(await served(), names.map((n, i) => `${n} → ${fp(first[i]!.cert)}`));
    });

    test('a bad certificate is refused with its path, and every name keeps its certificate', async () => {
      const before = await served();
      const { version } = await gw.status();
      const wrongKey = server(ca, ['s1.test']).key;
      gw.write('s1.key', wrongKey);
      const st = await waitFor(async () => {
        const r = await gw.admin('GET', '/v1/status');
        return r.body.last_reload?.ok === false && r.body.last_reload.source === 'file' ? r.body : undefined;
      }, 'refused reload');
      assert.match(st.last_reload.errors.join('\n'), /ssls\[1\]/);
      assert.equal((await gw.status()).version, version);
      assert.deepEqual(await served(), before);
    });
  });
