// What ssl_dirs keeps between two loads (real files, real certificate checks): a file is
// checked again when anything its checks depend on changes (the entry's type, the day), a
// version kept after a bad replacement is dropped once it expires, and a certificate that
// expires between two loads is refused on its own instead of failing the whole snapshot.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfigText } from '../src/config/load';
import { expandSslDirs, type SslDirState } from '../src/config/ssl-dirs';
import { createCA, server } from './helpers/pki';

const root = mkdtempSync(join(tmpdir(), 'tlsgate-dirstate-'));
after(() => rmSync(root, { recursive: true, force: true }));
const ca = createCA('State CA');
const HOUR = 3_600_000;

function config(dir: string, type = 'server'): ReturnType<typeof parseConfigText>['config'] {
  const text = `
listeners: [{ name: p, listen: 127.0.0.1:8443 }]
ssl_dirs: [{ id: d, path: ${dir}, type: ${type} }]
`;
  return parseConfigText(text, join(root, 'gateway.yaml')).config;
}

test('a certificate that expires between two loads is refused on its own', async () => {
  const dir = join(root, 'expiry');
  mkdirSync(dir);
  const now = Date.now();
  const short = server(ca, ['short.test'], { notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR) });
  const long = server(ca, ['long.test']);
  writeFileSync(join(dir, 'short.pem'), short.cert + short.key);
  writeFileSync(join(dir, 'long.pem'), long.cert + long.key);
  const first = await expandSslDirs(config(dir), undefined, { now });
  assert.deepEqual(first.config.ssls.map((s) => s.id), ['dir:d:long.pem', 'dir:d:short.pem']);
  const later = await expandSslDirs(config(dir), first.state, { now: now + 2 * HOUR });
  assert.deepEqual(later.config.ssls.map((s) => s.id), ['dir:d:long.pem']);
  const why = later.issues.find((i) => i.path.endsWith('short.pem'));
  assert.equal(why?.code, 'TLSGATE_E_CERT_EXPIRED');
  assert.equal(why?.severity, 'warning');
  assert.match(why!.message, /refused; not served/);
});

test('a kept previous version is dropped once it expires', async () => {
  const dir = join(root, 'kept');
  mkdirSync(dir);
  const now = Date.now();
  const v1 = server(ca, ['kept.test'], { notBefore: new Date(now - HOUR), notAfter: new Date(now + HOUR) });
  writeFileSync(join(dir, 'kept.pem'), v1.cert + v1.key);
  const first = await expandSslDirs(config(dir), undefined, { now });
  writeFileSync(join(dir, 'kept.pem'), v1.cert + server(ca, ['kept.test']).key); // mismatched key
  const bad: SslDirState = (await expandSslDirs(config(dir), first.state, { now })).state;
  const keptNow = await expandSslDirs(config(dir), bad, { now });
  assert.deepEqual(keptNow.config.ssls.map((s) => s.id), ['dir:d:kept.pem']);
  assert.match(keptNow.issues[0]!.message, /previous version keeps serving/);
  const expired = await expandSslDirs(config(dir), bad, { now: now + 2 * HOUR });
  assert.deepEqual(expired.config.ssls, []);
  assert.match(expired.issues[0]!.message, /refused; not served/);
});

test('changing the entry type checks the unchanged files again (a server certificate is no client one)', async () => {
  const dir = join(root, 'type');
  mkdirSync(dir);
  const s = server(ca, ['typed.test']);
  writeFileSync(join(dir, 'typed.pem'), s.cert + s.key);
  const first = await expandSslDirs(config(dir), undefined);
  assert.equal(first.config.ssls.length, 1);
  const asClient = await expandSslDirs(config(dir, 'client'), first.state);
  assert.equal(asClient.config.ssls.length, 0);
  assert.equal(asClient.issues[0]?.code, 'TLSGATE_E_CERT_EKU');
});
