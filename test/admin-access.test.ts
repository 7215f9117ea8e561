// An operator hands out three admin keys: a viewer (dashboards), an editor (CI that writes
// SSL objects, upstreams and routes) and the admin key. Every key is tried against every
// admin endpoint, including the ones this gateway does not route yet (writes): the role is
// decided by method and path before any route. Keys change roles live; every write and
// every refused write is in the audit log with the key's id and content hashes, never a key.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { adminRoutes } from '../src/primary/admin-routes';
import type { Primary } from '../src/primary/primary';
import { CLI, Gateway, freePort, waitFor } from './helpers/gateway';
import { createCA, server } from './helpers/pki';

const ca = createCA('Access Test CA');
const site = server(ca, ['site.test']);
const gw = new Gateway();
const EDITOR_KEY = 'editor-key-' + Math.random().toString(36).slice(2);
const VIEWER_KEY = 'viewer-key-' + Math.random().toString(36).slice(2);
const LATE_KEY = 'late-key-' + Math.random().toString(36).slice(2);
const ADMIN_ID = `sha256:${createHash('sha256').update(gw.apiKey).digest('hex').slice(0, 8)}`;
let port = 0;

type Role = 'viewer' | 'editor' | 'admin';
const config = (viewerRole: Role = 'viewer', extra = ''): string => `
workers: 1
admin:
  listen: 127.0.0.1:${gw.adminPort}
  api_keys:
    - "${gw.apiKey}"
    - { id: ci-editor, key: "$env://TLSGATE_T_EDITOR_KEY", role: editor }
    - { id: dash, key: "${VIEWER_KEY}", role: ${viewerRole} }
${extra}
audit: { path: audit.log }
listeners: [{ name: public, listen: 127.0.0.1:${port} }]
ssls: [{ id: site, snis: [site.test], cert: "$file://site.crt", key: "$file://site.key" }]
upstreams: [{ id: up, nodes: [{ host: 127.0.0.1, port: 9 }] }]
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
`;

before(async () => {
  [port, gw.adminPort] = await Promise.all([freePort(), freePort()]);
  gw.write('site.crt', site.cert);
  gw.write('site.key', site.key);
  await gw.start(config(), { TLSGATE_T_EDITOR_KEY: EDITOR_KEY });
});
after(() => gw.stop());

interface Answer {
  status: number;
  body: { error?: { code: string; message: string } } & Record<string, unknown>;
  headers: Record<string, string | string[] | undefined>;
}

/** Raw request: the path goes out exactly as written (fetch would normalise `..` and `//`). */
function call(method: string, path: string, keys: string[] | string | null): Promise<Answer> {
  const headers: Record<string, string | string[]> = keys === null ? {} : { 'X-API-KEY': keys };
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: gw.adminPort, method, path, headers, agent: false },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => {
          let body: Answer['body'] = {};
          try {
            body = JSON.parse(text);
          } catch {
            /* metrics text, HEAD */
          }
          resolve({ status: res.statusCode ?? 0, body, headers: res.headers });
        });
      });
    req.on('error', reject);
    req.end(method === 'PUT' || method === 'POST' ? '{}' : undefined);
  });
}

const KEYS: Record<Role, string> = { admin: gw.apiKey, editor: EDITOR_KEY, viewer: VIEWER_KEY };
const RANK: Record<Role, number> = { viewer: 0, editor: 1, admin: 2 };

// The policy as an operator reads it in the README, written out per endpoint.
const EXPECTED: Record<string, Role> = {
  'GET /v1/status': 'viewer',
  'GET /v1/ssls': 'viewer',
  'GET /v1/ssls/:id': 'viewer',
  'GET /v1/sni': 'viewer',
  'GET /v1/upstreams': 'viewer',
  'GET /v1/routes': 'viewer',
  'GET /metrics': 'viewer',
  'POST /v1/reload': 'admin',
  'GET /v1/secret_providers': 'admin',
  // Writes, routed or not on this build: the decision comes first.
  'PUT /v1/ssls/:id': 'editor',
  'DELETE /v1/ssls/:id': 'editor',
  'PUT /v1/upstreams/:id': 'editor',
  'DELETE /v1/upstreams/:id': 'editor',
  'PUT /v1/routes/:id': 'editor',
  'DELETE /v1/routes/:id': 'editor',
  'POST /v1/routes': 'editor',
  'PATCH /v1/routes/:id': 'editor',
  'PUT /v1/secret_providers/:id': 'admin',
  'DELETE /v1/secret_providers/:id': 'admin',
  'GET /v1/secret_providers/:id': 'admin',
  'PUT /v1/secrets/:id': 'admin',
  'DELETE /v1/secrets/:id': 'admin',
  'GET /v1/secrets': 'admin',
  'POST /v1/status': 'admin',
  'DELETE /v1/status': 'admin',
  'PUT /v1/listeners/:id': 'admin',
  'OPTIONS /v1/ssls': 'admin',
};

