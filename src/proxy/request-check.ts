// Request checks before routing, the same for both engines: limits, framing headers,
// Host / absolute-form authority, path normalization. Pure: no socket, no engine type.
// The request stage calls checkRequest() once per request and routes on its result.
//
// Reference behaviour: RFC 9110 / 9112 / 3986, nginx and HAProxy. Where they differ or
// leave room, this file takes the stricter reading, because the upstreams behind an edge
// parse the forwarded request with their own rules (request smuggling, path confusion):
// - Content-Length twice is refused even with equal values (HAProxy refuses differing
//   ones and merges equal ones; a second copy has no legitimate sender), and so is a list
//   value (`5, 5`).
// - Transfer-Encoding must be exactly the one coding `chunked` (case-insensitive, RFC 9112
//   §7): `gzip, chunked` is legal HTTP but no upstream needs it from an edge, and every
//   obfuscation (`xchunked`, `chunked, chunked`, a vertical tab) falls out with it.
// - A path segment that is a dot segment once an upstream decodes `%2F` / `%5C` or strips
//   a `;param` (Tomcat, Jetty) is refused: `/public/..%2Fadmin` and `/public/..;/admin`
//   would match `/public` here and reach `/admin` there.
// - `%00` in the path is refused (as nginx does).
// - The query is forwarded byte for byte; only raw control, space, non-ASCII, `#` and `\`
//   bytes are refused there (its escapes are the application's business).
import type { ErrorCode } from '../errors';
import type { RequestLimits } from '../snapshot/types';
import { parseAuthority } from '../routing/names';

export interface CheckedRequest {
  /** As received (upper-case by HTTP convention; not changed). */
  method: string;
  /**
   * Normalized path (percent-decoded unreserved, upper-case escapes, dot segments removed,
   * no duplicate slashes), no query. `*` for `OPTIONS *` (asterisk-form).
   */
  path: string;
  /** '' or '?' + the query exactly as received. */
  query: string;
  /** What the upstream gets as request target: path + query (origin-form, or `*`). */
  target: string;
  /** Normalized authority (no port), from an absolute-form target or else Host; null when absent. */
  host: string | null;
  /** Authority as the client sent it (port kept), for Host / X-Forwarded-Host upstream. */
  authority: string | null;
  /** Declared body length; null when none or chunked. */
  contentLength: number | null;
  /** Transfer-Encoding: chunked. */
  chunked: boolean;
  /** The target was absolute-form (`https://host/path`): its authority replaced Host. */
  absoluteForm: boolean;
}

export interface RequestRefusal {
  status: 400 | 408 | 413 | 414 | 431;
  code: ErrorCode;
  message: string;
}

export type CheckResult = { ok: true; req: CheckedRequest } | ({ ok: false } & RequestRefusal);

/** Length of `: ` and CRLF around each header line, counted in maxHeaderBytes. */
const LINE_OVERHEAD = 4;
/** 2^53 - 1 has 16 digits; anything longer cannot be a safe integer. */
const MAX_CL_DIGITS = 16;

/**
 * Bytes never valid raw in a request target: controls, space, `#`, DEL, non-ASCII, and `\`
 * (not a URI character; Windows upstreams take it for `/`, so `/a\..\admin` would climb).
 */
const BAD_TARGET = /[^\x21\x22\x24-\x5b\x5d-\x7e]/;

function refuse(status: RequestRefusal['status'], message: string): CheckResult {
  const code: ErrorCode =
    status === 431 ? 'TLSGATE_E_HEADERS_TOO_LARGE'
    : status === 414 ? 'TLSGATE_E_URI_TOO_LONG'
    : 'TLSGATE_E_BAD_REQUEST';
  return { ok: false, status, code, message };
}

/**
 * rawHeaders: flat [name, value, name, value…] with names as received, from a parser that
 * enforces the field syntax (RFC 9110 §5): token names, no colon-adjacent whitespace, no CR,
 * LF or NUL in values. Both engines' parsers do (llhttp refuses with 400; uWS 20.30 accepts
 * only letters, digits and `-` in names and no control byte but HTAB in values), so this
 * function does not scan every header again (measured: that scan was half its cost).
 * httpVersion: '1.0' relaxes the Host requirement and refuses Transfer-Encoding (RFC 9112 §6.1);
 * an engine that cannot tell passes nothing and gets the HTTP/1.1 rules.
 * The body limit (413) is not checked here: a route may override it, so the stage checks
 * `contentLength` after the route match.
 */
