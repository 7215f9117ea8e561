// The README's field table is generated from the one config declaration: it must list
// every field the schema knows, and be regenerated when the declaration changes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { rows } from '../src/config/decl';
import { CONFIG } from '../src/config/declaration';
import { defaultOf } from '../src/config/defaults';
import { validateConfig } from '../src/config/schema';
import { withTable } from '../src/config/table';
import { ROOT } from './helpers/gateway';

test('README config table matches the declaration (run scripts/config-table.js when this fails)', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  assert.equal(withTable(readme), readme);
});

test('the table has a row for every field validate accepts, and validate refuses a field not in it', () => {
  const paths = rows(CONFIG).map((r) => r.path);
  for (const p of ['workers', 'limits.max_body_size', 'listeners[].limits.max_header_count', 'ssls[].client.crl',
    'upstreams[].nodes[].weight', 'routes[].respond.headers']) {
    assert.ok(paths.includes(p), `no row for ${p}`);
  }
  const r = validateConfig({ listeners: [{ name: 'a', listen: '127.0.0.1:1', limitz: {} }] }, '/tmp/x.yaml');
  assert.match(r.issues.map((i) => `${i.path}: ${i.message}`).join('\n'),
    /listeners\[0\]\.limitz: unknown field; did you mean "limits"\?/);
});

test('defaults come from the declaration: an empty listener gets every declared default', () => {
  const r = validateConfig({ listeners: [{ name: 'a', listen: '127.0.0.1:1' }] }, '/tmp/x.yaml');
  assert.ok(r.config, JSON.stringify(r.issues));
  const l = r.config.listeners[0]!;
  assert.equal(l.engine, defaultOf('listeners[].engine'));
  assert.equal(l.limits.max_header_count, defaultOf('limits.max_header_count'));
  assert.equal(l.timeouts.keepalive, defaultOf('timeouts.keepalive'));
  assert.equal(l.max_connections, defaultOf('max_connections'));
  assert.equal(r.config.log.level, 'info');
});

test('a listener overrides the top-level limits field by field', () => {
  const r = validateConfig({
    limits: { max_header_count: 50, max_body_size: '1k' },
    timeouts: { handshake: '2s' },
    listeners: [{ name: 'a', listen: '127.0.0.1:1', limits: { max_body_size: 'unlimited' }, max_connections: 7 }],
  }, '/tmp/x.yaml');
  assert.ok(r.config, JSON.stringify(r.issues));
  const l = r.config.listeners[0]!;
  assert.deepEqual([l.limits.max_header_count, l.limits.max_body_size, l.timeouts.handshake, l.max_connections],
    [50, null, 2000, 7]);
});
