#!/usr/bin/env node
// tlsgate start|validate -c FILE, tlsgate --help, tlsgate --version
import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { formatIssue } from './errors';
import { createLogger } from './log';
import type { ConfigSource } from './config/source';
import { refusalText } from './validate';

const USAGE = `usage: tlsgate start    -c, --config FILE   run the gateway (SIGHUP reloads, SIGTERM drains)
       tlsgate validate -c, --config FILE   check a config: exit 0 valid, 1 refused (every problem)
       tlsgate import --from apisix FILE... [--out DIR] [--force] [--keyring K1,K2] [--listen ADDR]
                      [--engine node|uws]   APISIX config → tlsgate config + PEM files, then validated
       tlsgate push     -c, --config FILE --store NODE_FILE
                                            copy FILE's ssls, upstreams, routes, secret_providers (validated
                                            first) into the etcd that NODE_FILE's config_store names
       tlsgate secrets rewrap -c, --config FILE
                                            re-seal every built-in secret under config_store.etcd.secrets.active
       tlsgate -h, --help                   this text
       tlsgate -v, --version                the version
exit 2: a usage error (unknown command or option, missing --config)`;

/** Exit status for usage errors (as getopt tools: distinct from 1, a config that is refused). */
const EXIT_USAGE = 2;

function version(): string {
  const pkg = JSON.parse(readFileSync(join(__dirname, '..', 'package.json'), 'utf8')) as { version?: string };
  return pkg.version ?? 'unknown';
}

function usageError(message: string): number {
  process.stderr.write(`tlsgate: ${message}\n${USAGE}\n`);
  return EXIT_USAGE;
}

async function main(argv: string[]): Promise<number> {
  if (cluster.isWorker) {
    const { runWorker } = await import('./worker/worker');
    runWorker();
    return -1;
  }
  let parsed: ReturnType<typeof parseCli>;
  try {
    parsed = parseCli(argv);
  } catch (err) {
    // parseArgs' messages name the flag: "Unknown option '--x'", "Option '-c, --config <value>' argument missing".
    return usageError((err as Error).message.split('\n')[0]!.replace(/\. To specify a positional argument.*$/, ''));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  if (values.version) {
    process.stdout.write(`tlsgate ${version()}\n`);
    return 0;
  }
  const [cmd, ...extra] = positionals;
  if (cmd === undefined) return usageError('a command is required');
  if (cmd === 'import') return importCommand(values, extra);
  const importOnly = IMPORT_OPTIONS.find((k) => values[k] !== undefined);
  if (importOnly) return usageError(`--${importOnly} is an option of import`);
  if (cmd !== 'start' && cmd !== 'validate' && cmd !== 'push' && cmd !== 'secrets')
    return usageError(`unknown command '${cmd}'`);
  if (cmd === 'secrets' && extra[0] !== 'rewrap') return usageError('secrets needs a subcommand: rewrap');
  if (cmd === 'secrets') extra.shift();
  if (extra.length > 0) return usageError(`unexpected argument '${extra[0]}'`);
  if (values.config === undefined || values.config === '') return usageError(`${cmd} needs --config FILE`);
  const file = resolve(values.config);
  if (cmd === 'push') {
    if (!values.store) return usageError('push needs --store NODE_FILE (a config file with config_store)');
    return push(file, resolve(values.store));
  }
  if (cmd === 'secrets') return rewrap(file);
  // Read and parsed once: the dev files, log, config_store and the first build share it.
  const source = await readSource(file);
  await ensureDevFiles(source);
  return cmd === 'validate' ? validate(source) : start(source);
}

function parseCli(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      config: { type: 'string', short: 'c' },
      store: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean', short: 'v' },
      from: { type: 'string' },
      out: { type: 'string' },
      force: { type: 'boolean' },
      keyring: { type: 'string' },
      listen: { type: 'string' },
      engine: { type: 'string' },
    },
  });
}

const IMPORT_OPTIONS = ['from', 'out', 'force', 'keyring', 'listen', 'engine'] as const;

async function importCommand(values: ReturnType<typeof parseCli>['values'], files: string[]): Promise<number> {
  if (values.from === undefined) return usageError('import needs --from apisix');
  if (files.length === 0) return usageError('import needs a FILE');
  if (values.config !== undefined) return usageError('import writes its config in --out DIR; --config is not used');
  const engine = values.engine;
  if (engine !== undefined && engine !== 'node' && engine !== 'uws') return usageError('--engine is node or uws');
  const { runImport } = await import('./import/run');
  const keyring = values.keyring === undefined ? [] : values.keyring.split(',').filter((k) => k !== '');
  // APISIX keys are 16 bytes; never echo one, say which.
  const bad = keyring.findIndex((k) => Buffer.byteLength(k) !== 16);
  if (bad >= 0) return usageError(`--keyring entry ${bad + 1} is not 16 characters (APISIX keyring keys are)`);
  return runImport({
    from: values.from, files, out: values.out ?? 'tlsgate-import', force: values.force === true, keyring,
    ...(values.listen !== undefined ? { listen: values.listen } : {}), ...(engine ? { engine } : {}),
  }, (s) => process.stdout.write(s), (s) => process.stderr.write(s));
}

