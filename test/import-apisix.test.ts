// tlsgate import --from apisix: real CLI process, real files, then the real gateway serving the result.
import { strict as assert } from 'node:assert';
import { execFile, spawnSync } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import {
  existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync,
  writeFileSync,
} from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { parse, stringify } from 'yaml';
import { CLI, freePort, Gateway, get } from './helpers/gateway';
import { client, createCA, server, type Issued } from './helpers/pki';

const execFileP = promisify(execFile);
const KEYRING = 'k3y-0123456789ab';
const encrypt = (pem: string, k = KEYRING): string => {
  const c = createCipheriv('aes-128-cbc', Buffer.from(k), Buffer.from(k));
  return Buffer.concat([c.update(pem), c.final()]).toString('base64');
};

interface Pki {
  ca: Issued;
  site: Issued;
  partner: Issued;
  partnerCa: Issued;
  partnerClient: Issued;
  upCa: Issued;
  upServer: Issued;
  gwClient: Issued;
}
let P: Pki;
let webPort = 0;
let securePort = 0;
const servers: Array<http.Server | https.Server> = [];

function run(args: string[]): { status: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, 'import', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

type Obj = Record<string, unknown>;
/** The APISIX objects of a three-site deployment (wildcard site, mTLS partner API, re-encryption). */
function objects(mtls: boolean): { ssls: Obj[]; upstreams: Obj[]; routes: Obj[] } {
  const ssls: Obj[] = [
    { id: 1, snis: ['*.shop.test'], cert: P.site.cert, key: encrypt(P.site.key), labels: { team: 'web' }, status: 1 },
    { id: 9, type: 'client', cert: P.gwClient.cert, key: P.gwClient.key, desc: 'gateway → api' },
  ];
  if (mtls) {
    ssls.push({
      id: 'partner', sni: 'partner.test', cert: P.partner.cert, key: P.partner.key,
      client: { ca: P.partnerCa.cert, depth: 1, skip_mtls_uri_regex: ['/health'] },
      ssl_protocols: ['TLSv1.1', 'TLSv1.3'],
    });
  }
  const upstreams: Obj[] = [
    { id: 1, name: 'web', type: 'roundrobin', nodes: { [`127.0.0.1:${webPort}`]: 1 },
      checks: { active: { http_path: '/', timeout: 2, concurrency: 5, healthy: { interval: 2, successes: 1 },
        unhealthy: { interval: 1, http_failures: 2 } }, passive: { unhealthy: { http_failures: 3 } } },
      timeout: { connect: 2, send: 5, read: 10 }, retries: 2, retry_timeout: 1.5,
      keepalive_pool: { size: 16, idle_timeout: 30, requests: 500 } },
    { id: 'secure', scheme: 'https', type: 'least_conn', pass_host: 'rewrite', upstream_host: 'api.internal',
      nodes: [{ host: '127.0.0.1', port: securePort, weight: 3 }], tls: { client_cert_id: 9 } },
  ];
  const routes: Obj[] = [
    { id: 1, name: 'site', hosts: ['*.shop.test'], uri: '/*', upstream_id: 1, priority: 5,
      plugins: { 'limit-count': { count: 10, time_window: 60 } } },
    { id: 2, hosts: ['*.shop.test'], uri: '/ping', methods: ['GET'],
      plugins: { mocking: { response_status: 200, response_example: 'pong', content_type: 'text/plain' } } },
    { id: 3, hosts: ['*.shop.test'], uris: ['/secure/*'], upstream_id: 'secure' },
    { id: 4, hosts: ['*.shop.test'], uri: '/off/*', upstream_id: 1, status: 0 },
  ];
  if (mtls) {
    routes.push({ id: 'partner-api', host: 'partner.test', uris: ['/api/*'],
      upstream: { type: 'chash', hash_on: 'header', key: 'x-user', nodes: { [`127.0.0.1:${webPort}`]: 1 } } });
  }
  return { ssls, upstreams, routes };
}

/** The standalone file as APISIX users write it: YAML (JSON for the Admin API comparison), closed by #END. */
function standalone(mtls: boolean, yaml = false): string {
  return (yaml ? stringify(objects(mtls)) : JSON.stringify(objects(mtls))) + '\n#END\n';
}

before(async () => {
  const ca = createCA('import CA');
  const partnerCa = createCA('partner clients CA');
  const upCa = createCA('upstream CA');
  P = {
    ca, partnerCa, upCa,
    site: server(ca, ['*.shop.test']),
    partner: server(ca, ['partner.test']),
    partnerClient: client(partnerCa, 'partner-1'),
    upServer: server(upCa, ['api.internal'], { ips: ['127.0.0.1'] }),
    gwClient: client(upCa, 'gateway'),
  };
  const web = http.createServer((req, res) => res.end(`web ${req.method} ${req.url} host=${req.headers.host}`));
  const secure = https.createServer({
    cert: P.upServer.cert, key: P.upServer.key, ca: P.upCa.cert, requestCert: true, rejectUnauthorized: true,
  }, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate();
    const sni = (req.socket as TLSSocket).servername;
    res.end(`secure ${req.url} host=${req.headers.host} sni=${String(sni)} client=${peer.subject?.CN}`);
  });
  for (const s of [web, secure]) {
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  }
  webPort = (web.address() as AddressInfo).port;
  securePort = (secure.address() as AddressInfo).port;
});
after(() => servers.forEach((s) => s.close()));

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'tlsgate-import-'));
}

