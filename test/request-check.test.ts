// The one request check both engines run before routing, as an attacker probes it:
// smuggling through framing headers, host confusion, path tricks that match one route
// here and reach another upstream, and the limits. Pure function: tested directly.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { checkRequest, normalizePath, type CheckResult } from '../src/proxy/request-check';
import type { RequestLimits } from '../src/snapshot/types';

const LIMITS: RequestLimits = {
  maxHeaderCount: 100,
  maxHeaderBytes: 32 * 1024,
  maxRequestLine: 8 * 1024,
  maxBodySize: null,
};
const H = ['Host', 'a.test'];

function check(target: string, headers: string[] = H, method = 'GET', version = '1.1', limits = LIMITS): CheckResult {
  return checkRequest(method, target, headers, limits, version);
}

function ok(r: CheckResult): Extract<CheckResult, { ok: true }>['req'] {
  if (!r.ok) assert.fail(`refused: ${r.status} ${r.message}`);
  return r.req;
}

describe('path normalization before route matching', () => {
  const cases: Array<[string, string]> = [
    ['/', '/'],
    ['/admin', '/admin'],
    ['/a/b/', '/a/b/'],
    ['/x/../admin', '/admin'],
    ['/x/./admin', '/x/admin'],
    ['/./admin', '/admin'],
    ['/%61dmin', '/admin'],
    ['/%41%44%4d%49%4e', '/ADMIN'],
    ['//admin', '/admin'],
    ['///admin//x', '/admin/x'],
    ['/x/%2e%2e/admin', '/admin'],
    ['/x/%2E%2E/admin', '/admin'],
    ['/x/.%2e/admin', '/admin'],
    ['/x/%2e/admin', '/x/admin'],
    ['/a/b/..', '/a/'],
    ['/a/b/.', '/a/b/'],
    ['/a/..', '/'],
    ['/a/b/../../c', '/c'],
    ['/a%2Fb', '/a%2Fb'],
    ['/a%2fb', '/a%2Fb'],
    ['/%7euser', '/~user'],
    ['/%c3%a9t%C3%A9', '/%C3%A9t%C3%A9'],
    ['/a%20b', '/a%20b'],
    ['/.well-known/acme', '/.well-known/acme'],
    ['/a/...', '/a/...'],
    ['/a/..b', '/a/..b'],
    ['/a/b..', '/a/b..'],
    ['/a;v=1/b', '/a;v=1/b'],
  ];
  for (const [input, want] of cases) {
    test(`${input} → ${want}`, () => {
      assert.equal(normalizePath(input), want);
      assert.equal(ok(check(input)).path, want);
    });
  }

  const refused = [
    '/..',
    '/../admin',
    '/a/../../admin',
    '/%2e%2e/admin',
    '/./../x',
    '//../x',
    '/a/b/../../..',
    '/%',
    '/%4',
    '/%zz',
    '/%4g',
    '/a%',
    '/a%00b',
    '/public/..%2Fadmin',
    '/public/..%2fadmin',
    '/public/x%2F..%2F..%2Fadmin',
    '/public/..%5Cadmin',
    '/public/..;/admin',
    '/public/.;/admin',
    '/public/%2e%2e;x/admin',
  ];
  for (const input of refused) {
    test(`${input} → 400`, () => {
      assert.equal(normalizePath(input), null);
      const r = check(input);
      assert.equal(r.ok, false);
      if (!r.ok) {
        assert.equal(r.status, 400);
        assert.equal(r.code, 'TLSGATE_E_BAD_REQUEST');
      }
    });
  }

  test('the fast path returns the same string (no copy) and the target unchanged', () => {
    const t = '/api/v1/users/42?x=1&y=%zz';
    const r = ok(check(t));
    assert.equal(r.path, '/api/v1/users/42');
    assert.equal(r.query, '?x=1&y=%zz');
    assert.equal(r.target, t);
  });

  test('the query is kept exactly as received, the upstream target gets the normalized path', () => {
    const r = ok(check('/x/../%61dmin?a=%2e%2e/../b&c=%61'));
    assert.equal(r.path, '/admin');
    assert.equal(r.query, '?a=%2e%2e/../b&c=%61');
    assert.equal(r.target, '/admin?a=%2e%2e/../b&c=%61');
  });
});

