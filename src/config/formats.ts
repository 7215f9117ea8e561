// Value formats for everything a config sends to a socket or writes into a header.
// A value that passes here cannot make node:net, undici, node:http or uWS throw:
// those throws happen in a worker, after the primary has acked the reload.
import { isIP } from 'node:net';
import { normalizeHost } from '../routing/names';

/** RFC 9110 §5.6.2 token: header names, methods. */
export const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/** Node's own header value check (lib/_http_common.js): HTAB, SP-~ and obs-text; never CR, LF or NUL. */
const FIELD_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** Framing and hop-by-hop headers: a config-set value would desynchronise the response or the connection. */
export const FRAMING_HEADERS: ReadonlySet<string> = new Set([
  'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'proxy-connection',
]);

export function headerName(v: string): string | null {
  if (TOKEN.test(v)) return null;
  return `${JSON.stringify(v)} is not a header name (RFC 9110 token: letters, digits and !#$%&'*+.^_\`|~-)`;
}

export function headerValue(v: string): string | null {
  if (FIELD_VALUE.test(v)) return null;
  const bad = [...v].find((ch) => !FIELD_VALUE.test(ch))!;
  const names: Record<string, string> = { '\r': 'CR', '\n': 'LF', '\0': 'NUL' };
  const name = names[bad] ?? `U+${bad.codePointAt(0)!.toString(16).padStart(4, '0')}`;
  return `holds ${name}, which a header value cannot (control characters other than tab, and characters above U+00FF)`;
}

/**
 * WHATWG URL (which undici parses every origin with) reads a host whose last label is a
 * number as IPv4: "999.1.1.1" and "a.1" throw ERR_INVALID_URL in the worker, "0x7f.1" becomes
 * 127.0.0.1. Only a strict dotted quad (isIP) may end in a number.
 */
function endsInNumber(host: string): boolean {
  const last = host.replace(/\.$/, '').split('.').pop() ?? '';
  return /^(?:\d+|0x[0-9a-f]*)$/i.test(last);
}

/**
 * A host name that the URL parser keeps as written (no IPv4 reinterpretation, no throw).
 * For ASCII labels that are not numeric, only punycode (`xn--`) can still fail there
 * ("xn--a.com" throws ERR_INVALID_URL): parse just those, ~5 µs each.
 */
function dnsName(v: string): boolean {
  if (normalizeHost(v) === null || endsInNumber(v)) return false;
  if (!/(?:^|\.)xn--/i.test(v)) return true;
  try {
    return new URL(`http://${v}:1/`).hostname === v.toLowerCase();
  } catch {
    return false;
  }
}

/** A host a socket can connect to: a DNS name or a bare IP literal. Returns a message, or null when valid. */
export function connectHost(v: string): string | null {
  if (isIP(v)) return null;
  const bracketed = v.startsWith('[') && v.endsWith(']') && isIP(v.slice(1, -1)) === 6;
  if (bracketed) return `${JSON.stringify(v)}: write an IPv6 address without brackets`;
  const numeric = normalizeHost(v) !== null && endsInNumber(v);
  if (numeric) return `${JSON.stringify(v)} ends in a number but is not an IPv4 address`;
  return dnsName(v) ? null : `${JSON.stringify(v)} is not a host name or IP address`;
}

/** A Host header value: host name or IP literal (IPv6 in brackets), optional `:port`. */
export function hostHeader(v: string): string | null {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(v);
  const port = m?.[2] === undefined ? 1 : Number(m[2]);
  const host = m?.[1] ?? '';
  const ipv6 = host.startsWith('[');
  const hostOk = ipv6 ? isIP(host.slice(1, -1)) === 6 : isIP(host) === 4 || dnsName(host);
  if (m && hostOk && port >= 1 && port <= 65535) return null;
  return `${JSON.stringify(v)} is not a Host value (a host name or IP address, optionally :port; IPv6 in brackets)`;
}

