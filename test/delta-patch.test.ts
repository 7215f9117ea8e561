// The rotation path's O(change) hint (compile.ts `sslPatch`: the new SSL table is the old one
// with some indices replaced) must give exactly what the full passes give: the same delta,
// the same table digest. A hint that does not describe the two tables is ignored.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { diffSnapshots, sniById } from '../src/snapshot/delta';
import { CompileCache, sslTableDigest, type SslPatch } from '../src/snapshot/compile';
import type { Snapshot, SslSnapshot } from '../src/snapshot/types';

const N = 700; // three digest chunks (256 objects each)

const ssl = (i: number, material: string, snis = [`h${i}.test`]): SslSnapshot => ({
  id: `s${i}`,
  type: 'server',
  snis,
  pairs: [{ cert: `cert ${i} ${material}`, key: 'key' }],
  clientDepth: 0,
  protocols: ['TLSv1.3'],
  ciphers: 'TLS_AES_128_GCM_SHA256',
  hash: createHash('sha256').update(`${i} ${material}`).digest('hex'),
});

function snapshot(ssls: SslSnapshot[], version: number, sni: Snapshot['sni']): Snapshot {
  return { version, createdAt: version, listeners: [], routes: [], upstreams: [], ssls, sni };
}

function table(): { a: Snapshot; ssls: SslSnapshot[]; status: string[] } {
  const ssls = Array.from({ length: N }, (_, i) => ssl(i, 'v1'));
  const sni = ssls.flatMap((s) => s.snis.map((n): [string, string] => [n, s.id]));
  return { a: snapshot(ssls, 1, sni), ssls, status: ssls.map(() => 'enabled') };
}

/** `a`'s table with these indices replaced: a new certificate, the same one again (same hash), none. */
function patched(a: Snapshot): { b: Snapshot; patch: SslPatch } {
  const ssls = a.ssls.slice();
  ssls[3] = ssl(3, 'v2'); // new certificate
  ssls[300] = ssl(300, 'v1'); // recompiled, same material: not in the delta
  ssls[699] = ssl(699, 'v2');
  return { b: snapshot(ssls, 2, a.sni), patch: { from: a.ssls, indices: [3, 300, 699, 512] } };
}

describe('O(change) rotation hint', () => {
  test('the delta with the hint equals the delta of the full pass', () => {
    const { a } = table();
    const { b, patch } = patched(a);
    const full = diffSnapshots(a, b);
    const fast = diffSnapshots(a, b, sniById(a), sniById(b), patch);
    assert.deepEqual(fast, full);
    assert.deepEqual(
      fast.upsert.map((u) => (u.collection === 'ssls' ? u.value.id : u.collection)),
      ['s3', 's699'],
    );
  });

  test('a hint that is not about these two tables is ignored (full pass)', () => {
    const { a } = table();
    const { b } = patched(a);
    const full = diffSnapshots(a, b);
    // From another table (a lagging worker's base): would miss index 3.
    const stale = { from: a.ssls.slice(), indices: [699] };
    assert.deepEqual(diffSnapshots(a, b, sniById(a), sniById(b), stale), full);
    // Indices whose ids do not match (a reordered table): the passes, not a wrong delta.
    const moved = b.ssls.slice();
    [moved[10], moved[11]] = [moved[11]!, moved[10]!];
    const c = snapshot(moved, 3, a.sni);
    const wrong = { from: a.ssls, indices: [10] };
    assert.deepEqual(diffSnapshots(a, c, sniById(a), sniById(c), wrong), diffSnapshots(a, c));
  });

  test('the table digest with the hint equals the digest computed from scratch', () => {
    const { a, status } = table();
    const { b, patch } = patched(a);
    const cache = new CompileCache();
    sslTableDigest(cache, a.ssls, status);
    const fast = sslTableDigest(cache, b.ssls, status, patch);
    assert.equal(fast, sslTableDigest(new CompileCache(), b.ssls, status));
    assert.notEqual(fast, sslTableDigest(new CompileCache(), a.ssls, status));
    // A hint whose base is not the last digest's table: computed from the objects.
    const other = new CompileCache();
    sslTableDigest(other, b.ssls, status);
    const next = b.ssls.slice();
    next[5] = ssl(5, 'v3');
    const wrong = sslTableDigest(other, next, status, { from: a.ssls, indices: [] });
    assert.equal(wrong, sslTableDigest(new CompileCache(), next, status));
  });
});
