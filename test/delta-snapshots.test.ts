// Delta snapshots, worker side, in real worker processes driven over IPC by the test as
// the primary: a worker patched by a chain of deltas (upsert, replace, remove, an SNI
// moved between objects, a new name under a wildcard, default_ssl changed, routes
// changed, an object disabled) serves exactly what a worker built from the full snapshot
// serves, compared by real handshakes (certificate per SNI) and requests (response per
// host and path). A worker not at a delta's base asks for a full snapshot; a delta that
// cannot apply is refused and changes nothing. Both engines.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import { freePort, get, handshake, waitFor } from './helpers/gateway';
import { createCA, server, type Issued } from './helpers/pki';
import { diffSnapshots, encodeDelta } from '../src/snapshot/delta';
import { encodeSnapshot } from '../src/snapshot/codec';
import { defaults } from '../src/config/defaults';
import type { EngineName, ListenerSnapshot, RouteSnapshot, Snapshot, SslSnapshot } from '../src/snapshot/types';
import type { PrimaryMessage, WorkerMessage } from '../src/worker/protocol';

class WorkerProc {
  readonly proc: ChildProcess;
  readonly got: WorkerMessage[] = [];
  stderr = '';
  constructor() {
    this.proc = fork(join(__dirname, 'helpers', 'worker-host.js'), [], {
      serialization: 'advanced',
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: { ...process.env, TLSGATE_LOG_LEVEL: 'warn' },
    });
    this.proc.stderr!.on('data', (d: Buffer) => (this.stderr += d));
    this.proc.on('message', (m) => this.got.push(m as WorkerMessage));
  }
  send(m: PrimaryMessage): void {
    this.proc.send(m);
  }
  full(s: Snapshot): void {
    this.send({ type: 'snapshot', version: s.version, bytes: encodeSnapshot(s) });
  }
  delta(a: Snapshot, b: Snapshot): void {
    this.send({ type: 'delta', base: a.version, version: b.version, bytes: encodeDelta(diffSnapshots(a, b)) });
  }
  /** The first message about `version` (ack, error or resync). */
  answer(version: number): Promise<WorkerMessage> {
    return waitFor(
      () => this.got.find((m) => 'version' in m && m.version === version),
      `worker answer for version ${version}`,
    );
  }
  stop(): void {
    this.proc.kill('SIGKILL');
  }
}

const fp = (pem: string): string => new X509Certificate(pem).fingerprint256;

