// The snapshot codec as a worker decodes it: what it saves in memory (identical PEMs, cipher
// and protocol lists held once; no view of the message kept alive) changes no value, so a
// worker built from a decoded snapshot serves exactly what the primary compiled.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { decodeSnapshot, encodeSnapshot } from '../src/snapshot/codec';
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

test('a decoded snapshot equals the encoded one, field by field', () => {
  const s = snapshot();
  const d = decodeSnapshot(encodeSnapshot(s));
  assert.deepEqual(Buffer.from(d.ticketKeys!), Buffer.from(s.ticketKeys!));
  assert.deepEqual({ ...d, ticketKeys: undefined }, { ...s, ticketKeys: undefined });
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