describe('raw bytes in the target', () => {
  const bad: Array<[string, string]> = [
    ['/a b', 'space'],
    ['/a\tb', 'tab'],
    ['/a\x00b', 'NUL'],
    ['/a\x7fb', 'DEL'],
    ['/a\x1bb', 'ESC'],
    ['/caf\u00e9', 'non-ASCII'],
    ['/a#frag', 'fragment'],
    ['/a\\..\\admin', 'backslash'],
    ['/a?q=\x01', 'control in the query'],
    ['/a?q=x y', 'space in the query'],
  ];
  for (const [t, what] of bad) {
    test(`${what} → 400`, () => {
      const r = check(t);
      assert.equal(r.ok, false);
      if (!r.ok) assert.equal(r.status, 400);
    });
  }
  test('sub-delims, colon and at are fine', () => {
    assert.equal(ok(check("/a:b@c!$&'()*+,;=d?e=f/g?h")).path, "/a:b@c!$&'()*+,;=d");
  });
});

describe('framing headers (request smuggling)', () => {
  const refused: Array<[string, string[]]> = [
    ['duplicate Content-Length, different', [...H, 'Content-Length', '5', 'Content-Length', '6']],
    ['duplicate Content-Length, equal', [...H, 'Content-Length', '5', 'content-length', '5']],
    ['Content-Length list', [...H, 'Content-Length', '5, 5']],
    ['negative Content-Length', [...H, 'Content-Length', '-1']],
    ['signed Content-Length', [...H, 'Content-Length', '+5']],
    ['hex Content-Length', [...H, 'Content-Length', '0x10']],
    ['decimal Content-Length', [...H, 'Content-Length', '5.0']],
    ['empty Content-Length', [...H, 'Content-Length', '']],
    ['Content-Length with inner space', [...H, 'Content-Length', '1 0']],
    ['overflowing Content-Length', [...H, 'Content-Length', '99999999999999999999']],
    ['Content-Length just over 2^53', [...H, 'Content-Length', '9007199254740993']],
    ['Content-Length + Transfer-Encoding', [...H, 'Content-Length', '5', 'Transfer-Encoding', 'chunked']],
    ['Transfer-Encoding + Content-Length', [...H, 'Transfer-Encoding', 'chunked', 'Content-Length', '0']],
    ['TE chunked, gzip', [...H, 'Transfer-Encoding', 'chunked, gzip']],
    ['TE gzip, chunked', [...H, 'Transfer-Encoding', 'gzip, chunked']],
    ['TE gzip', [...H, 'Transfer-Encoding', 'gzip']],
    ['TE identity', [...H, 'Transfer-Encoding', 'identity']],
    ['TE xchunked', [...H, 'Transfer-Encoding', 'xchunked']],
    ['TE chunkedx', [...H, 'Transfer-Encoding', 'chunkedx']],
    ['TE chunked twice (two lines)', [...H, 'Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked']],
    ['TE chunked twice (list)', [...H, 'Transfer-Encoding', 'chunked,chunked']],
    ['TE with trailing comma', [...H, 'Transfer-Encoding', 'chunked,']],
    ['TE with vertical tab', [...H, 'Transfer-Encoding', 'chunked\x0b']],
    ['TE with form feed', [...H, 'Transfer-Encoding', '\x0cchunked']],
    ['TE quoted', [...H, 'Transfer-Encoding', '"chunked"']],
    ['TE with a parameter', [...H, 'Transfer-Encoding', 'chunked;q=1']],
    ['TE empty', [...H, 'Transfer-Encoding', '']],
  ];
  for (const [what, headers] of refused) {
    test(`${what} → 400`, () => {
      const r = check('/', headers, 'POST');
      assert.equal(r.ok, false, what);
      if (!r.ok) {
        assert.equal(r.status, 400);
        assert.equal(r.code, 'TLSGATE_E_BAD_REQUEST');
      }
    });
  }

  test('Transfer-Encoding in an HTTP/1.0 request → 400 (RFC 9112 §6.1)', () => {
    const r = check('/', [...H, 'Transfer-Encoding', 'chunked'], 'POST', '1.0');
    assert.equal(r.ok, false);
  });

  const accepted: Array<[string, string[], number | null, boolean]> = [
    ['Content-Length', [...H, 'Content-Length', '5'], 5, false],
    ['Content-Length 0', [...H, 'Content-Length', '0'], 0, false],
    ['Content-Length with OWS', [...H, 'Content-Length', ' 12\t'], 12, false],
    ['Content-Length leading zeros', [...H, 'Content-Length', '007'], 7, false],
    ['Content-Length 2^53-1', [...H, 'Content-Length', '9007199254740991'], 9007199254740991, false],
    ['chunked', [...H, 'Transfer-Encoding', 'chunked'], null, true],
    ['Chunked (case-insensitive coding name)', [...H, 'transfer-encoding', 'Chunked'], null, true],
    ['chunked with OWS', [...H, 'Transfer-Encoding', ' chunked '], null, true],
    ['no body', H, null, false],
  ];
  for (const [what, headers, cl, chunked] of accepted) {
    test(`${what} accepted`, () => {
      const r = ok(check('/', headers, 'POST'));
      assert.equal(r.contentLength, cl);
      assert.equal(r.chunked, chunked);
    });
  }
});

