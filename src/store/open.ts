// Opens the config store a config file names (config_store), wired to the primary's build.
import { ConfigError, type ConfigIssue, type ErrorCode } from '../errors';
import type { Logger } from '../log';
import { loadConfigFile, type Overlay } from '../config/load';
import type { ConfigSource } from '../config/source';
import { resolveConfig } from '../config/resolve';
import { compileSnapshot } from '../snapshot/compile';
import type { CertValidator } from '../certs/pool';
import type { SecretStore } from '../secrets/store';
import type { LocalSecrets } from '../secrets/resolve';
import type { EtcdStore, Check } from './etcd-store';
import { readStoreDecl, resolveStoreSettings } from './settings';

export interface OpenOptions {
  configPath: string;
  log: Logger;
  /** The primary's: a check resolves references and validates certificates as its build does. */
  secrets: SecretStore;
  validator: CertValidator;
  onApplied: (revision: number) => void;
  /** The config file as `tlsgate start` read it (read from configPath when absent). */
  source?: ConfigSource;
}

/** The store of `configPath`'s config_store, listed and validated; undefined when the file has none. */
export async function openConfigStore(o: OpenOptions): Promise<EtcdStore | undefined> {
  const decl = await readStoreDecl(o.source ?? o.configPath);
  if (!decl) return undefined;
  const settings = await resolveStoreSettings(decl, o.configPath);
  // Not `o`: the check lives as long as the store and must not keep the start's parse (o.source).
  const check = buildCheck({ configPath: o.configPath, secrets: o.secrets, validator: o.validator });
  // Required only when the file names a store: etcd3 and grpc cost ~0.2-0.5 s to load (measured).
  const { EtcdStore: Store } = require('./etcd-store') as typeof import('./etcd-store');
  const store = new Store(settings, o.log.child({ store: 'etcd' }), check, o.onApplied);
  if (settings.secrets) o.secrets.setLocal(store.secretsView());
  await store.start();
  return store;
}

/**
 * The full check of a config with these store objects: schema, references, SNI conflicts,
 * references resolvable, certificates and keys. It shares the primary's secret cache, so a
 * value is fetched once; the primary's next build sets the cache's reference list back.
 */
export function buildCheck(o: Pick<OpenOptions, 'configPath' | 'secrets' | 'validator'>): Check {
  return async (overlay: Overlay, local?: LocalSecrets): Promise<ConfigIssue[]> => {
    try {
      const loaded = await loadConfigFile(o.configPath, undefined, overlay ? { overlay } : {});
      const resolved = await resolveConfig(loaded.config, o.secrets, undefined, local);
      await compileSnapshot(resolved, o.validator);
      return [];
    } catch (err) {
      if (err instanceof ConfigError) return err.issues.filter((i) => i.severity === 'error');
      const code = ((err as { code?: string }).code ?? 'TLSGATE_E_INTERNAL') as ErrorCode;
      return [{ path: '(config)', code, message: (err as Error).message, severity: 'error' }];
    }
  };
}
