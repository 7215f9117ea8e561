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
import { fastYaml } from '../src/config/fast-yaml';
import { parseDocument } from 'yaml';

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

// The fast reader (src/config/fast-yaml.ts) must give exactly `yaml`'s data or step aside.
const yamlData = (text: string): { data: unknown; errors: number } => {
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true });
  return { data: doc.errors.length ? undefined : doc.toJS({ maxAliasCount: 100 }), errors: doc.errors.length };
};

/** Read by the fast path: the same data as `yaml`. */
const FAST = [
  'a: 1\nb: text\nc: "quoted"\nd: \'single\'\n',
  'listeners: [{ name: l, listen: 127.0.0.1:8443, engine: node, session_tickets: false }]\n',
  'ssls:\n  - { id: s0, type: server, snis: ["h0.test"], cert: "$file://c/0.crt", key: "$file://k" }\n',
  'ssls:\n- id: a\n  snis: [a.test, "b.test"]\n  labels: { app.example/name: x }\n- id: b\n',
  'a:\n  b:\n    c: [1, 2, [3, {}], []]\n  d: ~\ne: null\nf: true\ng: False\nh:\n',
  '# comment\na: b # trailing\nc: "x # not a comment"\nd: it\'s\ne: a#b\n\n\nf: x:y\n',
  'a: "esc \\" \\\\ \\/ \\n \\t \\u00e9 é"\nb: \'it\'\'s\'\nc: 010\nd: 10s\ne: 1_000\nf: .foo\ng: 1.2.3\n',
  'a: y\nb: x\n',
  'routes:\n  - id: r\n    paths: ["/", "/api"]\n    respond: { status: 200, body: "ok" }\n',
  'a:\n-\n  - x\n- y\nb: [ a , b ]\n',
  'p: /a[0]{1}\nq:\n- key:value\n- ./path\n- id: a\n  snis:\n  - x.test\n  - "*.x.test"\n',
];

/** Outside the fast shape (or refused by `yaml`): the fast path steps aside. */
const SLOW = [
  'a: 1.5\n', 'a: 0x1f\n', 'a: 1e3\n', 'a: -1\n', 'a: .inf\n', 'a: +5\n', 'a: 12345678901234567\n',
  'a: &x b\nc: *x\n', 'a: !!str 1\n', 'a: |\n  text\n', 'a: >\n  text\n', 'a: "\\x41"\n',
  'a: 1\na: 2\n', 'a: { b: 1, b: 2 }\n', 'a: { b: }\n', 'a: [1, 2, ]\n', 'a: b: c\n', 'a: b:\n',
  'a: "x"y\n', '---\na: 1\n', 'a:\tb\n', 'a: 1\r\n', '- a\n', 'x\n', '', 'a: [\n  1]\n',
  'a: multi\n  line\n', '"a": 1\n', 'a: { "b": 1 }\n', '__proto__: { x: 1 }\n', '<<: { x: 1 }\n',
  'true: 1\n', 'a:\n  - x\n  b: y\n', 'a: [b: c]\n', 'a: ["b": c]\n', 'a: - b\n', ' a: 1\n', 'a: b #c\n  d\n',
];

test('the fast YAML reader gives exactly what `yaml` gives, or steps aside', () => {
  for (const text of FAST) {
    const { data, errors } = yamlData(text);
    assert.equal(errors, 0, text);
    assert.deepEqual(fastYaml(text), data, text);
  }
  for (const text of SLOW) assert.equal(fastYaml(text), undefined, JSON.stringify(text));
  // Two documents' keys side by side (renamed so none repeats): still the same data, or aside.
  FAST.forEach((a, i) => {
    const b = FAST[(i + 3) % FAST.length]!.replace(/^(\w+):/gm, 'z_$1:');
    const text = a + b;
    const fast = fastYaml(text);
    if (fast !== undefined) assert.deepEqual(fast, yamlData(text).data, text);
  });
});

test('a bench-style 2k-object file is read fast; a syntax error in it is still named by line and column', async () => {
  const lines = ['log: { level: info }', 'listeners: [{ name: l, listen: "127.0.0.1:1" }]', 'ssls:'];
  for (let i = 0; i < 2000; i++) {
    lines.push(`  - { id: s${i}, type: server, snis: ["h${i}.test"], cert: "$file://c/${i}.crt", key: "$file://k.key" }`);
  }
  const text = lines.join('\n') + '\n';
  const source = ConfigSource.fromText(join(dir, 'many.yaml'), text);
  assert.equal(source.readFast(), true);
  assert.deepEqual(source.value(), yamlData(text).data);
  const broken = text.replace('id: s1500, type: server,', 'id: s1500, type: server,,');
  const file = join(dir, 'broken.yaml');
  writeFileSync(file, broken);
  assert.equal(ConfigSource.fromText(file, broken).readFast(), false);
  await assert.rejects(loadConfigFile(file), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.issues[0]!.code, 'TLSGATE_E_CONFIG_PARSE');
    assert.match(e.issues[0]!.path, /broken\.yaml:1504:\d+$/);
    return true;
  });
});
