// Header rewriting in both directions. Works on Node's flat `rawHeaders` arrays
// (name, value, name, value…) and produces flat arrays, which both the upstream client
// (h1-client.ts) and `res.writeHead(status, string[])` take
// as-is: no header objects are built per request.
import type { ClientIdentity, ProxyContext } from './options';

/** RFC 9110 §7.6.1 connection-specific fields, plus `Proxy-Connection` (RFC 9112 §9.6). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'transfer-encoding', 'upgrade']);

const HOP_BY_HOP_LENGTHS = new Set([...HOP_BY_HOP].map((n) => n.length));

/**
 * Names the gateway sets or frames by. An upstream behind CGI, WSGI, PHP or Rack sees
 * `X_Client_Verify` and `X-Client-Verify` as the same variable (HTTP_X_CLIENT_VERIFY), and
 * some servers read `Transfer_Encoding` as `Transfer-Encoding`: a client's `_` spelling of
 * one of these is dropped like the name itself (nginx drops every `_` name by default).
 */
const GATEWAY_OWNED = new Set([
  ...HOP_BY_HOP,
  'host',
  'content-length',
  'expect',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
]);
/** Connection cannot name these away: the upstream needs them to route and frame the request. */
const NOT_HOP_BY_HOP = new Set(['host', 'content-length']);

/** The identity header names stripped from every request, whatever the upstream config says. */
export const DEFAULT_IDENTITY_HEADERS = Object.freeze({
  subject: 'X-Client-Cert-Subject',
  fingerprint: 'X-Client-Cert-Fingerprint',
  verify: 'X-Client-Verify',
});

export interface RequestHeaderPlan {
  /** Replaces the client's Host when set. */
  host?: string;
  /** Lower-cased names never forwarded from the client: identity headers (default + configured). */
  strip: ReadonlySet<string>;
  /** Names to set from the verified client certificate; undefined = not sent. */
  identity?: { subject: string; fingerprint: string; verify: string };
}

export function requestHeaderPlan(
  host: string | undefined,
  identity: { subject: string; fingerprint: string; verify: string } | undefined,
): RequestHeaderPlan {
  const strip = new Set<string>([
    DEFAULT_IDENTITY_HEADERS.subject.toLowerCase(),
    DEFAULT_IDENTITY_HEADERS.fingerprint.toLowerCase(),
    DEFAULT_IDENTITY_HEADERS.verify.toLowerCase(),
  ]);
  if (identity) {
    // Both spellings of a configured name: a CGI-style upstream cannot tell `_` from `-`.
    for (const n of [identity.subject, identity.fingerprint, identity.verify]) {
      strip.add(n.toLowerCase());
      strip.add(n.toLowerCase().replace(/_/g, '-'));
    }
  }
  return { host, strip, identity };
}

export interface ForwardRequestHeaders {
  headers: string[];
  /** The request has a body (Content-Length > 0 or Transfer-Encoding). */
  hasBody: boolean;
  /** `Expect: 100-continue` was sent (not forwarded: the gateway answers 100 itself). */
  expectContinue: boolean;
}

/** Tokens of a Connection header other than keep-alive/close, lower-cased; null if none. */
function connectionTokens(value: string, into: Set<string> | null): Set<string> | null {
  // Nearly every Connection header is exactly one of these: no split for them.
  if (value.length <= 10) {
    const v = value.toLowerCase();
    if (v === 'keep-alive' || v === 'close') return into;
  }
  for (const t of value.split(',')) {
    const tok = t.trim().toLowerCase();
    if (tok === '' || tok === 'close' || tok === 'keep-alive' || NOT_HOP_BY_HOP.has(tok)) continue;
    (into ??= new Set()).add(tok);
  }
  return into;
}

