// The gateway most HTTP tests run every case against: one worker, the admin API, and two
// listeners on one certificate, `n` on the node engine and `u` on uws (DESIGN.md: every
// HTTP case runs against both engines).
import { Gateway, freePort } from './gateway';
import type { Issued } from './pki';

export type EnginePorts = Record<'node' | 'uws', number>;

/** Free ports for listeners `n` (node) and `u` (uws), and for gw's admin API (set on gw). */
export async function twoEnginePorts(gw: Gateway): Promise<EnginePorts> {
  const [node, uws, admin] = await Promise.all([freePort(), freePort(), freePort()]);
  gw.adminPort = admin;
  return { node, uws };
}

/** A config's first lines: one worker, gw's admin API, listeners `n` and `u` with `defaultSsl`. */
export function twoEngineHead(gw: Gateway, ports: EnginePorts, defaultSsl: string): string {
  return `
workers: 1
admin: { listen: 127.0.0.1:${gw.adminPort}, api_keys: ["${gw.apiKey}"] }
listeners:
  - { name: n, listen: 127.0.0.1:${ports.node}, engine: node, default_ssl: ${defaultSsl} }
  - { name: u, listen: 127.0.0.1:${ports.uws}, engine: uws, default_ssl: ${defaultSsl} }
`;
}

/**
 * Starts gw on two engines with one SSL object, `front` (files front.crt / front.key), the
 * listeners' default; `rest` is the YAML after `ssls` (upstreams, routes, …). Resolves to the
 * listeners' ports once the gateway serves.
 */
export async function startTwoEngineGateway(
  gw: Gateway,
  front: Issued,
  snis: string,
  rest: string,
): Promise<EnginePorts> {
  const ports = await twoEnginePorts(gw);
  gw.write('front.crt', front.cert);
  gw.write('front.key', front.key);
  await gw.start(`${twoEngineHead(gw, ports, 'front')}ssls:
  - { id: front, snis: ${snis}, cert: "$file://front.crt", key: "$file://front.key" }
${rest}`);
  return ports;
}