/** A config that references the dev files (`$file://dev/localhost.crt`, …) gets the missing ones made next to it. */
async function ensureDevFiles(source: ConfigSource): Promise<void> {
  if (source.text === undefined) return; // validate/start report the unreadable file
  const { devDirRequested, ensureDevMaterial } = await import('./certs/dev');
  const dir = devDirRequested(source.file, source.text, () => source.validValue());
  if (dir === null) return;
  const dev = ensureDevMaterial(dir);
  if (dev.created) {
    process.stderr.write(`tlsgate: created dev CA, localhost certificate and admin API key in ${dev.dir}\n`);
  }
}

async function readSource(file: string): Promise<ConfigSource> {
  return (await import('./config/source')).ConfigSource.read(file);
}

async function validate(source: ConfigSource): Promise<number> {
  const { checkConfig } = await import('./validate');
  try {
    const { snapshot: s, warnings } = await checkConfig(source, (m) => process.stderr.write(`warning: ${m}\n`));
    for (const w of warnings) process.stdout.write(`warning: ${formatIssue(w)}\n`);
    process.stdout.write(
      `${source.file}: valid — ${s.listeners.length} listener(s), ${s.ssls.length} ssl(s), ${s.sni.length} ` +
        `sni(s), ${s.routes.length} route(s), ${s.upstreams.length} upstream(s)\n`,
    );
    return 0;
  } catch (err) {
    printError(err);
    return 1;
  }
}

async function start(source: ConfigSource): Promise<number> {
  const { Primary } = await import('./primary/primary');
  // The log settings come from the file; a broken file is reported by start() below.
  // Not in a closure: `stop` below lives as long as the process, and V8 keeps every variable
  // a closure of this function captures with it: the source's text, YAML document and raw
  // object (27 MB at 10k objects, heap snapshot of the primary).
  const settings = await import('./store/settings');
  const level = settings.readLogSettings(source);
  const log = createLogger({ level: level.level, ...(level.file ? { file: level.file } : {}), name: 'primary' });
  const primary = new Primary(source.file, log);
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
    await primary.start(source);
    return -1;
  } catch (err) {
    log.fatal({ err }, 'tlsgate cannot start');
    printError(err);
    await primary.shutdown();
    return 1;
  }
}

/** Validate FILE as `validate` does, then copy its stored collections into NODE_FILE's etcd. */
async function push(file: string, nodeFile: string): Promise<number> {
  const { readStoreDecl, resolveStoreSettings } = await import('./store/settings');
  try {
    const decl = await readStoreDecl(nodeFile);
    if (!decl) {
      process.stderr.write(`tlsgate: ${nodeFile} has no config_store: nothing to push to\n`);
      return 1;
    }
    if ((await validate(await readSource(file))) !== 0) return 1;
    const settings = await resolveStoreSettings(decl, nodeFile);
    const counts = await (await import('./store/push')).pushFile(file, settings);
    const what = Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(', ');
    process.stdout.write(`${file}: pushed ${what} to ${settings.endpoints.join(',')} under ${settings.prefix}/\n`);
    return 0;
  } catch (err) {
    printError(err);
    return 1;
  }
}

/** `tlsgate secrets rewrap`: KEK rotation, step 2 (README "Built-in secret store"). */
async function rewrap(file: string): Promise<number> {
  const { readStoreDecl, resolveStoreSettings } = await import('./store/settings');
  try {
    const decl = await readStoreDecl(file);
    if (!decl?.etcd.secrets) {
      process.stderr.write(`tlsgate: ${file} has no config_store.etcd.secrets: no KEK to rewrap with\n`);
      return 1;
    }
    const r = await (await import('./store/push')).rewrapOnce(await resolveStoreSettings(decl, file));
    for (const f of r.failed) process.stderr.write(`error: secrets/${f.id}: ${f.message}\n`);
    process.stdout.write(`rewrapped ${r.rewrapped} secret(s) under KEK "${r.active}", ${r.unchanged} already ` +
      `under it, ${r.failed.length} failed\n`);
    return r.failed.length ? 1 : 0;
  } catch (err) {
    printError(err);
    return 1;
  }
}

function printError(err: unknown): void {
  process.stderr.write(refusalText(err) ?? `error: ${(err as Error).stack ?? String(err)}\n`);
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