describe('Host and the authority', () => {
  const refused: Array<[string, string[], string?]> = [
    ['two Host headers', ['Host', 'a.test', 'Host', 'a.test']],
    ['two Host headers, different', ['Host', 'a.test', 'host', 'admin.test']],
    ['HTTP/1.1 without Host', []],
    ['empty Host', ['Host', '']],
    ['Host with a space', ['Host', 'a .test']],
    ['Host with a slash', ['Host', 'a.test/x']],
    ['Host with userinfo', ['Host', 'user@a.test']],
    ['Host list', ['Host', 'a.test, b.test']],
    ['Host with a bad port', ['Host', 'a.test:80x']],
    ['Host with a port over 65535', ['Host', 'a.test:65536']],
    ['Host with a long port', ['Host', 'a.test:000080']],
    ['Host with two ports', ['Host', 'a.test:80:81']],
    ['Host percent-encoded', ['Host', 'a%2Etest']],
    ['Host with an empty label', ['Host', 'a..test']],
    ['Host starting with a hyphen', ['Host', '-a.test']],
    ['Host label over 63', ['Host', 'a'.repeat(64) + '.test']],
    ['Host IPv6 unbracketed', ['Host', '::1']],
    ['Host IPv6 not closed', ['Host', '[::1']],
    ['Host IPv6 invalid', ['Host', '[::g]']],
    ['Host IPv6 junk after', ['Host', '[::1]x']],
    ['Host IPvFuture', ['Host', '[v1.x]']],
    ['HTTP/1.0 with an invalid Host', ['Host', 'a b'], '1.0'],
  ];
  for (const [what, headers, version] of refused) {
    test(`${what} → 400`, () => {
      const r = check('/', headers, 'GET', version ?? '1.1');
      assert.equal(r.ok, false, what);
      if (!r.ok) assert.equal(r.status, 400);
    });
  }

  const accepted: Array<[string, string, string]> = [
    ['A.Test', 'a.test', 'A.Test'],
    ['a.test.', 'a.test', 'a.test.'],
    ['a.test:8443', 'a.test', 'a.test:8443'],
    ['a.test:', 'a.test', 'a.test:'],
    ['127.0.0.1:443', '127.0.0.1', '127.0.0.1:443'],
    ['[::1]:8443', '::1', '[::1]:8443'],
    ['[2001:DB8::1]', '2001:db8::1', '[2001:DB8::1]'],
    ['under_score.test', 'under_score.test', 'under_score.test'],
  ];
  for (const [value, host, authority] of accepted) {
    test(`Host ${value} → ${host}`, () => {
      const r = ok(check('/', ['Host', value]));
      assert.equal(r.host, host);
      assert.equal(r.authority, authority);
    });
  }

  test('HTTP/1.0 without Host is answered (host null)', () => {
    const r = ok(check('/', [], 'GET', '1.0'));
    assert.equal(r.host, null);
    assert.equal(r.authority, null);
  });

  test('absolute-form: the authority wins over Host, the upstream gets origin-form', () => {
    const r = ok(check('https://Admin.Test:8443/x/../y?q=1', ['Host', 'public.test']));
    assert.equal(r.host, 'admin.test');
    assert.equal(r.authority, 'Admin.Test:8443');
    assert.equal(r.path, '/y');
    assert.equal(r.target, '/y?q=1');
    assert.equal(r.absoluteForm, true);
  });

  test('absolute-form without a path or with only a query', () => {
    assert.equal(ok(check('http://a.test')).target, '/');
    assert.equal(ok(check('HTTPS://a.test?x=1')).target, '/?x=1');
  });

  test('absolute-form makes Host optional on HTTP/1.1', () => {
    assert.equal(ok(check('https://a.test/', [])).host, 'a.test');
  });

  test('absolute-form is still refused with two Host headers', () => {
    assert.equal(check('https://a.test/', ['Host', 'b.test', 'Host', 'c.test']).ok, false);
  });

  const badTargets: Array<[string, string]> = [
    ['https://user@a.test/', 'userinfo'],
    ['https://user:pw@a.test/', 'userinfo with password'],
    ['https:///x', 'empty authority'],
    ['https://a.test:99999/', 'bad port'],
    ['https://a b/', 'space'],
    ['ftp://a.test/', 'other scheme'],
    ['https:/a.test/', 'one slash'],
    ['a.test:443', 'authority-form'],
    ['a.test/x', 'no leading slash'],
    ['*x', 'asterisk and more'],
    ['', 'empty target'],
    ['https://a.test/../x', 'absolute-form climbing above /'],
  ];
  for (const [t, what] of badTargets) {
    test(`target ${what} → 400`, () => {
      const r = check(t);
      assert.equal(r.ok, false, `${what} accepted`);
      if (!r.ok) assert.equal(r.status, 400);
    });
  }

  test('CONNECT (authority-form) is refused with a reason', () => {
    const r = check('a.test:443', H, 'CONNECT');
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.message, /CONNECT/);
  });

  test('OPTIONS * keeps working (asterisk-form), other methods with * do not', () => {
    const r = ok(check('*', H, 'OPTIONS'));
    assert.equal(r.path, '*');
    assert.equal(r.target, '*');
    assert.equal(check('*', H, 'GET').ok, false);
    assert.equal(check('*', [], 'OPTIONS').ok, false, 'HTTP/1.1 OPTIONS * without Host');
  });
});

