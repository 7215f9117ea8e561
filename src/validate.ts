// What `tlsgate validate` checks, for the CLI and for `tlsgate import` (which validates the
// config it wrote): read, parse, schema, config_store objects (listed once), engine load,
// references resolved, certificates and keys checked, snapshot compiled.
import { dirname } from 'node:path';
import { ConfigError, formatIssue, TlsgateError, type ConfigIssue } from './errors';
import type { ConfigSource } from './config/source';
import type { Snapshot } from './snapshot/types';

export interface Checked {
  snapshot: Omit<Snapshot, 'version' | 'createdAt'>;
  /** The config's warnings and the compile's. */
  warnings: ConfigIssue[];
}

/** Throws ConfigError with every problem (or a TlsgateError); `warn`: the secret store's warnings. */
export async function checkConfig(source: ConfigSource, warn: (message: string) => void): Promise<Checked> {
  const { loadConfigFile } = await import('./config/load');
  const { resolveConfig } = await import('./config/resolve');
  const { compileSnapshot } = await import('./snapshot/compile');
  const { CertValidator } = await import('./certs/pool');
  const { SecretStore } = await import('./secrets/store');
  const validator = new CertValidator(1);
  const store = new SecretStore({ logger: { warn: (_o, m) => warn(m) }, baseDir: dirname(source.file) });
  try {
    // config_store: the objects come from etcd (listed once) and are checked with the file.
    const { readStoreDecl, resolveStoreSettings } = await import('./store/settings');
    const decl = await readStoreDecl(source);
    let overlay: import('./config/load').Overlay | undefined;
    let local: import('./secrets/resolve').LocalSecrets | undefined;
    if (decl) {
      const listed = await (await import('./store/push')).listOnce(await resolveStoreSettings(decl, source.file));
      if (listed.issues.length) throw new ConfigError(listed.issues);
      overlay = listed.overlay;
      local = listed.local;
    }
    const loaded = await loadConfigFile(source.file, undefined, { source, ...(overlay ? { overlay } : {}) });
    const { engineLoadIssues } = await import('./engines/uws-load');
    const engineIssues = engineLoadIssues(loaded.config.listeners);
    if (engineIssues.length)
      throw new ConfigError(
        engineIssues.map((i) => ({ ...i, code: 'TLSGATE_E_ENGINE_LOAD' as const, severity: 'error' as const })),
      );
    const resolved = await resolveConfig(loaded.config, store, undefined, local);
    const compiled = await compileSnapshot(resolved, validator);
    return { snapshot: compiled.snapshot, warnings: [...loaded.issues, ...compiled.warnings] };
  } finally {
    await Promise.all([validator.close(), store.close()]);
  }
}

/** A refusal as the CLI prints it: one line per issue, or the error and its code; undefined for a bug. */
export function refusalText(err: unknown): string | undefined {
  if (err instanceof ConfigError) return err.issues.map((i) => `${i.severity}: ${formatIssue(i)}\n`).join('');
  if (err instanceof TlsgateError) return `error: ${err.message} [${err.code}]\n`;
  return undefined;
}
