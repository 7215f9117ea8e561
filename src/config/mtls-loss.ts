// Which names a config change leaves without client certificate verification. An mTLS
// SSL object disabled or removed while a plain wildcard (or a listener's default_ssl)
// still answers for its names turns "client certificate required" into "anyone" with
// no handshake failing: the change must be named, never silent.
import { wildcardParent } from '../routing/names';
import type { ConfigIssue } from '../errors';
import type { GatewayConfig, SslConfig } from './types';

export interface MtlsLoss {
  /** A name (or `*.` pattern) that had client verification. */
  sni: string;
  /** Id of the mTLS SSL object that served it. */
  from: string;
  /** Id of the SSL object that serves it now, without a client CA. */
  to: string;
}

type Cfg = Pick<GatewayConfig, 'ssls' | 'listeners'>;

/**
 * Names served with mTLS in `prev` that `next` serves without it. With no `prev` (the
 * `validate` command, start-up), the names of *disabled* mTLS objects that `next` serves
 * without a client CA: the config itself shadows them.
 * Primary use: on reload, `mtlsLoss(current.config, next.config)` → reload result warnings
 * and one audit entry per name.
 */
export function mtlsLoss(prev: Cfg | undefined, next: Cfg): MtlsLoss[] {
  const before = prev
    ? prev.ssls.filter((s) => live(s) && s.client)
    : next.ssls.filter((s) => s.type === 'server' && s.status === 'disabled' && s.client);
  if (before.length === 0) return [];
  const map = sniMap(next);
  const fallback = defaultSsl(next);
  const out: MtlsLoss[] = [];
  for (const s of before) {
    for (const sni of s.snis) {
      const now = serving(map, sni) ?? fallback;
      if (now && !now.client) out.push({ sni, from: s.id, to: now.id });
    }
  }
  return out;
}

function live(s: SslConfig): boolean {
  return s.type === 'server' && s.status === 'enabled';
}

function sniMap(c: Cfg): Map<string, SslConfig> {
  const m = new Map<string, SslConfig>();
  for (const s of c.ssls) if (live(s)) for (const n of s.snis) if (!m.has(n)) m.set(n, s);
  return m;
}

/** The SSL object a client asking for `name` gets by SNI (DESIGN.md "SNI rules"). */
function serving(map: Map<string, SslConfig>, name: string): SslConfig | undefined {
  const exact = map.get(name);
  if (exact || name.startsWith('*.')) return exact;
  const parent = wildcardParent(name);
  return parent ? map.get('*.' + parent) : undefined;
}

/** No SNI match: a listener's default_ssl answers (else the handshake fails). The weakest is what a client can get. */
function defaultSsl(c: Cfg): SslConfig | undefined {
  const byId = new Map(c.ssls.filter(live).map((s) => [s.id, s]));
  const defaults = c.listeners.map((l) => (l.default_ssl ? byId.get(l.default_ssl) : undefined));
  return defaults.find((d) => d && !d.client) ?? defaults.find((d) => d !== undefined);
}

/**
 * The losses as reload warnings (`TLSGATE_E_MTLS_LOSS`), one per name, at the path of the
 * object that had mTLS (in `next` when it is still there, else `prev`).
 */
export function mtlsLossIssues(prev: Cfg | undefined, next: Cfg): ConfigIssue[] {
  const index = (c: Cfg | undefined): Map<string, number> => new Map(c?.ssls.map((s, i) => [s.id, i]));
  const [nextAt, prevAt] = [index(next), index(prev)];
  return mtlsLoss(prev, next).map((l) => {
    const inNext = nextAt.get(l.from) ?? -1;
    const inPrev = prevAt.get(l.from) ?? -1;
    const path = inNext >= 0 ? `ssls[${inNext}]` : `ssls[${inPrev}] (removed)`;
    const how = inNext < 0 ? 'removed' : next.ssls[inNext]!.status === 'disabled' ? 'disabled' : 'without client.ca';
    return {
      path,
      code: 'TLSGATE_E_MTLS_LOSS' as const,
      severity: 'warning' as const,
      message: `"${l.sni}" loses client certificate verification: mTLS SSL object "${l.from}" is ${how}, ` +
        `"${l.to}" serves it without a client CA`,
    };
  });
}