describe('limits', () => {
  const small: RequestLimits = { maxHeaderCount: 3, maxHeaderBytes: 100, maxRequestLine: 20, maxBodySize: null };

  test('a target at the limit passes, one byte more → 414', () => {
    const at = '/' + 'a'.repeat(19);
    assert.equal(check(at, H, 'GET', '1.1', small).ok, true);
    const r = check(at + 'a', H, 'GET', '1.1', small);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.status, 414);
      assert.equal(r.code, 'TLSGATE_E_URI_TOO_LONG');
    }
  });

  test('the header count at the limit passes, one more → 431', () => {
    const three = ['Host', 'a.test', 'A', '1', 'B', '2'];
    assert.equal(check('/', three, 'GET', '1.1', small).ok, true);
    const r = check('/', [...three, 'C', '3'], 'GET', '1.1', small);
    assert.equal(r.ok, false);
    if (!r.ok) {
      assert.equal(r.status, 431);
      assert.equal(r.code, 'TLSGATE_E_HEADERS_TOO_LARGE');
    }
  });

  test('header bytes count names, values and the `: ` + CRLF of each line', () => {
    // "Host: a.test\r\n" = 14; "X: <v>\r\n" = 5 + v
    const at = ['Host', 'a.test', 'X', 'v'.repeat(100 - 14 - 5)];
    assert.equal(check('/', at, 'GET', '1.1', small).ok, true);
    const over = ['Host', 'a.test', 'X', 'v'.repeat(100 - 14 - 5 + 1)];
    const r = check('/', over, 'GET', '1.1', small);
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.status, 431);
  });

  test('limits win over the framing checks (431 before 400 for a flood of Content-Length)', () => {
    const flood: string[] = [...H];
    for (let i = 0; i < 200; i++) flood.push('Content-Length', '1');
    const r = check('/', flood);
    assert.equal(r.ok, false);
    if (!r.ok) assert.equal(r.status, 431);
  });

  test('the defaults: 100 headers / 32 KiB pass, 101 headers → 431, 8 KiB target passes', () => {
    const hundred: string[] = [...H];
    for (let i = 0; i < 99; i++) hundred.push(`X-${i}`, 'v');
    assert.equal(check('/', hundred).ok, true);
    const r = check('/', [...hundred, 'X-last', 'v']);
    assert.equal(r.ok ? 0 : r.status, 431);
    assert.equal(check('/' + 'a'.repeat(8 * 1024 - 1)).ok, true);
    const long = check('/' + 'a'.repeat(8 * 1024));
    assert.equal(long.ok ? 0 : long.status, 414);
  });
});

describe('method and headers are passed through untouched', () => {
  test('method kept as received', () => {
    assert.equal(ok(check('/', H, 'PATCH')).method, 'PATCH');
  });
  test('obs-text and HTAB in a value are fine', () => {
    assert.equal(check('/', [...H, 'X-A', 'caf\u00e9\tok']).ok, true);
  });
});