/** For an endpoint added later and not listed above: the README's rule. */
function byRule(method: string, path: string): Role {
  const area = path.split('/')[2] ?? '';
  if (area === 'secrets' || area === 'secret_providers') return 'admin';
  if (method === 'GET') return 'viewer';
  if (['ssls', 'upstreams', 'routes'].includes(area) && ['PUT', 'POST', 'PATCH', 'DELETE'].includes(method)) {
    return 'editor';
  }
  return 'admin';
}

function endpoints(): Array<[string, Role]> {
  const registered = adminRoutes({} as Primary).routes;
  const all = new Map<string, Role>(Object.entries(EXPECTED));
  for (const k of Object.keys(registered)) {
    const [m, p] = k.split(' ') as [string, string];
    if (!all.has(k)) all.set(k, byRule(m, p));
  }
  return [...all];
}

const concrete = (path: string): string => path.replace(':id', 'site') + (path === '/v1/sni' ? '?name=site.test' : '');

test('every key against every admin endpoint: allowed by role, 403 otherwise; no key or a wrong one is 401', async () => {
  const list = endpoints();
  assert.ok(list.length >= 25, `${list.length} endpoints`);
  for (const [endpoint, needed] of list) {
    const [method, path] = endpoint.split(' ') as [string, string];
    for (const role of ['viewer', 'editor', 'admin'] as const) {
      const r = await call(method, concrete(path), KEYS[role]);
      const what = `${role} ${endpoint} → ${r.status} ${JSON.stringify(r.body.error ?? '')}`;
      if (RANK[role] >= RANK[needed]) {
        assert.ok(r.status !== 401 && r.status !== 403, what);
      } else {
        assert.equal(r.status, 403, what);
        assert.equal(r.body.error?.code, 'TLSGATE_E_ADMIN_FORBIDDEN', what);
        assert.match(r.body.error!.message, new RegExp(`has role ${role}; .* needs ${needed}`), what);
      }
    }
    // (Surrounding spaces are not part of a header value: HTTP strips them, as it should.)
    for (const key of [null, 'wrong-key', VIEWER_KEY + 'x', VIEWER_KEY.slice(0, -1), VIEWER_KEY.toUpperCase()]) {
      const r = await call(method, concrete(path), key);
      assert.equal(r.status, 401, `${JSON.stringify(key)} ${endpoint}`);
      assert.equal(r.body.error?.code, 'TLSGATE_E_ADMIN_UNAUTHORIZED');
      assert.match(String(r.headers['www-authenticate']), /^ApiKey /);
    }
  }
  // HEAD is GET: a viewer may, and is refused where GET is.
  assert.equal((await call('HEAD', '/v1/status', VIEWER_KEY)).status, 200);
  assert.equal((await call('HEAD', '/v1/secret_providers', VIEWER_KEY)).status, 403);
  assert.equal((await call('GET', '/healthz', null)).status, 200);
});

test('attacker paths: dot segments, doubled slashes, encodings and two keys do not lift a role', async () => {
  // Each must not be served to the viewer / editor: 403, or 404 where no route matches.
  const tries: Array<[string, string, string]> = [
    [VIEWER_KEY, 'GET', '/v1//secret_providers'],
    [VIEWER_KEY, 'GET', '/v1/secret_providers/'],
    [VIEWER_KEY, 'GET', '/v1/./secret_providers'],
    [VIEWER_KEY, 'GET', '/v1/ssls/../secret_providers'],
    [VIEWER_KEY, 'GET', '/v1/%73ecret_providers'],
    [VIEWER_KEY, 'GET', '/V1/secret_providers'],
    [VIEWER_KEY, 'POST', '/v1/reload/'],
    [VIEWER_KEY, 'POST', '/v1/reload?x=/v1/status'],
    [EDITOR_KEY, 'POST', '/v1//reload'],
    [EDITOR_KEY, 'PUT', '/v1/ssls/../secrets/x'],
    [EDITOR_KEY, 'PUT', '/v1/ssls/%2E%2E/secrets/x'],
    [EDITOR_KEY, 'GET', '/v1/secret_providers'],
  ];
  for (const [key, method, path] of tries) {
    const r = await call(method, path, key);
    assert.ok(r.status === 403 || r.status === 404 || r.status === 405, `${method} ${path} → ${r.status}`);
    assert.ok(!('providers' in r.body) && !('ok' in r.body), `${method} ${path} answered with data`);
  }
  // Viewer and admin keys sent together: not an admin request (the header is one value).
  const both = await call('POST', '/v1/reload', [VIEWER_KEY, gw.apiKey]);
  assert.equal(both.status, 401);
});

