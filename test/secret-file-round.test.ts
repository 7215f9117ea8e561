// Background re-reads of `$file://` values: a round re-reads only files whose stat changed
// since it last read them (store.ts), so every way of changing a file must still change
// its stat: an in-place rewrite of the same size, a rename over it, a symlink swap.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, renameSync, symlinkSync, writeFileSync, writeSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretStore, type SecretChange } from '../src/secrets/store';
import { MemoryLogger } from './fakes/wait';

describe('$file refresh rounds', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'tlsgate-file-round-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** A store whose own timer (1 h) never fires here: each round is one refresh() call. */
  const make = (changes: SecretChange[]): SecretStore =>
    new SecretStore({
      baseDir: dir,
      env: {},
      logger: new MemoryLogger(),
      fileRefreshInterval: 3_600_000,
      onChange: (c) => changes.push(c),
    });

  it('a same-size rewrite in place, a rename over it, a symlink swap: each seen by the next round', async () => {
    const changes: SecretChange[] = [];
    const s = make(changes);
    writeFileSync(join(dir, 'a.pem'), 'AAAA');
    writeFileSync(join(dir, 'one.pem'), 'ONE1');
    writeFileSync(join(dir, 'two.pem'), 'TWO2');
    symlinkSync(join(dir, 'one.pem'), join(dir, 'link.pem'));
    const refs = ['$file://a.pem', '$file://link.pem'];
    try {
      assert.ok((await s.apply({ providers: [], references: refs, fileRefreshInterval: 3_600_000 })).ok);
      // The first round reads every file (and keeps its stat); nothing changed.
      await s.refresh('$file');
      await s.refresh('$file');
      assert.deepEqual(changes, []);

      // Same size, in place (no rename): only the content, mtime and ctime differ.
      const fd = openSync(join(dir, 'a.pem'), 'r+');
      writeSync(fd, 'BBBB', 0);
      closeSync(fd);
      await s.refresh('$file');
      assert.deepEqual(changes.splice(0), [{ provider: '$file', references: ['$file://a.pem'] }]);
      assert.equal(s.get('$file://a.pem'), 'BBBB');

      writeFileSync(join(dir, 'a.tmp'), 'CCCC');
      renameSync(join(dir, 'a.tmp'), join(dir, 'a.pem'));
      await s.refresh('$file');
      assert.deepEqual(changes.splice(0), [{ provider: '$file', references: ['$file://a.pem'] }]);
      assert.equal(s.get('$file://a.pem'), 'CCCC');

      // certbot-style: the name stays, the link's target changes.
      symlinkSync(join(dir, 'two.pem'), join(dir, 'link.tmp'));
      renameSync(join(dir, 'link.tmp'), join(dir, 'link.pem'));
      await s.refresh('$file');
      assert.deepEqual(changes.splice(0), [{ provider: '$file', references: ['$file://link.pem'] }]);
      assert.equal(s.get('$file://link.pem'), 'TWO2');

      await s.refresh('$file');
      assert.deepEqual(changes, [], 'nothing changed since the last round');
    } finally {
      await s.close();
    }
  });
});
