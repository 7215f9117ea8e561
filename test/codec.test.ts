// The snapshot codec as a worker decodes it: what it saves in memory (identical PEMs, cipher
// and protocol lists held once; no view of the message kept alive; SSL objects decoded on
// first use) changes no value, so a worker built from a decoded snapshot serves exactly what
// the primary compiled, and a worker patched by deltas holds what a fresh one would.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { decodeSnapshot, encodeSnapshot } from '../src/snapshot/codec';
import { diffSnapshots, decodeDelta, encodeDelta } from '../src/snapshot/delta';
import { LazySsl } from '../src/snapshot/lazy-ssl';
import { Model } from '../src/worker/model';
import type { Snapshot, SslSnapshot } from '../src/snapshot/types';

// One key shared by every object (as in the bench's 10k fixtures), made here: no key in the tree.
const KEY = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  .privateKey.export({ type: 'pkcs8', format: 'pem' })
  .toString();

function ssl(i: number, o: Partial<SslSnapshot> = {}): SslSnapshot {
  return {
    id: `s${i}`,
    type: 'server',
    snis: [`h${i}.test`],
    pairs: [{ cert: `-----BEGIN CERTIFICATE-----\n${i}\n-----END CERTIFICATE-----\n`, key: KEY }],
    clientDepth: 1,
    protocols: ['TLSv1.2', 'TLSv1.3'],
    ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256',
    hash: `h${i}`,
    ...o,
  };
}

function snapshot(): Snapshot {
  return {
    version: 7,
    createdAt: 1,
    ssls: [
      ssl(0),
      ssl(1),
      ssl(2, { protocols: ['TLSv1.3'], clientCa: 'CA', clientCrl: 'CRL' }),
      ssl(3, { clientCa: 'CA' }),
    ],
    sni: [['h0.test', 's0'], ['h1.test', 's1'], ['h2.test', 's2'], ['h3.test', 's3']],
    upstreams: [],
    routes: [],
    listeners: [],
    ticketKeys: new Uint8Array(48).map((_, i) => i),
  } as unknown as Snapshot;
}

/** An SSL object as plain fields (a LazySsl decoded), for deep comparison. */
const plain = (o: SslSnapshot): SslSnapshot => (o instanceof LazySsl ? o.materialize() : o);

test('a decoded snapshot equals the encoded one, field by field', () => {
  const s = snapshot();
  const d = decodeSnapshot(encodeSnapshot(s));
  assert.deepEqual(Buffer.from(d.ticketKeys!), Buffer.from(s.ticketKeys!));
  assert.ok(d.ssls.every((o) => o instanceof LazySsl), 'SSL objects are decoded on first use');
  assert.deepEqual({ ...d, ssls: d.ssls.map(plain), ticketKeys: undefined }, { ...s, ticketKeys: undefined });
  // Shared lists stay separate values: a change to one object's list would not leak to another.
  assert.deepEqual(d.ssls[2]!.protocols, ['TLSv1.3']);
  assert.deepEqual(d.ssls[0]!.protocols, ['TLSv1.2', 'TLSv1.3']);
});

test('the ticket keys are a copy, not a view that keeps the whole message alive', () => {
  const s = snapshot();
  // Big enough that a view of it is told apart from a 48-byte copy.
  (s.ssls as SslSnapshot[]).push(...Array.from({ length: 200 }, (_, i) => ssl(10 + i)));
  const bytes = encodeSnapshot(s);
  const d = decodeSnapshot(bytes);
  assert.equal(d.ticketKeys!.byteLength, 48);
  assert.ok(d.ticketKeys!.buffer.byteLength < bytes.byteLength, 'ticketKeys holds its own 48 bytes');
});

test('bytes that are not a snapshot are refused', () => {
  const bytes = encodeSnapshot({ nope: 1 } as unknown as Snapshot);
  assert.throws(() => decodeSnapshot(bytes), /do not decode to a snapshot/);
});

