// A new user's first five minutes with the CLI: --help, --version, -c / --config / --config=,
// mistakes answered with usage and exit 2; a copy of config/gateway.yaml outside the repo
// starts (dev certificates made next to it) and is reachable with curl; a gateway without
// an aws provider never loads the AWS SDK.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI, Gateway, ROOT, freePort } from './helpers/gateway';

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function tlsgate(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    const opts = { env: { ...process.env, ...env }, timeout: 30_000, maxBuffer: 1 << 26 };
    execFile(process.execPath, [CLI, ...args], opts, (err, stdout, stderr) => {
      const exit = (err as { code?: unknown } | null)?.code;
      resolve({ code: err ? (typeof exit === 'number' ? exit : -1) : 0, stdout, stderr });
    });
  });
}

function curl(args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile('curl', ['-sS', '--max-time', '10', ...args], (err, stdout, stderr) => {
      resolve({ code: err ? 1 : 0, out: stdout + stderr });
    });
  });
}

/**
 * `tlsgate` with stderr in a file, not a pipe: NODE_DEBUG=module writes ~200 KB there, and a
 * pipe the parent has not drained yet can hold the end back when the CLI calls process.exit()
 * (the SDK's load line, near the end, was missing in one CI run).
 */
function tlsgateStderrToFile(args: string[], env: NodeJS.ProcessEnv, file: string): Promise<Run> {
  const fd = openSync(file, 'w');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, ...args], {
      env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', fd], timeout: 30_000,
    });
    child.on('close', (code) => {
      closeSync(fd);
      resolve({ code: code ?? -1, stdout: '', stderr: readFileSync(file, 'utf8') });
    });
  });
}

/** A config with no file reference: valid anywhere. */
const MINIMAL = `listeners: [{ name: l, listen: "127.0.0.1:1" }]
routes: [{ id: r, paths: [/], respond: { status: 200 } }]
`;
const pkgVersion = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const DEFAULT_CONFIG = readFileSync(join(ROOT, 'config', 'gateway.yaml'), 'utf8');
/** The AWS SDK's Node-version warning, printed when the SDK builds a client. */
const AWS_WARNING = /AWS SDK|NodeVersionSupportWarning/;

