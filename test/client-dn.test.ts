// X-Client-Cert-Subject: a subject the client chose must not inject into the header or fake an RDN.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { escapeDnValue, rfc4514 } from '../src/proxy/client-dn';

test('RFC 4514: most specific RDN first, specials and edges escaped', () => {
  assert.equal(rfc4514({ C: 'US', O: 'Example', CN: 'alice' }), 'CN=alice,O=Example,C=US');
  assert.equal(escapeDnValue('a,b+c"d\\e<f>g;h=i'), 'a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h\\=i');
  assert.equal(escapeDnValue('#x '), '\\#x\\ ');
  assert.equal(escapeDnValue(' lead'), '\\ lead');
  assert.equal(rfc4514({ OU: ['a', 'b'], CN: 'c' }), 'CN=c,OU=b,OU=a');
});

test('CR, LF, NUL and non-ASCII become hex escapes: the value stays one printable ASCII line', () => {
  const v = rfc4514({ CN: 'alice\r\nX-Client-Verify: SUCCESS\u0000é' });
  assert.equal(v, 'CN=alice\\0D\\0AX-Client-Verify: SUCCESS\\00\\C3\\A9');
  assert.match(v, /^[\x20-\x7e]*$/);
});

test('a forged RDN inside a value is escaped, not a second RDN', () => {
  const v = rfc4514({ CN: 'mallory,CN=admin' });
  assert.equal(v, 'CN=mallory\\,CN\\=admin');
  assert.equal(v.split(/(?<!\\),/).length, 1);
});

test('a subject with a comma, quotes, "+" and a newline stays one RDN per attribute', () => {
  assert.equal(rfc4514({ O: 'Ex+ample', CN: 'bob, "the" admin\nX-Evil: 1' }), 'CN=bob\\, \\"the\\" admin\\0AX-Evil: 1,O=Ex\\+ample');
});
