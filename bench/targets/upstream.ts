import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nginxUpstreamConf, startNginx } from '../peers/nginx';
import { which } from '../lib/machine';
import { freePort, startProcess, waitForPort } from '../lib/spawn';
import type { RunningServer } from './types';

/**
 * The upstream of the proxied route, shared by every target in a run. nginx serving a
 * static 200 costs the least CPU; it runs on the client core so it takes nothing from
 * the measured server, and its CPU is not in the server's process tree.
 */
export async function startUpstream(cpus?: string): Promise<RunningServer & { kind: string }> {
  const port = await freePort();
  if (which('nginx')) {
    const prefix = mkdtempSync(join(tmpdir(), 'tlsgate-bench-upstream-'));
    const s = await startNginx('upstream', prefix, nginxUpstreamConf(prefix, port), port, cpus);
    return { ...s, kind: 'nginx static 200' };
  }
  const proc = startProcess('upstream', process.execPath, [join(__dirname, 'upstream-server.js'), String(port)], { cpus });
  await waitForPort(port, proc);
  return { target: 'upstream', pid: proc.pid, port, stop: () => proc.stop(), kind: 'node:http 200' };
}
