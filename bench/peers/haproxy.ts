// HAProxy as a peer: same certificate, same direct 200 (http-request return), same upstream.
// One thread unless --workers N (HAProxy scales with threads, not processes); -db keeps it in the foreground.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, startProcess, waitForPort } from '../lib/spawn';
import { which } from '../lib/machine';
import type { RunningServer, ServerSpec, Target } from '../targets/types';

export interface HaproxyConfOptions {
  port: number;
  threads: number;
  upstreamPort: number;
  /** PEM with certificate and key. */
  pemFile: string;
  /** crt-list of extra certificates, if any. */
  crtList?: string;
  protocol: string;
  tickets: boolean;
}

export function haproxyConf(o: HaproxyConfOptions): string {
  const ver = o.protocol === 'TLSv1.3' ? 'TLSv1.3' : 'TLSv1.2';
  return `global
  nbthread ${o.threads}
  maxconn 8000
  # no session cache for the full-handshake runs: every connection does the whole handshake
  tune.ssl.cachesize ${o.tickets ? 20000 : 0}
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  timeout http-keep-alive 75s
frontend fe
  bind 127.0.0.1:${o.port} ssl crt ${o.pemFile}${o.crtList ? ` crt-list ${o.crtList}` : ''} ssl-min-ver ${ver} ssl-max-ver ${ver}${o.tickets ? '' : ' no-tls-tickets'}
  http-request return status 200 content-type text/plain string ok unless { path_beg /proxy }
  default_backend up
backend up
  http-reuse always
  server s1 127.0.0.1:${o.upstreamPort}
`;
}

export const haproxyTarget: Target = {
  name: 'haproxy',
  kind: 'peer',
  absent: () => (which('haproxy') ? null : 'haproxy is not installed (apt-get install haproxy)'),
  async start(spec: ServerSpec): Promise<RunningServer> {
    const bin = which('haproxy')!;
    const port = await freePort();
    const pair = spec.fixtures[spec.alg];
    const pemFile = join(spec.workDir, 'bench.pem');
    writeFileSync(pemFile, pair.cert + pair.key, { mode: 0o600 });
    let crtList: string | undefined;
    if (spec.sniSet) {
      // HAProxy wants the key in the PEM (or a .key beside it): one combined PEM per certificate.
      const key = readFileSync(spec.sniSet.keyFile, 'utf8');
      const lines: string[] = [];
      for (let i = 0; i < spec.sniSet.count; i++) {
        const f = join(spec.workDir, `s${i}.pem`);
        writeFileSync(f, readFileSync(spec.sniSet.certFile(i), 'utf8') + key);
        lines.push(`${f} ${spec.sniSet.sni(i)}`);
      }
      crtList = join(spec.workDir, 'crt-list.txt');
      writeFileSync(crtList, lines.join('\n') + '\n');
    }
    const confFile = join(spec.workDir, 'haproxy.cfg');
    writeFileSync(
      confFile,
      haproxyConf({ port, threads: spec.workers, upstreamPort: spec.upstreamPort, pemFile, crtList, protocol: spec.protocol, tickets: spec.tickets }),
    );
    const proc = startProcess('haproxy', bin, ['-f', confFile, '-db'], { cpus: spec.cpus });
    await waitForPort(port, proc, spec.sniSet ? 600000 : 15000).catch(async (err: unknown) => {
      await proc.stop();
      throw err;
    });
    return { target: 'haproxy', pid: proc.pid, port, stop: () => proc.stop() };
  },
};
