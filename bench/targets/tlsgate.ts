// How the bench launches tlsgate. This is the one function to change if the CLI changes.
import { existsSync } from 'node:fs';
import { STANDIN_JS, TLSGATE_CLI } from '../lib/paths';

export interface GatewayCommand {
  cmd: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
}

/**
 * The command that starts tlsgate on a config file, or a reason it can't run here.
 * The gateway must: serve the config's listener, answer `GET /v1/status` (X-API-KEY) on
 * admin.listen with `{ version, workers: [{ pid, version }] }`, reload when the config
 * file changes, and may log `compile_ms` (pino JSON, stdout) when a snapshot is built.
 */
export function tlsgateCommand(configFile: string): GatewayCommand | string {
  if (!existsSync(TLSGATE_CLI)) return `${TLSGATE_CLI} not built (npx tsc -p tsconfig.json)`;
  return { cmd: process.execPath, args: [TLSGATE_CLI, 'start', '--config', configFile] };
}

/**
 * A plain node:https cluster with the same CLI, config and admin contract: the
 * "node https" baseline, and what the harness is validated against before tlsgate runs.
 */
export function standinCommand(configFile: string, o: { tickets: boolean }): GatewayCommand | string {
  if (!existsSync(STANDIN_JS)) return `${STANDIN_JS} not built (npx tsc -p tsconfig.test.json)`;
  return { cmd: process.execPath, args: [STANDIN_JS, 'start', '--config', configFile], env: { ...process.env, STANDIN_TICKETS: o.tickets ? '1' : '0' } };
}
