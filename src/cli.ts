#!/usr/bin/env node
// tlsgate start --config FILE | tlsgate validate --config FILE
import cluster from 'node:cluster';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, formatIssue, TlsgateError } from './errors';
import { createLogger } from './log';

const DEFAULT_CONFIG = join(__dirname, '..', 'config', 'gateway.yaml');
const USAGE = `usage: tlsgate start --config FILE
       tlsgate validate --config FILE`;

async function main(argv: string[]): Promise<number> {
  if (cluster.isWorker) {
    const { runWorker } = await import('./worker/worker');
    runWorker();
    return -1;
  }
  const [cmd, ...rest] = argv;
  const i = rest.indexOf('--config');
  const configPath = i >= 0 ? rest[i + 1] : undefined;
  if ((cmd !== 'start' && cmd !== 'validate') || !configPath) {
    process.stderr.write(USAGE + '\n');
    return 2;
  }
  const file = resolve(configPath);
  if (file === DEFAULT_CONFIG) {
    const { ensureDevMaterial } = await import('./certs/dev');
    const dev = ensureDevMaterial(join(dirname(file), 'dev'));
    if (dev.created) process.stderr.write(`tlsgate: created dev CA, localhost certificate and admin API key in ${dev.dir}\n`);
  }
  return cmd === 'validate' ? validate(file) : start(file);
}

async function validate(file: string): Promise<number> {
  const { loadConfigFile } = await import('./config/load');
  const { resolveConfig } = await import('./config/resolve');
  const { compileSnapshot } = await import('./snapshot/compile');
  const { CertValidator } = await import('./certs/pool');
  const { SecretStore } = await import('./secrets/store');
  const validator = new CertValidator(1);
  const store = new SecretStore({ logger: { warn: (_o, m) => process.stderr.write(`warning: ${m}\n`) }, baseDir: dirname(file) });
  try {
    const loaded = await loadConfigFile(file);
    const { engineLoadIssues } = await import('./engines/uws-load');
    const engineIssues = engineLoadIssues(loaded.config.listeners);
    if (engineIssues.length) throw new ConfigError(engineIssues.map((i) => ({ ...i, code: 'TLSGATE_E_ENGINE_LOAD' as const, severity: 'error' as const })));
    const resolved = await resolveConfig(loaded.config, store);
    const compiled = await compileSnapshot(resolved, validator);
    for (const w of [...loaded.issues, ...compiled.warnings]) process.stdout.write(`warning: ${formatIssue(w)}\n`);
    const s = compiled.snapshot;
    process.stdout.write(`${file}: valid — ${s.listeners.length} listener(s), ${s.ssls.length} ssl(s), ${s.sni.length} sni(s), ${s.routes.length} route(s), ${s.upstreams.length} upstream(s)\n`);
    return 0;
  } catch (err) {
    printError(err);
    return 1;
  } finally {
    await Promise.all([validator.close(), store.close()]);
  }
}

async function start(file: string): Promise<number> {
  const { Primary } = await import('./primary/primary');
  const { loadConfigFile } = await import('./config/load');
  // The log settings come from the file; a broken file is reported by start() below.
  const level = await loadConfigFile(file).then((l) => l.config.log, () => ({ level: 'info' as const, file: undefined }));
  const log = createLogger({ level: level.level, ...(level.file ? { file: level.file } : {}), name: 'primary' });
  const primary = new Primary(file, log);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    void primary.shutdown().then(() => process.exit(0));
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  try {
    await primary.start();
    return -1;
  } catch (err) {
    log.fatal({ err }, 'tlsgate cannot start');
    printError(err);
    await primary.shutdown();
    return 1;
  }
}

function printError(err: unknown): void {
  if (err instanceof ConfigError) {
    for (const i of err.issues) process.stderr.write(`${i.severity}: ${formatIssue(i)}\n`);
  } else if (err instanceof TlsgateError) {
    process.stderr.write(`error: ${err.message} [${err.code}]\n`);
  } else {
    process.stderr.write(`error: ${(err as Error).stack ?? String(err)}\n`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (err) => {
    printError(err);
    process.exit(1);
  },
);
