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

const problems = (raw: unknown): string =>
  validateConfig(raw, '/tmp/x.yaml').issues.map((i) => `${i.path}: ${i.message}`).join('\n');
const LISTENERS = [{ name: 'a', listen: '127.0.0.1:1' }];

test('rules inside one object still run when one of its fields is refused (every problem at once)', () => {
  const out = problems({
    listeners: [{ name: 'bad name!', listen: '127.0.0.1:1', engine: 'uws', session_tickets: false }],
    routes: [{ id: 'bad id!', upstream: 'u', respond: { status: 204, body: 'x' } }],
  });
  assert.match(out, /listeners\[0\]\.name: "bad name!" must be 1-64 characters/);
  assert.match(out, /listeners\[0\]\.session_tickets: uws cannot turn session tickets off/);
  assert.match(out, /routes\[0\]\.id: "bad id!" must be 1-64 characters/);
  assert.match(out, /routes\[0\]: has both upstream and respond/);
  assert.match(out, /routes\[0\]\.respond\.body: must be empty: a 204 response has no content/);
});

test('secret_providers use the same checks: did-you-mean, expected shape, no literal credential echoed', () => {
  const token = 'hvs.do-not-print-me';
  const out = problems({
    listeners: LISTENERS,
    secret_providers: [
      { id: 'v', type: 'vault', address: 'https://vault:8200', auth: { token }, refresh_intervall: '5s' },
      { id: 'a', type: 'aws', region: 'eu-west-1', max_attempts: 11, tls: 'yes' },
      { id: 'b', type: 'vault', address: 'https://vault:8200', auth: { token: 7 } },
    ],
  });
  assert.match(out, /secret_providers\[0\]\.refresh_intervall: unknown field; did you mean "refresh_interval"\?/);
  assert.match(out, /secret_providers\[0\]\.auth\.token: is a literal in the config/);
  assert.match(out, /secret_providers\[1\]\.max_attempts: must be between 1 and 10, got 11/);
  assert.match(out, /secret_providers\[1\]\.tls: must be a mapping \{ca\}, got "yes"/);
  assert.match(out, /secret_providers\[2\]\.auth\.token: must be a non-empty string, got 7/);
  assert.ok(!out.includes(token), out);
});

test('a listener override is checked like the top-level field it overrides', () => {
  const out = problems({
    timeouts: { handshake: '50ms' },
    listeners: [{ name: 'a', listen: '127.0.0.1:1', timeouts: { keepalive: '2h' }, limits: { max_header_count: 0 } }],
  });
  assert.match(out, /^timeouts\.handshake: must be between 100ms and 1h, got 50 ms/m);
  assert.match(out, /listeners\[0\]\.timeouts\.keepalive: must be between 100ms and 1h, got 7200000 ms/);
  assert.match(out, /listeners\[0\]\.limits\.max_header_count: must be between 1 and 1000, got 0/);
});

test('a mapping left empty (null) is reported; an empty scalar is absent', () => {
  const out = problems({ admin: null, log: null, listeners: [{ name: 'a', listen: '127.0.0.1:1', limits: null }] });
  assert.match(out, /^admin: must be a mapping \{listen, api_keys, tls\}, got null/m);
  assert.match(out, /^log: must be a mapping \{level, file\}, got null/m);
  assert.match(out, /listeners\[0\]\.limits: must be a mapping \{max_header_count, /);
  const ok = validateConfig({ warn_days: null, listeners: [{ name: 'a', listen: '127.0.0.1:1', engine: null }] }, '/x');
  assert.ok(ok.config, JSON.stringify(ok.issues));
  assert.equal(ok.config.warn_days, defaultOf('warn_days'));
});
