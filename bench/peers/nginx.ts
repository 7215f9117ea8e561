// nginx as a peer: same certificate, same direct 200, same upstream as tlsgate.
// One worker unless --workers N; started in the foreground with its own prefix dir.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processTree } from '../lib/proc';
import { freePort, runToEnd, startProcess, waitForPort } from '../lib/spawn';
import { which } from '../lib/machine';
import type { RunningServer, ServerSpec, Target } from '../targets/types';

export interface NginxConfOptions {
  prefix: string;
  port: number;
  workers: number;
  upstreamPort: number;
  certFile: string;
  keyFile: string;
  protocol: string;
  tickets: boolean;
  /** Extra server blocks: [sni, certFile, keyFile]. */
  extra?: Array<[string, string, string]>;
}

// Started as root (CI), nginx runs its workers as nobody, who cannot write the temp files
// under our 0700 work dir: a proxied response the client reads slowly is spooled to disk and
// was cut ("aborted", seen under load). Workers keep the master's user instead.
const userLine = (): string => (process.getuid?.() === 0 ? 'user root;\n' : '');

const commonHead = (prefix: string, workers: number): string => `
${userLine()}worker_processes ${workers};
daemon off;
master_process on;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 8192; }
`;
const tempPaths = (prefix: string): string =>
  ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${prefix}/tmp/${t};`).join('\n');

export function nginxConf(o: NginxConfOptions): string {
  const ssl = (cert: string, key: string): string => `
    ssl_certificate ${cert};
    ssl_certificate_key ${key};
    ssl_protocols ${o.protocol};
    ssl_session_tickets ${o.tickets ? 'on' : 'off'};
    ssl_session_cache ${o.tickets ? 'shared:SSL:10m' : 'off'};`;
  const locations = `
    location /proxy {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    location / {
      default_type text/plain;
      return 200 "ok";
    }`;
  const extra = (o.extra ?? [])
    .map(([sni, cert, key]) => `  server {\n    listen 127.0.0.1:${o.port} ssl;\n    server_name ${sni};${ssl(cert, key)}${locations}\n  }`)
    .join('\n');
  return `${commonHead(o.prefix, o.workers)}
http {
  access_log off;
${tempPaths(o.prefix)}
  # nginx closes a keep-alive connection after 1000 requests by default; the others don't.
  keepalive_requests 10000000;
  keepalive_timeout 75s;
  server_names_hash_max_size 262144;
  server_names_hash_bucket_size 128;
  upstream up {
    server 127.0.0.1:${o.upstreamPort};
    keepalive 64;
  }
  server {
    listen 127.0.0.1:${o.port} ssl default_server;
    server_name bench.test localhost;${ssl(o.certFile, o.keyFile)}${locations}
  }
${extra}
}
`;
}

/** A static 200 on plain HTTP: the cheapest upstream there is, and never the measured process. */
export function nginxUpstreamConf(prefix: string, port: number): string {
  return `${commonHead(prefix, 1)}
http {
  access_log off;
${tempPaths(prefix)}
  keepalive_requests 10000000;
  server {
    listen 127.0.0.1:${port};
    location / { default_type text/plain; return 200 "upstream ok"; }
  }
}
`;
}

export async function startNginx(name: string, prefix: string, conf: string, port: number, cpus?: string, timeoutMs = 60000, workers = 1): Promise<RunningServer> {
  const bin = which('nginx');
  if (!bin) throw new Error('nginx not found');
  mkdirSync(join(prefix, 'tmp'), { recursive: true });
  const confFile = join(prefix, 'nginx.conf');
  writeFileSync(confFile, conf);
  const proc = startProcess(name, bin, ['-p', prefix, '-c', confFile, '-e', join(prefix, 'error.log')], { cpus });
  await waitForPort(port, proc, timeoutMs).catch(async (err: unknown) => {
    await proc.stop();
    throw err;
  });
  // The master opens the port before it forks workers: with 10k server blocks that is
  // seconds in which nothing answers and the tree's RSS is the master's alone.
  const deadline = Date.now() + timeoutMs;
  while (processTree(proc.pid).length < workers + 1) {
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`${name}: ${workers} worker(s) not started within ${timeoutMs} ms`);
    }
    await sleep(20);
  }
  return { target: name, pid: proc.pid, port, stop: () => proc.stop() };
}

export const nginxTarget: Target = {
  name: 'nginx',
  kind: 'peer',
  absent: () => (which('nginx') ? null : 'nginx is not installed (apt-get install nginx-light)'),
  async start(spec: ServerSpec): Promise<RunningServer> {
    const port = await freePort();
    const pair = spec.fixtures[spec.alg];
    const conf = nginxConf({
      prefix: spec.workDir,
      port,
      workers: spec.workers,
      upstreamPort: spec.upstreamPort,
      certFile: pair.certFile,
      keyFile: pair.keyFile,
      protocol: spec.protocol,
      tickets: spec.tickets,
      extra: spec.sniSet
        ? Array.from({ length: spec.sniSet.count }, (_, i): [string, string, string] => [spec.sniSet!.sni(i), spec.sniSet!.certFile(i), spec.sniSet!.keyFile])
        : undefined,
    });
    const timeoutMs = spec.sniSet ? 600000 : 15000;
    const s = await startNginx('nginx', spec.workDir, conf, port, spec.cpus, timeoutMs, spec.workers);
    const bin = which('nginx')!;
    const confFile = join(spec.workDir, 'nginx.conf');
    return {
      ...s,
      async reload() {
        const args = ['-p', spec.workDir, '-c', confFile, '-s', 'reload'];
        const r = await runToEnd('nginx -s reload', bin, args, { timeoutMs: 60_000 });
        if (r.code !== 0) throw new Error(`nginx -s reload exited ${r.code}: ${r.stderr}`);
      },
    };
  },
};