describe('import --from apisix: a standalone file', () => {
  for (const engine of ['node', 'uws'] as const) {
    it(`imports, validates and serves it (${engine})`, async () => {
      const mtls = engine === 'node'; // uws refuses client.ca (TLSGATE_E_ENGINE_UNSUPPORTED)
      const gw = new Gateway('tlsgate-import-gw-');
      try {
        const port = await freePort();
        const src = join(gw.dir, 'apisix.yaml');
        writeFileSync(src, standalone(mtls, engine === 'node'));
        const r = run(['--from', 'apisix', src, '--out', gw.dir, '--keyring', `wrongwrongwrong!,${KEYRING}`,
          '--listen', `127.0.0.1:${port}`, '--engine', engine]);
        assert.equal(r.status, 0, r.err + r.out);
        assert.match(r.out, /gateway\.yaml: valid/);
        // What could not be carried is printed, with the reason.
        // Route matching carries priority, exact uris and "/*" as they are (issue 17).
        assert.doesNotMatch(r.out, /priority dropped/);
        assert.match(r.out, /plugin limit-count dropped/);
        // Balancer and active checks are carried (issue 17); what has no equivalent is printed.
        assert.match(r.out, /upstreams upstreams\[0\] \(id 1\): checks\.passive dropped/);
        assert.match(r.out, /checks\.active\.concurrency dropped: each node has its own probe timer/);
        assert.doesNotMatch(r.out, /type "(least_conn|chash)" dropped|hash_on dropped|key dropped/);
        // Retries, send timeout and pool settings are carried (issue 17); only keepalive_pool.requests is not.
        assert.doesNotMatch(r.out, /retries|retry_timeout|timeout\.send|keepalive_pool\.(size|idle_timeout)/);
        assert.match(r.out, /\(id 1\): keepalive_pool\.requests dropped: tlsgate does not cap requests/);
        assert.match(r.out, /\(id 4\): not imported: disabled in APISIX/);
        assert.doesNotMatch(r.out, /imported as a prefix|translated to/);
        if (mtls) {
          assert.match(r.out, /client\.skip_mtls_uri_regex dropped/);
          assert.match(r.out, /ssl_protocols TLSv1\.1 dropped/);
        }
        // No key material on either stream.
        for (const s of [r.out, r.err]) {
          assert.doesNotMatch(s, /PRIVATE KEY/);
          assert.ok(!s.includes(encrypt(P.site.key).slice(0, 40)));
        }
        const cfg = parse(readFileSync(join(gw.dir, 'gateway.yaml'), 'utf8')) as Obj;
        const ssls = cfg.ssls as Obj[];
        assert.equal(ssls[0]!.id, '1');
        assert.equal(ssls[0]!.key, '$file://certs/1.key');
        assert.deepEqual(ssls[0]!.labels, { team: 'web' });
        // The encrypted key was decrypted (second keyring entry) and written as PEM.
        assert.equal(readFileSync(join(gw.dir, 'certs', '1.key'), 'utf8').trim(), P.site.key.trim());
        assert.equal(statSync(join(gw.dir, 'certs', '1.key')).mode & 0o777, 0o600);
        assert.equal(statSync(join(gw.dir, 'certs')).mode & 0o777, 0o700);
        const routes = cfg.routes as Obj[];
        assert.deepEqual(routes.map((x) => x.id), mtls ? ['1', '2', '3', 'partner-api'] : ['1', '2', '3']);
        assert.deepEqual(routes[0]!.paths, ['/*']);
        assert.equal(routes[0]!.priority, 5);
        assert.deepEqual(routes[1]!.paths, ['= /ping']);
        assert.deepEqual(routes[2]!.paths, ['/secure/*']);
        if (mtls) assert.equal(routes[3]!.upstream, 'route-partner-api');
        const ups = cfg.upstreams as Obj[];
        assert.deepEqual(ups[0]!.checks, { active: { timeout: '2000ms', http_path: '/',
          healthy: { interval: '2000ms', successes: 1 }, unhealthy: { interval: '1000ms', http_failures: 2 } } });
        assert.deepEqual(ups[0]!.timeout, { connect: '2000ms', send: '5000ms', read: '10000ms' });
        assert.equal(ups[0]!.retries, 2);
        assert.equal(ups[0]!.retry_timeout, '1500ms');
        assert.deepEqual(ups[0]!.keepalive, { size: 16, idle_timeout: '30000ms' });
        assert.equal(ups[1]!.type, 'least_conn');
        for (const k of ['retries', 'retry_timeout', 'keepalive']) assert.equal(ups[1]![k], undefined);
        if (mtls) {
          const inline = ups.find((u) => u.id === 'route-partner-api')!;
          assert.deepEqual([inline.type, inline.hash_on, inline.key], ['chash', 'header', 'x-user']);
        }

        await gw.start(readFileSync(join(gw.dir, 'gateway.yaml'), 'utf8'));
        const site = await get(port, '/hello', { servername: 'a.shop.test', ca: P.ca.cert });
        assert.equal(site.status, 200);
        assert.equal(site.body, 'web GET /hello host=a.shop.test');
        // curl, as a migrating user would check it, verifying the imported wildcard certificate.
        writeFileSync(join(gw.dir, 'ca.pem'), P.ca.cert);
        // Async: the upstream lives in this process, a blocking spawn would starve it.
        const curl = await execFileP('curl', ['-sS', '--max-time', '10', '--cacert', join(gw.dir, 'ca.pem'),
          '--resolve', `c.shop.test:${port}:127.0.0.1`, `https://c.shop.test:${port}/from-curl`]);
        assert.equal(curl.stdout, 'web GET /from-curl host=c.shop.test:' + String(port));
        const ping = await get(port, '/ping', { servername: 'b.shop.test', ca: P.ca.cert });
        assert.equal(ping.status, 200);
        assert.equal(ping.body, 'pong');
        assert.equal(ping.headers['content-type'], 'text/plain');
        // "/ping" is exact as in APISIX: "/pingpong" is the site's.
        const pingpong = await get(port, '/pingpong', { servername: 'b.shop.test', ca: P.ca.cert });
        assert.equal(pingpong.body, 'web GET /pingpong host=b.shop.test');
        const sec = await get(port, '/secure/x', { servername: 'a.shop.test', ca: P.ca.cert });
        assert.equal(sec.status, 200, sec.body);
        assert.equal(sec.body, 'secure /secure/x host=api.internal sni=api.internal client=gateway');
        const off = await get(port, '/off/x', { servername: 'a.shop.test', ca: P.ca.cert });
        assert.equal(off.body, 'web GET /off/x host=a.shop.test'); // the disabled route is not there: "/" answers
        if (mtls) {
          await assert.rejects(get(port, '/api/x', { servername: 'partner.test', ca: P.ca.cert }));
          const ok = await get(port, '/api/x', {
            servername: 'partner.test', ca: P.ca.cert, cert: P.partnerClient.cert, key: P.partnerClient.key,
          });
          assert.equal(ok.status, 200);
          assert.equal(ok.body, 'web GET /api/x host=partner.test');
        }
      } finally {
        await gw.stop();
      }
    });
  }
});