export function checkRequest(
  method: string,
  target: string,
  rawHeaders: readonly string[],
  limits: RequestLimits,
  httpVersion = '1.1',
): CheckResult {
  if (target.length > limits.maxRequestLine) {
    return refuse(414, `request target longer than ${limits.maxRequestLine} bytes`);
  }
  const count = rawHeaders.length >> 1;
  if (count > limits.maxHeaderCount) return refuse(431, `more than ${limits.maxHeaderCount} request headers`);

  let bytes = 0;
  let hostHeader: string | null = null;
  let hosts = 0;
  let clValue: string | null = null;
  let te: string | null = null;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    const value = rawHeaders[i + 1]!;
    bytes += name.length + value.length + LINE_OVERHEAD;
    // Only the framing and authority headers matter here: length and first letter pick
    // the candidates, so most names are never lower-cased.
    const first = name.charCodeAt(0) | 0x20;
    switch (name.length) {
      case 4:
        if (first !== 0x68 /* h */ || name.toLowerCase() !== 'host') break;
        hosts++;
        hostHeader = value;
        break;
      case 14:
        if (first !== 0x63 /* c */ || name.toLowerCase() !== 'content-length') break;
        if (clValue !== null) return refuse(400, 'duplicate Content-Length');
        clValue = value;
        break;
      case 17:
        if (first !== 0x74 /* t */ || name.toLowerCase() !== 'transfer-encoding') break;
        te = te === null ? value : `${te}, ${value}`;
        break;
    }
  }
  if (bytes > limits.maxHeaderBytes) return refuse(431, `request headers larger than ${limits.maxHeaderBytes} bytes`);

  // Framing (RFC 9112 §6): exactly one way to find where the body ends.
  let contentLength: number | null = null;
  let chunked = false;
  if (te !== null) {
    if (httpVersion === '1.0') return refuse(400, 'Transfer-Encoding in an HTTP/1.0 request');
    if (clValue !== null) return refuse(400, 'Content-Length together with Transfer-Encoding');
    if (trimOws(te).toLowerCase() !== 'chunked') {
      return refuse(400, 'unsupported Transfer-Encoding (only "chunked" is accepted)');
    }
    chunked = true;
  } else if (clValue !== null) {
    const v = trimOws(clValue);
    if (v.length === 0 || v.length > MAX_CL_DIGITS || !/^[0-9]+$/.test(v)) return refuse(400, 'invalid Content-Length');
    contentLength = Number(v);
    if (!Number.isSafeInteger(contentLength)) return refuse(400, 'invalid Content-Length');
  }

  if (hosts > 1) return refuse(400, 'several Host headers');
  let host: string | null = null;
  let authority: string | null = null;
  if (hostHeader !== null) {
    const v = trimOws(hostHeader);
    const a = v === '' ? null : parseAuthority(v);
    if (a === null) return refuse(400, 'invalid Host header');
    host = a.host;
    authority = v;
  }

  // The request target (RFC 9112 §3.2).
  if (BAD_TARGET.test(target)) return refuse(400, 'invalid character in the request target');
  let pathAndQuery: string;
  let absoluteForm = false;
  if (target.charCodeAt(0) === 0x2f /* / */) {
    pathAndQuery = target;
  } else if (target === '*') {
    if (method !== 'OPTIONS') return refuse(400, 'asterisk-form target outside OPTIONS');
    if (host === null && httpVersion !== '1.0') return refuse(400, 'missing Host header');
    const req = { method, path: '*', query: '', target: '*', host, authority, contentLength, chunked, absoluteForm };
    return { ok: true, req };
  } else {
    const abs = absoluteTarget(target);
    if (abs === null) return refuse(400, method === 'CONNECT' ? 'CONNECT is not supported' : 'invalid request target');
    // RFC 9112 §3.2.2: the target's authority wins over Host.
    host = abs.host;
    authority = abs.authority;
    pathAndQuery = abs.rest;
    absoluteForm = true;
  }
  if (host === null && httpVersion !== '1.0') return refuse(400, 'missing Host header');

  const q = pathAndQuery.indexOf('?');
  const rawPath = q < 0 ? pathAndQuery : pathAndQuery.slice(0, q);
  const query = q < 0 ? '' : pathAndQuery.slice(q);
  const path = normalizePath(rawPath);
  if (path === null) return refuse(400, 'invalid request path');
  const req: CheckedRequest = {
    method,
    path,
    query,
    target: path === rawPath && !absoluteForm ? target : path + query,
    host,
    authority,
    contentLength,
    chunked,
    absoluteForm,
  };
  return { ok: true, req };
}

