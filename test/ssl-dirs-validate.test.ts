// `tlsgate validate` with ssl_dirs: a bad file is a warning naming it (the config stays
// valid, as a reload would apply it); what refuses a reload refuses validate (exit 1):
// an unreadable directory, a duplicate entry, a `dir:` reference that is not served or of
// the wrong type, mTLS on a uws listener. Expired and wrong-EKU files are refused one by one.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from './helpers/gateway';
import { client, createCA, server } from './helpers/pki';

const dir = mkdtempSync(join(tmpdir(), 'tlsgate-ssldirs-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const ca = createCA('Dirs CA');
const day = 86_400_000;
const good = server(ca, ['good.test']);
const expired = server(ca, ['old.test'], { notBefore: new Date(Date.now() - 40 * day), notAfter: new Date(Date.now() - day) });
const clientOnly = client(ca, 'svc');
const wrongEku = client(ca, 'eku', { dns: ['eku.test'] });
mkdirSync(join(dir, 'srv'));
mkdirSync(join(dir, 'cli'));
mkdirSync(join(dir, 'twins'));
const first = server(ca, ['twin.test', 'a.twin.test']);
const second = server(ca, ['twin.test', 'b.twin.test']);
const third = server(ca, ['twin.test']);
const wide = server(ca, ['*.com', 'ok.wide.test']);
writeFileSync(join(dir, 'twins', '1.pem'), first.cert + first.key);
writeFileSync(join(dir, 'twins', '2.pem'), second.cert + second.key);
writeFileSync(join(dir, 'twins', '3.pem'), third.cert + third.key);
writeFileSync(join(dir, 'twins', 'wide.pem'), wide.cert + wide.key);
writeFileSync(join(dir, 'twins', 'forged\nwarning: all good.pem'), wide.cert + wide.key);
writeFileSync(join(dir, 'srv', 'good.pem'), good.cert + good.key);
writeFileSync(join(dir, 'srv', 'old.pem'), expired.cert + expired.key);
writeFileSync(join(dir, 'srv', 'eku.pem'), wrongEku.cert + wrongEku.key);
writeFileSync(join(dir, 'cli', 'svc.crt'), clientOnly.cert);
writeFileSync(join(dir, 'cli', 'svc.key'), clientOnly.key);
writeFileSync(join(dir, 'ca.pem'), ca.cert);

function validate(yaml: string): Promise<{ code: number; out: string }> {
  const file = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, yaml);
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, 'validate', '--config', file], (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }),
    );
  });
}

const config = (dirs: string, listener = '', upstreams = ''): string => `
listeners: [{ name: public, listen: 127.0.0.1:8443${listener} }]
ssl_dirs: ${dirs}
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]
${upstreams}`;

test('bad files are warnings naming the file; the good ones count; exit 0', async () => {
  const r = await validate(config('[{ id: s, path: srv }]', ', default_ssl: "dir:s:good.pem"'));
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /valid — 1 listener\(s\), 1 ssl\(s\), 1 sni\(s\)/);
  assert.match(r.out, /warning: ssl_dirs\[0\] \S+\/srv\/old\.pem: .*expired on .*refused; not served \[TLSGATE_E_CERT_EXPIRED\]/);
  assert.match(r.out, /warning: ssl_dirs\[0\] \S+\/srv\/eku\.pem: .*lacks serverAuth.*\[TLSGATE_E_CERT_EKU\]/);
  assert.ok(!r.out.includes('PRIVATE KEY'));
});

test('a directory that cannot be read refuses the config, naming the entry', async () => {
  const r = await validate(config('[{ path: missing }, { path: srv/good.pem }]'));
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /ssl_dirs\[0\]\.path: cannot read the directory \S+\/missing \(ENOENT\) \[TLSGATE_E_SSL_DIR\]/);
  assert.match(r.out, /ssl_dirs\[1\]\.path: cannot read the directory \S+\/good\.pem \(ENOTDIR\) \[TLSGATE_E_SSL_DIR\]/);
});