test('id, type, hash and "has a client CA" are read without decoding the object', () => {
  const s = snapshot();
  (s.ssls as SslSnapshot[]).push(ssl(9, { type: 'client' }));
  const d = decodeSnapshot(encodeSnapshot(s));
  for (const [i, o] of d.ssls.entries()) {
    const want = s.ssls[i]!;
    assert.equal(o.id, want.id);
    assert.equal(o.type, want.type);
    assert.equal(o.hash, want.hash);
    assert.equal((o as LazySsl).hasClientCa, want.clientCa !== undefined);
    // Read without a decode: an object without a CA says so from its index bits.
    if (want.clientCa === undefined) assert.equal(o.clientCa, undefined);
  }
  assert.equal(d.ssls[3]!.clientCa, 'CA');
  assert.equal(d.ssls[2]!.clientCrl, 'CRL');
});

test('past the decoded objects kept, an object decoded again holds the same values', () => {
  const s = snapshot();
  // More objects than a snapshot keeps decoded (4096): the first ones are dropped and decoded again.
  (s.ssls as SslSnapshot[]).push(...Array.from({ length: 5000 }, (_, i) => ssl(100 + i)));
  const d = decodeSnapshot(encodeSnapshot(s));
  const first = d.ssls.map(plain);
  assert.deepEqual(first, s.ssls);
  // Every object decoded twice now (the first ones after having been dropped), same values.
  assert.deepEqual(d.ssls.map(plain), s.ssls);
  // Identical PEMs are one string across objects (the shared key of the table).
  assert.equal(new Set(first.map((o) => o.pairs[0]!.key)).size, 1);
});

test('a model patched by deltas holds what a model built from the last full snapshot holds', () => {
  const v1 = snapshot();
  const many = Array.from({ length: 50 }, (_, i) => ssl(100 + i));
  const steps: Snapshot[] = [{ ...v1, ssls: [...v1.ssls, ...many], sni: sniOf([...v1.ssls, ...many]) }];
  const next = (f: (ssls: SslSnapshot[]) => SslSnapshot[]): void => {
    const prev = steps[steps.length - 1]!;
    const ssls = f([...prev.ssls]);
    steps.push({ ...prev, version: prev.version + 1, ssls, sni: sniOf(ssls) });
  };
  // Replace one object's certificate, remove one, add one, move a name, then replace again.
  next((l) => l.map((o) => (o.id === 's120' ? ssl(120, { pairs: [{ cert: 'NEW', key: KEY }], hash: 'n120' }) : o)));
  next((l) => l.filter((o) => o.id !== 's1'));
  next((l) => [...l, ssl(999)]);
  next((l) => l.map((o) => (o.id === 's0' ? ssl(0, { snis: ['h0.test', 'h1.test'], hash: 'm0' }) : o)));
  next((l) => l.map((o) => (o.id === 's120' ? ssl(120, { pairs: [{ cert: 'NEWER', key: KEY }], hash: 'o120' }) : o)));
  const patched = Model.fromSnapshot(decodeSnapshot(encodeSnapshot(steps[0]!)));
  for (let k = 1; k < steps.length; k++) {
    patched.patch(decodeDelta(encodeDelta(diffSnapshots(steps[k - 1]!, steps[k]!))));
  }
  const last = steps[steps.length - 1]!;
  const fresh = Model.fromSnapshot(decodeSnapshot(encodeSnapshot(last)));
  const view = (m: Model): unknown => ({
    version: m.version,
    ssls: [...m.ssls.values()].map(plain).sort((a, b) => a.id.localeCompare(b.id)),
    sni: [...m.sniTable()].sort(),
    hashes: [...m.hashRefs].sort(),
    mtls: m.mtlsCount,
  });
  // Objects the deltas never touched are still undecoded in the patched model until read here.
  assert.ok(patched.ssls.get('s130') instanceof LazySsl);
  assert.deepEqual(view(patched), view(fresh));
  assert.deepEqual(view(fresh), view(Model.fromSnapshot(last)));
  // The removed object stays removed; its name now belongs to s0.
  assert.equal(patched.ssls.has('s1'), false);
  assert.deepEqual([...patched.sniTable()].filter(([p]) => p === 'h1.test'), [['h1.test', 's0']]);
  assert.equal(plain(patched.ssls.get('s120')!).pairs[0]!.cert, 'NEWER');
});

function sniOf(ssls: SslSnapshot[]): Array<[string, string]> {
  return ssls.flatMap((o) => o.snis.map((n): [string, string] => [n, o.id]));
}
