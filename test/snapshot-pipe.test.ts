// A worker's snapshot pipe (full snapshots, not over IPC): snapshots written back to back, in
// one write or split anywhere, are read each exactly, in order, whatever the chunking; a pipe
// that ends mid-snapshot is an error, not a short snapshot.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { waitFor } from './helpers/gateway';
import { WORKER_SNAPSHOT_FD } from '../src/worker/protocol';

type Answer = { size: number; sha: string } | { error: string };

function reader(): { send: (size: number) => void; pipe: Writable; got: Answer[]; stop: () => void } {
  const child = fork(join(__dirname, 'helpers', 'pipe-reader.js'), [], {
    stdio: ['ignore', 'ignore', 'inherit', 'ipc', 'ignore', 'pipe'],
    serialization: 'advanced',
  });
  const got: Answer[] = [];
  child.on('message', (m) => got.push(m as Answer));
  const pipe = (child.stdio as unknown[])[WORKER_SNAPSHOT_FD] as Writable;
  pipe.on('error', () => undefined);
  return { send: (size) => child.send({ size }), pipe, got, stop: () => child.kill('SIGKILL') };
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

test('snapshots written back to back are each read exactly, in order', async () => {
  const r = reader();
  try {
    // Sizes around the 64 KB read chunks, so snapshots start and end inside a chunk.
    const parts = [1, 65_535, 65_536, 65_537, 3 * 65_536 + 17, 10, 1_000_000].map((n) => randomBytes(n));
    for (const p of parts) r.send(p.length);
    // All in one write: the reader splits the chunks at the snapshots' bounds.
    r.pipe.write(Buffer.concat(parts.slice(0, 4)));
    // The rest split at odd places, across snapshots.
    const rest = Buffer.concat(parts.slice(4));
    for (let at = 0; at < rest.length; at += 77_777) r.pipe.write(rest.subarray(at, at + 77_777));
    await waitFor(() => r.got.length === parts.length, 'every snapshot read');
    assert.deepEqual(r.got, parts.map((p) => ({ size: p.length, sha: sha(p) })));
  } finally {
    r.stop();
  }
});

test('bytes written before their snapshot is asked for are kept for it', async () => {
  const r = reader();
  try {
    const a = randomBytes(200_000);
    const b = randomBytes(300_000);
    r.pipe.write(Buffer.concat([a, b]));
    r.send(a.length);
    await waitFor(() => r.got.length === 1, 'first snapshot read');
    r.send(b.length);
    await waitFor(() => r.got.length === 2, 'second snapshot read');
    assert.deepEqual(r.got, [{ size: a.length, sha: sha(a) }, { size: b.length, sha: sha(b) }]);
  } finally {
    r.stop();
  }
});

test('a pipe that ends mid-snapshot is an error', async () => {
  const r = reader();
  try {
    r.send(100_000);
    r.pipe.end(randomBytes(50_000));
    await waitFor(() => r.got.length === 1, 'an answer');
    assert.ok('error' in r.got[0]!, JSON.stringify(r.got[0]));
  } finally {
    r.stop();
  }
});