test('two entries with one path or one id are refused', async () => {
  const r = await validate(config(`[{ id: a, path: srv }, { id: b, path: "${join(dir, 'srv')}" }, { id: a, path: cli }]`));
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /ssl_dirs\[1\]\.path: \S+ is also ssl_dirs\[0\] \[TLSGATE_E_DUPLICATE_ID\]/);
  assert.match(r.out, /ssl_dirs\[2\]\.id: "a" is also the id of ssl_dirs\[0\] \[TLSGATE_E_DUPLICATE_ID\]/);
});

test('a dir: reference without any ssl_dirs is refused', async () => {
  const r = await validate(`
listeners: [{ name: public, listen: 127.0.0.1:8443, default_ssl: "dir:0:x.pem" }]
routes: [{ id: r, paths: [/], respond: { status: 200, body: ok } }]`);
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /listeners\[0\]\.default_ssl: "dir:0:x\.pem" is not an SSL object served from ssl_dirs/);
});

test('dir: references: a served object of the right type passes; a refused or missing one fails', async () => {
  const up = (id: string): string => `upstreams: [{ id: u, scheme: https, nodes: [{ host: 127.0.0.1, port: 9443 }],
  tls: { client_ssl: "${id}" } }]`;
  const ok = await validate(config('[{ id: s, path: srv }, { id: c, path: cli, type: client }]', '', up('dir:c:svc.crt')));
  assert.equal(ok.code, 0, ok.out);
  const missing = await validate(config('[{ id: s, path: srv }]', ', default_ssl: "dir:s:old.pem"'));
  assert.equal(missing.code, 1, missing.out);
  assert.match(missing.out, /listeners\[0\]\.default_ssl: "dir:s:old\.pem" is not an SSL object served from ssl_dirs/);
  const wrong = await validate(config('[{ id: s, path: srv }]', '', up('dir:s:good.pem')));
  assert.equal(wrong.code, 1, wrong.out);
  assert.match(wrong.out, /upstreams\[0\]\.tls\.client_ssl: "dir:s:good\.pem" is an SSL object of type server, not client/);
});

test('mTLS from a directory: refused on a uws listener; client on a type client entry is refused', async () => {
  const uws = await validate(config('[{ path: srv, client: { ca: "$file://ca.pem" } }]', ', engine: uws'));
  if (!/TLSGATE_E_ENGINE_LOAD/.test(uws.out)) {
    assert.equal(uws.code, 1, uws.out);
    assert.match(uws.out, /listeners\[0\]\.engine: uws cannot enforce mTLS, but ssl_dirs\[0\] has client\.ca/);
  }
  const cli = await validate(config('[{ path: cli, type: client, client: { ca: "$file://ca.pem" } }]'));
  assert.equal(cli.code, 1, cli.out);
  assert.match(cli.out, /ssl_dirs\[0\]\.client: client CA \(mTLS\) applies to server SSL objects only/);
});

test('unknown fields of an entry are named', async () => {
  const r = await validate(config('[{ path: srv, wach: true }]'));
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /ssl_dirs\[0\]\.wach: unknown field; did you mean "watch"\?/);
});

test('two files with one SAN: the first in name order keeps it; a file left without a name is not served', async () => {
  const r = await validate(config('[{ id: t, path: twins }]'));
  assert.equal(r.code, 0, r.out);
  // 1.pem: twin.test + a.twin.test; 2.pem: b.twin.test; 3.pem: nothing; wide.pem: ok.wide.test.
  assert.match(r.out, /valid — 1 listener\(s\), 3 ssl\(s\), 4 sni\(s\)/);
  assert.match(r.out, /ssl_dirs\[0\] \S+\/twins\/2\.pem: "twin\.test" is already served by SSL object "dir:t:1\.pem"/);
  assert.match(r.out, /ssl_dirs\[0\] \S+\/twins\/3\.pem: every name of this certificate is served by another SSL object/);
  assert.match(r.out, /ssl_dirs\[0\]\.path: the file name "forged\\nwarning: all good\.pem" holds a control character; not read/);
  assert.ok(!r.out.split('\n').some((l) => l.startsWith('warning: all good')), 'no forged line');
  assert.match(r.out, /ssl_dirs\[0\] \S+\/twins\/wide\.pem: the SAN "\*\.com" is a wildcard over the public suffix "com"; not served \[TLSGATE_E_SNI_INVALID\]/);
});