test('a role changed in the file applies live; a removed key stops at once', async () => {
  assert.equal((await call('POST', '/v1/reload', VIEWER_KEY)).status, 403);
  const v0 = (await gw.status()).version;
  gw.write('gateway.yaml', config('admin'));
  await gw.waitVersion(v0 + 1);
  await waitFor(async () => (await call('POST', '/v1/reload', VIEWER_KEY)).status === 200, 'viewer promoted');
  const v1 = (await gw.status()).version;
  gw.write('gateway.yaml', config('viewer', `    - { id: late, key: "${LATE_KEY}", role: viewer }`));
  await gw.waitVersion(v1 + 1);
  assert.equal((await call('POST', '/v1/reload', VIEWER_KEY)).status, 403);
  assert.equal((await call('GET', '/v1/status', LATE_KEY)).status, 200);
  const v2 = (await gw.status()).version;
  gw.write('gateway.yaml', config());
  await gw.waitVersion(v2 + 1);
  assert.equal((await call('GET', '/v1/status', LATE_KEY)).status, 401);
});

test('audit: reloads and refused writes name the key id, carry content hashes, never a key', async () => {
  const st = await call('POST', '/v1/reload', gw.apiKey);
  assert.equal(st.status, 200);
  await call('PUT', '/v1/secrets/db', EDITOR_KEY);
  await call('DELETE', '/v1/ssls/gone', VIEWER_KEY);
  const path = join(gw.dir, 'audit.log');
  const lines = await waitFor(() => {
    const l = existsSync(path) ? readFileSync(path, 'utf8').trim().split('\n').map((x) => JSON.parse(x)) : [];
    const seen = (id: string): boolean => l.some((e) => e.id === id);
    return seen('gone') && seen('db') ? l : undefined;
  }, 'audit lines');
  const writes = lines.filter((e: { action: string }) => e.action === 'write');
  const reload = writes.find((e: { object: string; key_id: string }) => e.object === 'reload' && e.key_id === ADMIN_ID);
  assert.ok(reload, JSON.stringify(writes));
  assert.equal(reload.role, 'admin');
  assert.equal(reload.status, 200);
  assert.match(reload.before, /^sha256:[0-9a-f]{64}$/);
  assert.match(reload.after, /^sha256:[0-9a-f]{64}$/);
  assert.equal(reload.actor, `admin-api:${ADMIN_ID}`);
  const secret = writes.find((e: { object: string; id: string }) => e.object === 'secrets' && e.id === 'db');
  assert.deepEqual(
    { key_id: secret.key_id, role: secret.role, method: secret.method, id: secret.id, status: secret.status },
    { key_id: 'ci-editor', role: 'editor', method: 'PUT', id: 'db', status: 403 },
  );
  const del = writes.find((e: { id: string }) => e.id === 'gone');
  assert.equal(del.key_id, 'dash');
  assert.equal(del.method, 'DELETE');
  assert.equal(del.object, 'ssls');
  assert.equal(del.error, 'TLSGATE_E_ADMIN_FORBIDDEN');
  // The reload that changed roles (file watcher) and one an admin asked for name their actor by id.
  assert.ok(lines.every((e: { actor: string }) => !/key-/.test(e.actor)));
  const text = readFileSync(path, 'utf8') + gw.stdout + gw.stderr;
  for (const k of [gw.apiKey, EDITOR_KEY, VIEWER_KEY, LATE_KEY]) assert.ok(!text.includes(k), 'a key leaked');
  // Nor the private key the config references (a line of its base64 body).
  assert.ok(!text.includes(site.key.split('\n')[2]!), 'private key material leaked');
  const refused = gw.logs.find((l) => l.msg === 'admin request refused by role');
  assert.ok(refused, 'refusals are logged');
});

test('validate: roles, ids and duplicate keys are checked with their paths', async () => {
  const file = join(gw.dir, 'bad-keys.yaml');
  writeFileSync(file, `
admin:
  listen: 127.0.0.1:9180
  api_keys:
    - same-key
    - { id: a, key: other-key, role: owner }
    - { id: a, key: same-key, role: viewer }
    - { key: "$env://X", role: editor, secret: yes }
    - { role: viewer }
listeners: [{ name: public, listen: 127.0.0.1:8443 }]
`);
  const out = await new Promise<string>((resolve) =>
    execFile(process.execPath, [CLI, 'validate', '--config', file], (_e, o, er) => resolve(o + er)));
  assert.match(out, /admin\.api_keys\[1\]\.role: must be one of viewer \| editor \| admin, got "owner"/);
  assert.match(out, /admin\.api_keys\[2\]\.id: "a" is also the id of api_keys\[1\] \[TLSGATE_E_DUPLICATE_ID\]/);
  assert.match(out, /admin\.api_keys\[2\]: is the same key as api_keys\[0\] \[TLSGATE_E_DUPLICATE_ID\]/);
  assert.match(out, /admin\.api_keys\[3\]\.secret: unknown field/);
  assert.match(out, /admin\.api_keys\[4\]\.key: is required/);
  assert.ok(!out.includes('same-key') && !out.includes('other-key'), 'a key was echoed');
});