for (const engine of ['node', 'uws'] as const)
  describe(`delta snapshots, engine ${engine}`, () => {
    const ca = createCA('Delta CA');
    const certs = {
      a1: server(ca, ['a.test', 'x.test']),
      a2: server(ca, ['a.test', 'x.test']),
      b: server(ca, ['b.test']),
      c: server(ca, ['c.test', 'x.test']),
      w: server(ca, ['*.w.test']),
      e: server(ca, ['e.w.test']),
    };
    const ssl = (id: string, snis: string[], c: Issued): SslSnapshot => ({
      id,
      type: 'server',
      snis,
      pairs: [{ cert: c.cert, key: c.key }],
      clientDepth: 0,
      protocols: ['TLSv1.2', 'TLSv1.3'],
      ciphers: defaults.sslCiphers,
      hash: createHash('sha256').update(c.cert).update(c.key).digest('hex'),
    });
    const respond = (id: string, paths: string[], body: string, hosts?: string[]): RouteSnapshot => ({
      id,
      paths,
      ...(hosts ? { hosts } : {}),
      respond: { status: 200, body, headers: {} },
    });
    const listener = (port: number, e: EngineName, defaultSsl?: string): ListenerSnapshot => ({
      name: 'public',
      host: '127.0.0.1',
      port,
      engine: e,
      ...(defaultSsl ? { defaultSsl } : {}),
      sessionTickets: false,
      limits: { maxHeaderCount: 100, maxHeaderBytes: 32_768, maxRequestLine: 8_192, maxBodySize: null },
      timeouts: { handshakeMs: 10_000, requestHeaderMs: 30_000, keepAliveMs: 60_000 },
      maxConnections: 10_000,
    });
    /** Snapshot `version` of the chain, for a worker listening on `port`. */
    const chain = (port: number): Snapshot[] => {
      const a1 = ssl('a', ['a.test', 'x.test'], certs.a1);
      const a2 = ssl('a', ['a.test', 'x.test'], certs.a2);
      const a3 = ssl('a', ['a.test'], certs.a2);
      const b = ssl('b', ['b.test'], certs.b);
      const c1 = ssl('c', ['c.test'], certs.c);
      const c2 = ssl('c', ['c.test', 'x.test'], certs.c);
      const w = ssl('w', ['*.w.test'], certs.w);
      const e = ssl('e', ['e.w.test'], certs.e);
      const sni = (list: SslSnapshot[]): Array<[string, string]> =>
        list.flatMap((s) => s.snis.map((n): [string, string] => [n, s.id]));
      const routes1 = [respond('r1', ['/'], 'one'), respond('r2', ['/api'], 'api', ['a.test'])];
      const routes2 = [respond('r3', ['/new'], 'new'), respond('r1', ['/'], 'two')];
      const steps: Array<{ ssls: SslSnapshot[]; sniOf?: SslSnapshot[]; routes: RouteSnapshot[]; def: string }> = [
        { ssls: [a1, b, w], routes: routes1, def: 'a' }, // 1: start
        { ssls: [a1, b, w, c1], routes: routes1, def: 'a' }, // 2: upsert c
        { ssls: [a2, b, w, c1], routes: routes1, def: 'a' }, // 3: a's certificate replaced
        { ssls: [a2, w, c1], routes: routes1, def: 'a' }, // 4: b removed
        { ssls: [a3, w, c2], routes: routes1, def: 'a' }, // 5: x.test moved from a to c
        { ssls: [a3, w, c2, e], routes: routes1, def: 'a' }, // 6: exact name under an installed wildcard
        { ssls: [a3, w, c2, e], routes: routes1, def: 'c' }, // 7: default_ssl a → c
        { ssls: [a3, w, c2, e], routes: routes2, def: 'c' }, // 8: routes changed, reordered, removed
        { ssls: [a3, w, c2, e], sniOf: [a3, c2, e], routes: routes2, def: 'c' }, // 9: w disabled
      ];
      return steps.map((s, i) => ({
        version: i + 1,
        createdAt: 0,
        listeners: [listener(port, engine, s.def)],
        ssls: s.ssls,
        sni: sni(s.sniOf ?? s.ssls),
        routes: s.routes,
        upstreams: [],
      }));
    };

    const names = ['a.test', 'x.test', 'b.test', 'c.test', 'e.w.test', 'f.w.test', 'A.TEST', 'none.test', ''];
    const paths: Array<[string, string]> = [
      ['a.test', '/'],
      ['a.test', '/api/x'],
      ['c.test', '/new'],
      ['c.test', '/api'],
      ['x.test', '/'],
    ];
    /** What a worker serves: certificate per SNI, response per host and path. */
    const observe = async (port: number): Promise<string[]> => {
      const out: string[] = [];
      for (const n of names) {
        const h = await handshake(port, n ? { servername: n } : {});
        out.push(`${n || '(no sni)'} → ${h.ok ? h.cert!.fingerprint256 : 'refused'}`);
      }
      for (const [host, path] of paths) {
        const r = await get(port, path, { servername: host, host }).catch((e: Error) => ({
          status: 0,
          body: e.message,
        }));
        out.push(`${host}${path} → ${r.status} ${r.body}`);
      }
      return out;
    };

    const patched = new WorkerProc();
    const reference = new WorkerProc();
    let pPort = 0;
    let rPort = 0;
    before(async () => {
      [pPort, rPort] = await Promise.all([freePort(), freePort()]);
    });
    after(() => {
      patched.stop();
      reference.stop();
    });

    test('a worker patched by deltas serves what a worker built from each full snapshot serves', async () => {
      const p = chain(pPort);
      const r = chain(rPort);
      patched.full(p[0]!);
      assert.deepEqual(await patched.answer(1), { type: 'ack', version: 1 });
      for (let k = 0; k < p.length; k++) {
        if (k > 0) {
          patched.delta(p[k - 1]!, p[k]!);
          assert.deepEqual(await patched.answer(k + 1), { type: 'ack', version: k + 1 }, `delta to ${k + 1}`);
        }
        reference.full(r[k]!);
        assert.deepEqual(await reference.answer(k + 1), { type: 'ack', version: k + 1 });
        assert.deepEqual(await observe(pPort), await observe(rPort), `version ${k + 1}`);
      }
      // The chain did change what is served (the comparison is not between two empty sets).
      const last = await observe(pPort);
      assert.ok(last.includes(`x.test → ${fp(certs.c.cert)}`), last.join('\n'));
      assert.ok(last.includes(`b.test → ${fp(certs.c.cert)}`), 'b removed: the default (c) answers');
      assert.ok(last.includes(`f.w.test → ${fp(certs.c.cert)}`), 'w disabled: the default answers');
      assert.ok(last.includes('a.test/ → 200 two'), last.join('\n'));
      assert.ok(last.includes('c.test/new → 200 new'), last.join('\n'));
    });

    test('a fresh worker built from the last full snapshot serves the same as the patched one', async () => {
      const port = await freePort();
      const fresh = new WorkerProc();
      try {
        const s = chain(port);
        fresh.full(s[s.length - 1]!);
        assert.deepEqual(await fresh.answer(s.length), { type: 'ack', version: s.length });
        assert.deepEqual(await observe(pPort), await observe(port));
      } finally {
        fresh.stop();
      }
    });

    test('a delta whose base is not the served version gets a resync request, and nothing changes', async () => {
      const p = chain(pPort);
      const before = await observe(pPort);
      const n = p.length;
      // As if version n + 1 was missed: a delta n + 1 → n + 2.
      const next1 = { ...p[n - 1]!, version: n + 1 };
      const next2 = { ...p[0]!, version: n + 2 };
      patched.delta(next1, next2);
      assert.deepEqual(await patched.answer(n + 2), { type: 'resync', version: n + 2, have: n });
      assert.deepEqual(await observe(pPort), before);
      // The primary's answer: the full snapshot, after which deltas apply again.
      patched.full(next2);
      assert.deepEqual(await patched.answer(n + 2), { type: 'resync', version: n + 2, have: n });
      await waitFor(() => patched.got.filter((m) => m.type === 'ack' && m.version === n + 2).length === 1, 'ack');
      const back = { ...p[n - 1]!, version: n + 3 };
      patched.delta(next2, back);
      await waitFor(() => patched.got.find((m) => m.type === 'ack' && m.version === n + 3), 'ack n + 3');
      assert.deepEqual(await observe(pPort), before);
    });

    test('a delta that cannot apply is refused and the worker keeps serving what it served', async () => {
      const p = chain(pPort);
      const n = p.length + 3;
      const cur = { ...p[p.length - 1]!, version: n };
      const before = await observe(pPort);
      // A route order naming a route the worker does not have: refused as a whole, even
      // though the same delta also replaces a certificate.
      const ssls = cur.ssls.map((s) => (s.id === 'a' ? ssl('a', ['a.test'], certs.a1) : s));
      const bad = { ...cur, version: n + 1, ssls };
      const d = diffSnapshots(cur, bad);
      d.routeOrder = ['r3', 'nope'];
      patched.send({ type: 'delta', base: n, version: n + 1, bytes: encodeDelta(d) });
      const m = await patched.answer(n + 1);
      assert.equal(m.type, 'snapshot-error');
      assert.equal((m as { code: string }).code, 'TLSGATE_E_SNAPSHOT_APPLY');
      assert.deepEqual(await observe(pPort), before);
      // Still at n: the next good delta from n applies.
      const good = { ...bad, version: n + 2 };
      patched.delta(cur, good);
      assert.deepEqual(await patched.answer(n + 2), { type: 'ack', version: n + 2 });
      const after = await observe(pPort);
      assert.ok(after.includes(`a.test → ${fp(certs.a1.cert)}`), after.join('\n'));
    });
  });