/** Header values cannot carry CR/LF or non-Latin-1; percent-encode what would be refused. */
function headerSafe(v: string): string {
  // eslint-disable-next-line no-control-regex
  return /[^\t\x20-\x7e]/.test(v)
    ? v.replace(/\r?\n/g, ',').replace(/[^\t\x20-\x7e]/gu, (c) => encodeURIComponent(c))
    : v;
}

/** raw: the client's headers, flat [name, value, …] as received (order, case, duplicates kept). */
export function forwardRequestHeaders(
  raw: readonly string[],
  plan: RequestHeaderPlan,
  ctx: ProxyContext,
): ForwardRequestHeaders {
  const out: string[] = [];
  let named: Set<string> | null = null;
  let xff: string | undefined;
  let clientHost: string | undefined;
  let hasBody = false;
  let expectContinue = false;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    const lower = name.toLowerCase();
    if (lower.indexOf('_') >= 0) {
      const dashed = lower.replace(/_/g, '-');
      if (GATEWAY_OWNED.has(dashed) || plan.strip.has(dashed)) continue;
    }
    switch (lower) {
      case 'host':
        // Absolute-form target: its authority is the Host (RFC 9112 §3.2.2).
        if (clientHost === undefined && plan.host === undefined) out.push(name, ctx.authority ?? value);
        clientHost ??= value;
        continue;
      case 'x-forwarded-for':
        xff = xff === undefined ? value : `${xff}, ${value}`;
        continue;
      case 'x-forwarded-proto':
      case 'x-forwarded-host':
        continue;
      case 'content-length':
        if (value !== '0') hasBody = true;
        out.push(name, value);
        continue;
      case 'transfer-encoding':
        hasBody = true;
        continue;
      case 'expect':
        if (value.toLowerCase() === '100-continue') expectContinue = true;
        continue;
      case 'connection':
        named = connectionTokens(value, named);
        continue;
    }
    if (HOP_BY_HOP.has(lower) || plan.strip.has(lower)) continue;
    out.push(name, value);
  }
  let headers = out;
  if (named !== null) {
    headers = [];
    for (let i = 0; i < out.length; i += 2) if (!named.has(out[i]!.toLowerCase())) headers.push(out[i]!, out[i + 1]!);
  }
  if (plan.host !== undefined) headers.push('host', plan.host);
  headers.push('x-forwarded-for', xff === undefined ? ctx.remoteAddress : `${xff}, ${ctx.remoteAddress}`);
  headers.push('x-forwarded-proto', ctx.proto);
  const fwdHost = ctx.authority ?? clientHost;
  if (fwdHost !== undefined) headers.push('x-forwarded-host', fwdHost);
  if (plan.identity !== undefined && ctx.clientCert !== undefined) pushIdentity(headers, plan.identity, ctx.clientCert);
  return { headers, hasBody, expectContinue };
}

function pushIdentity(
  out: string[],
  names: { subject: string; fingerprint: string; verify: string },
  id: ClientIdentity,
): void {
  out.push(
    names.subject,
    headerSafe(id.subject),
    names.fingerprint,
    headerSafe(id.fingerprint),
    names.verify,
    'SUCCESS',
  );
}

/**
 * Upstream response headers (flat, as the parser gives them, latin1 so bytes round-trip)
 * → flat strings for `writeHead`, without hop-by-hop fields.
 */
export function forwardResponseHeaders(raw: readonly string[]): string[] {
  const out: string[] = [];
  let named: Set<string> | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const value = raw[i + 1]!;
    // Only names as long as a hop-by-hop one are lower-cased and looked up.
    if (HOP_BY_HOP_LENGTHS.has(name.length)) {
      const lower = name.toLowerCase();
      if (HOP_BY_HOP.has(lower)) {
        if (lower === 'connection') named = connectionTokens(value, named);
        continue;
      }
    }
    out.push(name, value);
  }
  if (named === null) return out;
  const kept: string[] = [];
  for (let i = 0; i < out.length; i += 2) if (!named.has(out[i]!.toLowerCase())) kept.push(out[i]!, out[i + 1]!);
  return kept;
}
