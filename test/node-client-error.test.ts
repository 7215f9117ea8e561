// What the node engine answers when Node's own HTTP parser refuses a request: a real
// status line in the gateway's JSON error shape, mapped from the parser's error code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyClientError, rawErrorResponse } from '../src/engines/node-client-error';
import type { RequestLimits } from '../src/snapshot/types';

const limits: RequestLimits = {
  maxHeaderCount: 100,
  maxHeaderBytes: 32 * 1024,
  maxRequestLine: 8 * 1024,
  maxBodySize: null,
};
const err = (code: string, raw?: string): Error & { code: string; rawPacket?: Buffer; bytesParsed?: number } =>
  Object.assign(new Error(code), {
    code,
    ...(raw !== undefined ? { rawPacket: Buffer.from(raw, 'latin1'), bytesParsed: raw.length } : {}),
  });

const overflow = (raw: string): ReturnType<typeof err> => err('HPE_HEADER_OVERFLOW', raw);

const cases: Array<[string, ReturnType<typeof err>, number]> = [
  ['headers timeout', err('ERR_HTTP_REQUEST_TIMEOUT'), 408],
  ['invalid method', err('HPE_INVALID_METHOD', 'get / HTTP/1.1\r\n'), 400],
  ['invalid header token', err('HPE_INVALID_HEADER_TOKEN', 'GET / HTTP/1.1\r\nA B: c\r\n'), 400],
  ['chunk extensions overflow', err('HPE_CHUNK_EXTENSIONS_OVERFLOW'), 413],
  ['overflow inside the request line of this packet', err('HPE_HEADER_OVERFLOW', 'GET /' + 'a'.repeat(12_000)), 414],
  ['overflow where the request line is over the limit', overflow(`GET /${'a'.repeat(9_000)} HTTP/1.1\r\nX: y`), 414],
  ['overflow in the headers of this packet', overflow(`GET / HTTP/1.1\r\nCookie: ${'a=b; '.repeat(9000)}`), 431],
  ['overflow in the middle of a long header value', err('HPE_HEADER_OVERFLOW', 'b'.repeat(16_000)), 431],
  ['overflow without a packet', err('HPE_HEADER_OVERFLOW'), 431],
];
for (const [what, e, status] of cases) {
  test(`${what} → ${status}`, () => {
    assert.equal(classifyClientError(e, limits).status, status);
  });
}

test('the raw answer is a complete HTTP/1.1 response that closes the connection', () => {
  const r = rawErrorResponse(431, 'TLSGATE_E_HEADERS_TOO_LARGE', 'too big');
  const [head, body] = r.split('\r\n\r\n');
  assert.match(head!, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  assert.match(head!, /\r\nconnection: close/);
  assert.equal(Number(/content-length: (\d+)/.exec(head!)![1]), Buffer.byteLength(body!));
  assert.deepEqual(JSON.parse(body!), { error: { code: 'TLSGATE_E_HEADERS_TOO_LARGE', message: 'too big' } });
});