describe('import --from apisix: an Admin API export', () => {
  it('imports the same config as the standalone file', () => {
    const dir = tmp();
    try {
      const o = objects(true);
      const files: string[] = [];
      for (const kind of ['ssls', 'upstreams', 'routes'] as const) {
        const list = o[kind].map((value) => {
          const { id, ...rest } = value;
          return { key: `/apisix/${kind}/${String(id)}`, value: kind === 'routes' ? value : rest, createdIndex: 1 };
        });
        const f = join(dir, `${kind}.json`);
        writeFileSync(f, JSON.stringify({ list, total: list.length }));
        files.push(f);
      }
      writeFileSync(join(dir, 'apisix.yaml'), standalone(true));
      const common = ['--keyring', KEYRING, '--listen', '127.0.0.1:9443'];
      const a = run(['--from', 'apisix', ...files, '--out', join(dir, 'a'), ...common]);
      const b = run(['--from', 'apisix', join(dir, 'apisix.yaml'), '--out', join(dir, 'b'), ...common]);
      assert.equal(a.status, 0, a.err);
      assert.equal(b.status, 0, b.err);
      const cfg = (d: string): unknown => parse(readFileSync(join(dir, d, 'gateway.yaml'), 'utf8'));
      assert.deepEqual(cfg('a'), cfg('b'));
      const key = (d: string): string => readFileSync(join(dir, d, 'certs', '1.key'), 'utf8');
      assert.equal(key('a'), key('b'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('import --from apisix: hostile or broken input', () => {
  const importOne = (doc: unknown, extra: string[] = []): ReturnType<typeof run> & { dir: string } => {
    const dir = tmp();
    const f = join(dir, 'in.json');
    writeFileSync(f, typeof doc === 'string' ? doc : JSON.stringify(doc));
    return { ...run(['--from', 'apisix', f, '--out', join(dir, 'out'), ...extra]), dir };
  };
  const base = (): { ssls: Obj[]; upstreams: Obj[]; routes: Obj[] } => ({
    ssls: [{ id: 's1', snis: ['a.shop.test'], cert: P.site.cert, key: P.site.key }],
    upstreams: [{ id: 'u1', nodes: { '127.0.0.1:80': 1 } }],
    routes: [{ id: 'r1', uri: '/*', upstream_id: 'u1' }],
  });

  it('a PEM that is not a certificate names the object; nothing is written', () => {
    const d = base();
    d.ssls[0]!.cert = '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n';
    const r = importOne(d);
    assert.equal(r.status, 1);
    assert.match(r.err,
      /ssls ssls\[0\] \(id "s1"\)\.cert: certificate 1 of 1 is not valid X\.509 \[TLSGATE_E_IMPORT_OBJECT\]/);
    assert.equal(existsSync(join(r.dir, 'out')), false);
    rmSync(r.dir, { recursive: true });
  });

  it('path traversal in ids is refused before anything touches the disk', () => {
    const d = base();
    d.ssls[0]!.id = '../../escape';
    d.upstreams[0]!.id = '/etc/passwd';
    d.routes[0]!.name = '../../name-is-not-a-file';
    const r = importOne(d);
    assert.equal(r.status, 1);
    assert.match(r.err, /ssls ssls\[0\] \(id "\.\.\/\.\.\/escape"\): id "\.\.\/\.\.\/escape" cannot be imported/);
    assert.match(r.err, /upstreams upstreams\[0\] \(id "\/etc\/passwd"\): id "\/etc\/passwd" cannot be imported/);
    assert.equal(existsSync(join(r.dir, 'out')), false);
    assert.equal(existsSync(join(r.dir, 'escape.key')), false);
    rmSync(r.dir, { recursive: true });
  });

  it('a huge file is refused without being parsed', () => {
    const r = importOne('#' + 'x'.repeat(17 * 1024 * 1024));
    assert.equal(r.status, 1);
    assert.match(r.err, /larger than 16 MiB \[TLSGATE_E_IMPORT_INPUT\]/);
    rmSync(r.dir, { recursive: true });
  });

  it('an encrypted key: a wrong keyring or none says so, never prints the key', () => {
    const d = base();
    const enc = encrypt(P.site.key);
    d.ssls[0]!.key = enc;
    const wrong = importOne(d, ['--keyring', 'wrongwrongwrong!']);
    assert.equal(wrong.status, 1);
    assert.match(wrong.err,
      /ssls ssls\[0\] \(id "s1"\)\.key: cannot be decrypted with any of the 1 keyring key\(s\) given/);
    const none = importOne(d);
    assert.match(none.err, /\.key: is encrypted by APISIX \(data_encryption\): pass its keyring with --keyring/);
    const short = importOne(d, ['--keyring', 'short']);
    assert.equal(short.status, 2);
    assert.match(short.err, /--keyring entry 1 is not 16 characters/);
    for (const r of [wrong, none, short]) {
      assert.ok(!(r.out + r.err).includes(enc.slice(0, 24)));
      assert.doesNotMatch(r.out + r.err, /PRIVATE KEY|wrongwrongwrong/);
      rmSync(r.dir, { recursive: true });
    }
  });

  it('refuses to overwrite an existing output unless --force', () => {
    const first = importOne(base());
    assert.equal(first.status, 0, first.err);
    const f = join(first.dir, 'in.json');
    const again = run(['--from', 'apisix', f, '--out', join(first.dir, 'out')]);
    assert.equal(again.status, 1);
    assert.match(again.err, /exists; pass --force to overwrite \[TLSGATE_E_IMPORT_EXISTS\]/);
    // A symlink planted where the key goes is replaced, not followed; the key is 0600 again.
    const victim = join(first.dir, 'victim.txt');
    writeFileSync(victim, 'untouched', { mode: 0o644 });
    const keyPath = join(first.dir, 'out', 'certs', 's1.key');
    rmSync(keyPath);
    symlinkSync(victim, keyPath);
    const forced = run(['--from', 'apisix', f, '--out', join(first.dir, 'out'), '--force']);
    assert.equal(forced.status, 0, forced.err);
    assert.equal(readFileSync(victim, 'utf8'), 'untouched');
    assert.equal(lstatSync(keyPath).isSymbolicLink(), false);
    assert.equal(lstatSync(keyPath).mode & 0o777, 0o600);
    rmSync(first.dir, { recursive: true });
  });

  it('a certs/ directory that is a symlink is refused (the keys would land where it points)', () => {
    const dir = tmp();
    const f = join(dir, 'in.json');
    writeFileSync(f, JSON.stringify(base()));
    const elsewhere = join(dir, 'elsewhere');
    mkdirSync(elsewhere);
    mkdirSync(join(dir, 'out'));
    symlinkSync(elsewhere, join(dir, 'out', 'certs'));
    const r = run(['--from', 'apisix', f, '--out', join(dir, 'out')]);
    assert.equal(r.status, 1);
    assert.match(r.err, /certs exists and is not a directory \[TLSGATE_E_IMPORT_EXISTS\]/);
    assert.deepEqual(readdirSync(elsewhere), []);
    rmSync(dir, { recursive: true });
  });

  it('retries, retry_timeout, timeout.send, keepalive_pool out of tlsgate\'s range: printed, the rest valid', () => {
    const d = base();
    Object.assign(d.upstreams[0]!, {
      retries: 500, retry_timeout: -1, timeout: { send: 0, read: 0.0001, connect: 3, linger: 1 },
      keepalive_pool: { size: 1.5, idle_timeout: 0, requests: 10, extra: true },
    });
    d.upstreams.push({ id: 'u2', nodes: { '127.0.0.1:81': 1 }, retries: 0, retry_timeout: 0,
      keepalive_pool: { size: 0 } });
    const r = importOne(d);
    assert.equal(r.status, 0, r.err + r.out);
    assert.match(r.out, /gateway\.yaml: valid/);
    for (const re of [/retries 500 dropped: tlsgate takes 0-100/, /retry_timeout -1 dropped/,
      /timeout\.send 0 dropped/, /timeout\.read 0\.0001 dropped/, /timeout\.linger dropped/,
      /keepalive_pool\.size 1\.5 dropped/, /keepalive_pool\.idle_timeout 0 dropped: tlsgate closes an idle/,
      /keepalive_pool\.requests dropped/, /keepalive_pool\.extra dropped/]) assert.match(r.out, re);
    const ups = (parse(readFileSync(join(r.dir, 'out', 'gateway.yaml'), 'utf8')) as Obj).upstreams as Obj[];
    assert.deepEqual(ups[0]!.timeout, { connect: '3000ms' });
    for (const k of ['retries', 'retry_timeout', 'keepalive']) assert.equal(ups[0]![k], undefined);
    // 0 means "no retry" and "no limit" in both: carried as 0, not dropped as falsy.
    assert.equal(ups[1]!.retries, 0);
    assert.equal(ups[1]!.retry_timeout, '0ms');
    assert.deepEqual(ups[1]!.keepalive, { size: 0 });
    rmSync(r.dir, { recursive: true });
  });

  it('an output that does not validate says why (SNI not covered by the certificate)', () => {
    const d = base();
    d.ssls[0]!.snis = ['other.test'];
    const r = importOne(d);
    assert.equal(r.status, 1);
    assert.match(r.err, /TLSGATE_E_SNI_NOT_COVERED/);
    assert.match(r.err, /does not pass tlsgate validate/);
    rmSync(r.dir, { recursive: true });
  });

  it('not an APISIX file, or an unknown --from', () => {
    const r = importOne({ hello: 'world' });
    assert.equal(r.status, 1);
    assert.match(r.err, /holds no ssls, upstreams or routes \[TLSGATE_E_IMPORT_INPUT\]/);
    const f = run(['--from', 'kong', join(r.dir, 'in.json')]);
    assert.equal(f.status, 2);
    rmSync(r.dir, { recursive: true });
  });
});
