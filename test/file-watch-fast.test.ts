// The file watch's rename fast path (issue 13), on the real FileWatch, real files and real
// inotify events: a PEM file moved in whole (`mv x.tmp x`) is reported after one probe; a
// file written in place or created and written in chunks keeps the stable window, so its
// first chunk (itself complete PEM) is never reported on its own.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { completePem, FileWatch } from '../src/primary/file-watch';
import { createCA, server } from './helpers/pki';

const root = mkdtempSync(join(tmpdir(), 'tlsgate-fastwatch-'));
after(() => rmSync(root, { recursive: true, force: true }));
const ca = createCA('Fast watch CA');

/** Each report with the content of every reported file as read when it was reported. */
function watcher(quietMs: number): { w: FileWatch; next: (deadlineMs: number) => Promise<Map<string, string> | null> } {
  const queue: Array<Map<string, string>> = [];
  let wake: (() => void) | undefined;
  const w = new FileWatch({
    quietMs,
    onStable: (paths) => {
      queue.push(new Map(paths.map((p) => [p, readFileSync(p, 'utf8')])));
      wake?.();
    },
    onError: (err) => assert.fail(err),
  });
  const next = async (deadlineMs: number): Promise<Map<string, string> | null> => {
    const end = Date.now() + deadlineMs;
    while (queue.length === 0) {
      if (Date.now() > end) return null;
      await new Promise<void>((r) => {
        wake = r;
        setTimeout(r, 50);
      });
    }
    return queue.shift()!;
  };
  return { w, next };
}

/** A child process writes `chunks` into `file` (unlinked first when `fresh`), 100 ms apart. */
function writeInChunks(file: string, chunks: string[], fresh: boolean): Promise<void> {
  const script = `
    const fs = require('node:fs');
    const [file, fresh, ...chunks] = JSON.parse(process.argv[1]);
    if (fresh) fs.unlinkSync(file);
    const fd = fs.openSync(file, 'w');
    chunks.forEach((c, i) => {
      if (i > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 100);
      fs.writeSync(fd, c);
    });
    fs.closeSync(fd);`;
  const child = spawn(process.execPath, ['-e', script, JSON.stringify([file, fresh, ...chunks])], { stdio: 'inherit' });
  return new Promise((resolve, reject) =>
    child.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer exited ${code}`)))),
  );
}

test('complete PEM: whole blocks only', () => {
  const { cert, key } = server(ca, ['a.test']);
  assert.ok(completePem(cert));
  assert.ok(completePem(cert + key));
  assert.ok(!completePem(''));
  assert.ok(!completePem('workers: 2\n'));
  assert.ok(!completePem(cert.slice(0, cert.length - 20)), 'cut inside the END line');
  assert.ok(!completePem(cert.slice(0, cert.length / 2)), 'cut inside the body');
  assert.ok(!completePem(cert + key.slice(0, 40)), 'a second block begun');
});

test('a PEM file replaced by rename is reported without waiting for the stable window', async () => {
  const dir = mkdtempSync(join(root, 'rename-'));
  const file = join(dir, 'site.crt');
  writeFileSync(file, server(ca, ['a.test']).cert);
  // A stable window of 60 s: only the fast path can report within the 10 s deadline.
  const { w, next } = watcher(60_000);
  try {
    w.set([file]);
    for (let round = 0; round < 3; round++) {
      const fresh = server(ca, ['a.test']).cert;
      writeFileSync(`${file}.tmp`, fresh);
      renameSync(`${file}.tmp`, file);
      const got = await next(10_000);
      assert.ok(got, `round ${round}: reported by the fast path`);
      assert.equal(got.get(file), fresh, 'the new file, whole');
    }
  } finally {
    w.close();
  }
});

test('a renamed config (not PEM) keeps the stable window; a PEM renamed with it does not wait', async () => {
  const dir = mkdtempSync(join(root, 'mixed-'));
  const crt = join(dir, 'site.crt');
  const yaml = join(dir, 'gateway.yaml');
  writeFileSync(crt, server(ca, ['a.test']).cert);
  writeFileSync(yaml, 'workers: 1\n');
  const { w, next } = watcher(1_000);
  try {
    w.set([crt, yaml]);
    const fresh = server(ca, ['a.test']).cert;
    writeFileSync(`${yaml}.tmp`, 'workers: 2\n');
    writeFileSync(`${crt}.tmp`, fresh);
    renameSync(`${yaml}.tmp`, yaml);
    renameSync(`${crt}.tmp`, crt);
    const first = await next(10_000);
    assert.deepEqual([...(first ?? new Map()).keys()], [crt], 'the certificate first, on its own');
    const second = await next(10_000);
    assert.deepEqual([...(second ?? new Map()).keys()], [yaml], 'then the config, once stable');
  } finally {
    w.close();
  }
});

for (const how of ['written in place', 'removed, then created and written in chunks'] as const) {
  test(`a chain ${how}: its first chunk (a complete PEM block) is never reported alone`, async () => {
    const dir = mkdtempSync(join(root, 'inplace-'));
    const file = join(dir, 'chain.pem');
    const old = server(ca, ['a.test']);
    writeFileSync(file, old.cert);
    const next = server(ca, ['a.test']);
    const whole = next.cert + ca.cert;
    // 2 s window: the 100 ms pause between the chunks is well inside it.
    const { w, next: report } = watcher(2_000);
    try {
      w.set([file]);
      // Another process writes (this one must keep its event loop running to watch).
      await writeInChunks(file, [next.cert, ca.cert], how !== 'written in place');
      const got = await report(15_000);
      assert.ok(got, 'reported');
      assert.equal(got.get(file), whole, 'the whole chain, never the leaf alone');
      assert.equal(await report(500), null, 'one report');
    } finally {
      w.close();
    }
  });
}