/** `http(s)://authority[/path][?query]` → its parts; null for any other form. */
function absoluteTarget(target: string): { host: string; authority: string; rest: string } | null {
  const sep = target.indexOf('://');
  if (sep < 0) return null;
  const scheme = target.slice(0, sep).toLowerCase();
  if (scheme !== 'https' && scheme !== 'http') return null;
  const start = sep + 3;
  let end = start;
  while (end < target.length && target[end] !== '/' && target[end] !== '?') end++;
  const authority = target.slice(start, end);
  // userinfo is forbidden in http(s) URIs (RFC 9110 §4.2.4); an empty host is no authority.
  if (authority === '' || authority.includes('@')) return null;
  const a = parseAuthority(authority);
  if (a === null) return null;
  let rest = target.slice(end);
  if (rest === '' || rest[0] === '?') rest = '/' + rest;
  return { host: a.host, authority, rest };
}

function trimOws(v: string): string {
  let s = 0;
  let e = v.length;
  while (s < e && (v.charCodeAt(s) === 0x20 || v.charCodeAt(s) === 0x09)) s++;
  while (e > s && (v.charCodeAt(e - 1) === 0x20 || v.charCodeAt(e - 1) === 0x09)) e--;
  return s === 0 && e === v.length ? v : v.slice(s, e);
}

const HEX = '0123456789ABCDEF';

function hexVal(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  c |= 0x20;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  return -1;
}

function unreserved(b: number): boolean {
  return (
    (b >= 0x61 && b <= 0x7a) || (b >= 0x41 && b <= 0x5a) || (b >= 0x30 && b <= 0x39) ||
    b === 0x2d || b === 0x2e || b === 0x5f || b === 0x7e
  );
}

/**
 * RFC 3986 §6.2.2 on an origin-form path (starts with `/`, characters already checked):
 * decode escapes of unreserved characters, upper-case the others, merge duplicate slashes,
 * remove dot segments. null: an invalid escape, `%00`, a path above `/`, or a segment that
 * an upstream could still turn into a dot segment (see the file comment).
 */
export function normalizePath(path: string): string | null {
  // The common case: nothing to decode, merge or remove; no allocation.
  if (path.indexOf('%') < 0 && path.indexOf('//') < 0 && path.indexOf('/.') < 0) return path;
  let decoded = path;
  if (path.indexOf('%') >= 0) {
    let out = '';
    let from = 0;
    for (let i = path.indexOf('%'); i >= 0; i = path.indexOf('%', i)) {
      if (i + 2 >= path.length) return null;
      const h = hexVal(path.charCodeAt(i + 1));
      const l = hexVal(path.charCodeAt(i + 2));
      if (h < 0 || l < 0) return null;
      const b = (h << 4) | l;
      if (b === 0) return null;
      out += path.slice(from, i) + (unreserved(b) ? String.fromCharCode(b) : '%' + HEX[h]! + HEX[l]!);
      i += 3;
      from = i;
    }
    decoded = out + path.slice(from);
  }
  const segments = decoded.split('/');
  const kept: string[] = [];
  // segments[0] is '' (the path starts with '/').
  const last = segments.length - 1;
  let trailingSlash = false;
  for (let i = 1; i <= last; i++) {
    const s = segments[i]!;
    if (s === '') {
      // Duplicate slash: dropped; a final empty segment is the trailing slash.
      if (i === last) trailingSlash = true;
      continue;
    }
    if (s === '.' || s === '..') {
      if (s === '..' && kept.pop() === undefined) return null;
      if (i === last) trailingSlash = true;
      continue;
    }
    if (s.indexOf('.') >= 0 && (s.indexOf('%') >= 0 || s.indexOf(';') >= 0) && hiddenDotSegment(s)) return null;
    kept.push(s);
  }
  if (kept.length === 0) return '/';
  return '/' + kept.join('/') + (trailingSlash ? '/' : '');
}

/** `..;x`, `.;`, `..%2F…`, `x%5C..`: a dot segment for an upstream that splits on `;`, `%2F` or `%5C`. */
function hiddenDotSegment(s: string): boolean {
  // Escapes are upper-case here (normalizePath wrote them).
  for (const part of s.split(/%2F|%5C/)) {
    const semi = part.indexOf(';');
    const p = semi >= 0 ? part.slice(0, semi) : part;
    if (p === '.' || p === '..') return true;
  }
  return false;
}
