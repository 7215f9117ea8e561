// `tlsgate start` reads its config file once: the log settings, config_store and the first
// build all read the same ConfigSource. Proved by changing the file on disk after it was read:
// every reader still answers from what was read, and a fresh read sees the change.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../src/errors';
import { loadConfigFile } from '../src/config/load';
import { ConfigSource } from '../src/config/source';
import { readLogSettings, readStoreDecl } from '../src/store/settings';

const dir = mkdtempSync(join(tmpdir(), 'tlsgate-source-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const config = (level: string, extra = ''): string => `log: { level: ${level} }
listeners: [{ name: l, listen: "127.0.0.1:1" }]
${extra}`;
const STORE = 'config_store: { etcd: { endpoints: ["http://127.0.0.1:2379"], prefix: /tg } }\n';

test('a source read once serves the log settings, config_store and the build after the file changed', async () => {
  const file = join(dir, 'gateway.yaml');
  writeFileSync(file, config('debug', STORE));
  const source = await ConfigSource.read(file);
  writeFileSync(file, 'listeners: [ {\n');
  assert.equal(readLogSettings(source).level, 'debug');
  assert.deepEqual((await readStoreDecl(source))?.etcd.endpoints, ['http://127.0.0.1:2379']);
  const loaded = await loadConfigFile(file, undefined, { source });
  assert.equal(loaded.config.listeners[0]!.name, 'l');
  // The file as it is now: the broken text is reported, not the source's.
  await assert.rejects(loadConfigFile(file), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.issues[0]!.code, 'TLSGATE_E_CONFIG_PARSE');
    return true;
  });
  assert.equal(await readStoreDecl(file), undefined);
});

test('a source of another file is not used; an unreadable one reports as the build did', async () => {
  const a = join(dir, 'a.yaml');
  const b = join(dir, 'b.yaml');
  writeFileSync(a, config('warn'));
  writeFileSync(b, config('error'));
  const source = await ConfigSource.read(a);
  assert.equal((await loadConfigFile(b, undefined, { source })).text, config('error'));
  const missing = await ConfigSource.read(join(dir, 'missing.yaml'));
  assert.deepEqual(readLogSettings(missing), { level: 'info' });
  assert.equal(await readStoreDecl(missing), undefined);
  await assert.rejects(loadConfigFile(missing.file, undefined, { source: missing }), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.issues[0]!.code, 'TLSGATE_E_CONFIG_READ');
    assert.equal(e.issues[0]!.message, 'cannot read the config file (ENOENT)');
    return true;
  });
});
