import type { GatewayConfig } from './types';

/** Each field of a config that may hold a secret or a reference, with its path. */
export function secretFields(c: GatewayConfig): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  c.admin?.api_keys.forEach((k, i) =>
    out.push(typeof k === 'string' ? [`admin.api_keys[${i}]`, k] : [`admin.api_keys[${i}].key`, k.key]),
  );
  if (c.admin?.tls) out.push(['admin.tls.cert', c.admin.tls.cert], ['admin.tls.key', c.admin.tls.key]);
  c.ssls.forEach((s, i) => {
    out.push([`ssls[${i}].cert`, s.cert], [`ssls[${i}].key`, s.key]);
    s.certs.forEach((v, j) => out.push([`ssls[${i}].certs[${j}]`, v]));
    s.keys.forEach((v, j) => out.push([`ssls[${i}].keys[${j}]`, v]));
    if (s.client) out.push([`ssls[${i}].client.ca`, s.client.ca]);
    if (s.client?.crl !== undefined) out.push([`ssls[${i}].client.crl`, s.client.crl]);
  });
  c.upstreams.forEach((u, i) => {
    if (u.tls?.ca) out.push([`upstreams[${i}].tls.ca`, u.tls.ca]);
  });
  return out;
}
