// The directory watch of ssl_dirs, on the real FileWatch and real files: any name in a
// watched directory is a change (dotfiles too: a Kubernetes volume swaps `..data`), and a
// directory that changed between its read and the watch being armed is reported at once.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileWatch } from '../src/primary/file-watch';
import { dirSignature } from '../src/config/ssl-dirs';

const root = mkdtempSync(join(tmpdir(), 'tlsgate-dirwatch-'));
after(() => rmSync(root, { recursive: true, force: true }));

function watcher(): { w: FileWatch; next: () => Promise<string[]> } {
  const queue: string[][] = [];
  let wake: (() => void) | undefined;
  const w = new FileWatch({
    onStable: (paths) => {
      queue.push(paths);
      wake?.();
    },
    onError: (err) => assert.fail(err),
  });
  const next = async (): Promise<string[]> => {
    while (queue.length === 0) await new Promise<void>((r) => (wake = r));
    return queue.shift()!;
  };
  return { w, next };
}

test('a directory changed between its read and the watch is reported when the watch is armed', async () => {
  const dir = mkdtempSync(join(root, 'armed-'));
  writeFileSync(join(dir, 'a.pem'), 'one');
  const signature = dirSignature(dir);
  writeFileSync(join(dir, 'b.pem'), 'added before the watch');
  const { w, next } = watcher();
  try {
    w.set([], [{ path: dir, signature }]);
    assert.deepEqual(await next(), [dir]);
  } finally {
    w.close();
  }
});

test('an unchanged directory is not reported when armed; any name written in it is', async () => {
  const dir = mkdtempSync(join(root, 'events-'));
  writeFileSync(join(dir, 'a.pem'), 'one');
  const { w, next } = watcher();
  try {
    w.set([], [{ path: dir, signature: dirSignature(dir) }]);
    writeFileSync(join(dir, '..data'), 'a dotfile, as a Kubernetes volume swaps');
    const first = await next();
    // The first report is the write: the arming reported nothing.
    assert.ok(first.includes(join(dir, '..data')), first.join(', '));
    assert.ok(!first.includes(dir), 'the directory itself was not marked at arming');
  } finally {
    w.close();
  }
});