describe('tlsgate CLI', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tlsgate-cli-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const valid = join(dir, 'valid.yaml');
  writeFileSync(valid, MINIMAL);

  test('--help and -h: usage on stdout, exit 0, whatever else is on the line', async () => {
    for (const args of [['--help'], ['-h'], ['start', '--help'], ['validate', '-c', valid, '-h']]) {
      const r = await tlsgate(args);
      assert.equal(r.code, 0, args.join(' '));
      assert.match(r.stdout, /^usage: tlsgate start +-c, --config FILE/);
      assert.match(r.stdout, /tlsgate validate -c, --config FILE/);
      assert.equal(r.stderr, '');
    }
  });

  test('--version and -v print the package version', async () => {
    for (const flag of ['--version', '-v']) {
      const r = await tlsgate([flag]);
      assert.equal(r.code, 0);
      assert.equal(r.stdout, `tlsgate ${pkgVersion}\n`);
    }
  });

  test('-c, --config FILE and --config=FILE are the same option', async () => {
    const forms = [['-c', valid], ['--config', valid], [`--config=${valid}`]];
    for (const args of [...forms.map((f) => ['validate', ...f]), ['-c', valid, 'validate']]) {
      const r = await tlsgate(args);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stdout, /valid\.yaml: valid — 1 listener/);
    }
  });

  test('mistakes: error and usage on stderr, nothing on stdout, exit 2', async () => {
    const cases: Array<[string[], RegExp]> = [
      [[], /a command is required/],
      [['serve', '-c', valid], /unknown command 'serve'/],
      [['start'], /start needs --config FILE/],
      [['validate', '--config='], /validate needs --config FILE/],
      [['start', '-c'], /'-c, --config <value>' argument missing/],
      [['start', '--confg', valid], /Unknown option '--confg'/],
      [['validate', '-x', '-c', valid], /Unknown option '-x'/],
      [['validate', '-c', valid, 'extra'], /unexpected argument 'extra'/],
      [['validate', '--help=yes'], /--help/],
    ];
    for (const [args, message] of cases) {
      const r = await tlsgate(args);
      assert.equal(r.code, 2, `${args.join(' ')} → ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, message, args.join(' '));
      assert.match(r.stderr, /\nusage: tlsgate start/, `${args.join(' ')}: usage`);
      assert.equal(r.stdout, '', args.join(' '));
    }
  });

  test('a config that is refused is exit 1, not a usage error', async () => {
    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'listeners: [{ name: l, listen: "127.0.0.1:1", bogus: 1 }]\n');
    const r = await tlsgate(['validate', '-c', bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /listeners\[0\]\.bogus/);
  });
});

describe('a copy of config/gateway.yaml outside the repo', () => {
  const gw = new Gateway('tlsgate-copy-');
  let port = 0;
  after(() => gw.stop());

  test('starts: dev certificates made next to it, served; curl trusts the dev CA; no AWS SDK loaded', async () => {
    port = await freePort();
    gw.adminPort = await freePort();
    // The same file with its two ports moved to free ones (tests never bind fixed ports).
    assert.match(DEFAULT_CONFIG, /127\.0\.0\.1:8443/);
    assert.match(DEFAULT_CONFIG, /127\.0\.0\.1:9180/);
    const copy = DEFAULT_CONFIG.replace('127.0.0.1:8443', `127.0.0.1:${port}`) //
      .replace('127.0.0.1:9180', `127.0.0.1:${gw.adminPort}`);
    assert.ok(!existsSync(join(gw.dir, 'dev')));
    // NODE_DEBUG=module makes every process (primary and workers) print each module it loads.
    await gw.start(copy, { NODE_DEBUG: 'module' });
    const made = `created dev CA, localhost certificate and admin API key in ${join(gw.dir, 'dev')}`;
    assert.ok(gw.stderr.includes(made), gw.stderr.slice(0, 2000));
    for (const f of ['ca.crt', 'localhost.crt', 'localhost.key', 'admin-api-key']) {
      assert.ok(existsSync(join(gw.dir, 'dev', f)), f);
    }

    const ca = join(gw.dir, 'dev', 'ca.crt');
    const to = ['--resolve', `localhost:${port}:127.0.0.1`, `https://localhost:${port}/ping`];
    assert.deepEqual(await curl(['--cacert', ca, ...to]), { code: 0, out: 'pong\n' });
    // Not trusted without the dev CA: it is a real chain check, not --insecure.
    assert.equal((await curl(to)).code, 1);
    const key = readFileSync(join(gw.dir, 'dev', 'admin-api-key'), 'utf8');
    const admin = `http://127.0.0.1:${gw.adminPort}/v1/status`;
    const status = await curl(['-o', '/dev/null', '-w', '%{http_code}', '-H', `X-API-KEY: ${key}`, admin]);
    assert.deepEqual(status, { code: 0, out: '200' });

    assert.match(gw.stderr, /MODULE \d+: load "[^"]*dist\/cli\.js"/, 'NODE_DEBUG=module took effect');
    assert.doesNotMatch(gw.stderr, /@aws-sdk/);
    assert.doesNotMatch(gw.stderr, AWS_WARNING);
  });

  test('a second start keeps the dev files it made', async () => {
    const before = readFileSync(join(gw.dir, 'dev', 'ca.crt'), 'utf8');
    const r = await tlsgate(['validate', '-c', gw.configPath]);
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /created dev CA/);
    assert.equal(readFileSync(join(gw.dir, 'dev', 'ca.crt'), 'utf8'), before);
  });

  test('a config that names other missing files gets no dev files: the missing file is the error', async () => {
    const d = mkdtempSync(join(tmpdir(), 'tlsgate-nodev-'));
    try {
      const file = join(d, 'gateway.yaml');
      writeFileSync(file, DEFAULT_CONFIG.replaceAll('$file://dev/', '$file://certs/'));
      const r = await tlsgate(['validate', '-c', file]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /certs\/localhost\.crt/);
      assert.ok(!existsSync(join(d, 'dev')) && !existsSync(join(d, 'certs')));
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe('the AWS SDK is loaded only for an aws provider', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tlsgate-aws-lazy-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const base = MINIMAL;

  test('validate without an aws provider loads no @aws-sdk module; with one, it does', async () => {
    const without = join(dir, 'without.yaml');
    writeFileSync(without, base);
    const a = await tlsgateStderrToFile(['validate', '-c', without], { NODE_DEBUG: 'module' }, join(dir, 'a.err'));
    assert.equal(a.code, 0, a.stderr.slice(-2000));
    assert.match(a.stderr, /MODULE \d+: load /);
    assert.doesNotMatch(a.stderr, /@aws-sdk/);

    // Positive control: the same check sees the SDK when a provider needs it.
    const withAws = join(dir, 'with.yaml');
    writeFileSync(withAws, `${base}secret_providers: [{ id: aws-main, type: aws, region: eu-west-1 }]\n`);
    const b = await tlsgateStderrToFile(['validate', '-c', withAws], { NODE_DEBUG: 'module' }, join(dir, 'b.err'));
    assert.equal(b.code, 0, b.stderr.slice(-2000));
    assert.match(b.stderr, /MODULE \d+: load "[^"]*@aws-sdk\/client-secrets-manager/);
  });
});