/** TLS SNI (RFC 6066 §3): a DNS name, never an IP literal. */
export function sniName(v: string): string | null {
  const ip = isIP(v) || isIP(v.replace(/^\[|\]$/g, ''));
  if (ip) return `${JSON.stringify(v)} is an IP address; SNI carries host names only (RFC 6066)`;
  return dnsName(v) ? null : `${JSON.stringify(v)} is not a host name`;
}

const BIND_NAMES = new Set(['localhost', 'ip6-localhost']);

/** An address a listener can bind without a DNS lookup: an IP literal or localhost. */
export function bindHost(v: string): string | null {
  if (isIP(v) || BIND_NAMES.has(v.toLowerCase())) return null;
  return `${JSON.stringify(v)} is not an address to listen on (an IP address such as 0.0.0.0 or ::, or localhost)`;
}

// Special-use and private single-label names (RFC 6761, RFC 6762, common intranet use): a
// wildcard over them is a deployment's own choice, not a wildcard over the public Internet.
const PRIVATE_TLDS = new Set([
  'localhost', 'test', 'example', 'invalid', 'local', 'internal', 'lan', 'home', 'corp', 'intranet',
]);

// Common multi-label public suffixes (ICANN second levels and the largest hosting
// suffixes of the Public Suffix List). Single-label TLDs are caught by rule, not list.
// Why not the `psl` package: it is a 200 KB list refreshed by releases; what an edge needs
// is to stop the common accident (`*.co.uk`, `*.github.io`), and a CA will not issue past it anyway.
const PUBLIC_SUFFIXES = new Set([
  'co.uk', 'org.uk', 'me.uk', 'ltd.uk', 'plc.uk', 'net.uk', 'ac.uk', 'gov.uk', 'sch.uk', 'nhs.uk',
  'com.au', 'net.au', 'org.au', 'edu.au', 'gov.au', 'id.au', 'co.nz', 'org.nz', 'net.nz', 'govt.nz',
  'co.jp', 'ne.jp', 'or.jp', 'ac.jp', 'go.jp', 'co.kr', 'or.kr', 'com.cn', 'net.cn', 'org.cn', 'gov.cn',
  'com.hk', 'com.tw', 'com.sg', 'com.my', 'com.ph', 'com.vn', 'co.id', 'co.th', 'in.th', 'co.in', 'net.in',
  'org.in', 'gov.in', 'com.br', 'net.br', 'org.br', 'gov.br', 'com.ar', 'com.mx', 'com.co', 'com.pe', 'co.za',
  'org.za', 'com.tr', 'co.il', 'org.il', 'com.ua', 'com.pl', 'com.es', 'com.pt', 'com.ru', 'co.at', 'or.at',
  'com.eg', 'com.sa', 'com.ng', 'co.ke', 'com.pk',
  'github.io', 'gitlab.io', 'herokuapp.com', 'appspot.com', 'cloudfront.net', 'amazonaws.com',
  's3.amazonaws.com', 'elasticbeanstalk.com', 'azurewebsites.net', 'cloudapp.net', 'blogspot.com',
  'vercel.app', 'netlify.app', 'pages.dev', 'workers.dev', 'web.app', 'firebaseapp.com', 'fly.dev',
  'onrender.com', 'ngrok.io', 'ngrok-free.app', 'glitch.me', 'repl.co', 'azurestaticapps.net',
]);

/** The public suffix a `*.` pattern spans, or null when the wildcard is below a registrable domain. */
export function wildcardOverPublicSuffix(pattern: string): string | null {
  if (!pattern.startsWith('*.')) return null;
  const parent = pattern.slice(2).toLowerCase();
  if (!parent.includes('.')) return PRIVATE_TLDS.has(parent) ? null : parent;
  return PUBLIC_SUFFIXES.has(parent) ? parent : null;
}

/** Levenshtein distance, for "did you mean" on unknown fields (names are short). */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** The known name nearest to `name`, when close enough to be a typo. */
export function nearest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = editDistance(name.toLowerCase(), k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined;
}
