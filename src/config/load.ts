import { resolve as resolvePath } from 'node:path';
import type { LineCounter } from 'yaml';
import { ConfigError, type ConfigIssue } from '../errors';
import { validateConfig } from './schema';
import { ConfigSource } from './source';
import { expandSslDirs, type SslDirState, type Validate, type WatchedDir } from './ssl-dirs';
import type { GatewayConfig } from './types';

export interface Loaded {
  /** With the objects of `ssl_dirs` expanded into `ssls`. */
  config: GatewayConfig;
  /** Warnings only (errors throw). */
  issues: ConfigIssue[];
  /** Raw text: the reload watcher skips a write that changed nothing. */
  text: string;
  /** The parse of `text` alone, before `ssl_dirs` are read. */
  parsed: { config: GatewayConfig; issues: ConfigIssue[] };
  /** Per-file state of `ssl_dirs` (reused unread while a file's stat is unchanged). */
  sslDirs: SslDirState | undefined;
  /** Directories to watch, with their signature when read. */
  watchDirs: WatchedDir[];
  /** Revision of the config store objects merged in (config_store), if any. */
  overlay?: string;
}

export interface LoadOptions {
  /** false: skip reading `ssl_dirs` (`tlsgate start` reading only the log settings). */
  sslDirs?: boolean;
  /** Certificate checks of new `ssl_dirs` files (the primary's pool); default in-line. */
  validate?: Validate;
  /** config_store: the objects listed from etcd, merged into the file's. */
  overlay?: Overlay;
  /** The file as already read and parsed (tlsgate start/validate): used when it is `path`'s. */
  source?: ConfigSource;
}

/** Objects of a config store (config_store.etcd), merged into the file's parse. */
export interface Overlay {
  /** Changes whenever the objects do: a parse is reused only for the same text and revision. */
  revision: string;
  collections: Record<StoredCollection, unknown[]>;
}

export const STORED_COLLECTIONS = ['ssls', 'upstreams', 'routes', 'secret_providers'] as const;
export type StoredCollection = (typeof STORED_COLLECTIONS)[number];

/**
 * Read + parse + schema. Throws ConfigError with every problem. No secret is resolved here.
 * `previous`: when the text is unchanged (a rotated certificate file, a secret changed at
 * its source) its parse is reused: YAML costs ~0.15 ms per SSL object line, measured.
 */
export async function loadConfigFile(path: string, previous?: Loaded, o: LoadOptions = {}): Promise<Loaded> {
  const file = resolvePath(path);
  const source = o.source?.file === file ? o.source : await ConfigSource.read(file);
  const unread = source.readIssue();
  if (unread !== undefined) throw new ConfigError([unread]);
  const text = source.text!;
  const same =
    previous && previous.text === text && previous.config.file === file && previous.overlay === o.overlay?.revision;
  const parsed = same ? previous.parsed : parseSource(source, o.overlay);
  const overlay = o.overlay ? { overlay: o.overlay.revision } : {};
  if (o.sslDirs === false) return { ...parsed, text, parsed, sslDirs: undefined, watchDirs: [], ...overlay };
  // Read on every load, config text changed or not: a file added to a directory changes no text.
  const dirs = await expandSslDirs(parsed.config, previous?.sslDirs, o.validate ? { validate: o.validate } : {});
  return {
    config: dirs.config,
    issues: [...parsed.issues, ...dirs.issues],
    text,
    parsed,
    sslDirs: dirs.state,
    watchDirs: dirs.watch,
    ...overlay,
  };
}

export function parseConfigText(
  text: string,
  file: string,
  overlay?: Overlay,
): { config: GatewayConfig; issues: ConfigIssue[] } {
  return parseSource(ConfigSource.fromText(file, text), overlay);
}

function parseSource(source: ConfigSource, overlay?: Overlay): { config: GatewayConfig; issues: ConfigIssue[] } {
  const file = source.file;
  // The fast reader's text is well-formed; any other is parsed by `yaml`, for its errors' positions.
  const { doc, lineCounter } = source.readFast() ? { doc: undefined, lineCounter: undefined } : source.document();
  if (doc && doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => ({
        path: `${file}:${position(lineCounter!, e.pos[0])}`,
        code: 'TLSGATE_E_CONFIG_PARSE' as const,
        message: e.message.split('\n')[0]!,
        severity: 'error' as const,
      })),
    );
  }
  const raw = source.value();
  const { config, issues } = validateConfig(withStoreObjects(raw, file, overlay), file);
  if (!config) throw new ConfigError(issues);
  return { config, issues };
}

/**
 * With config_store set the stored collections come from the store only: a file that also
 * lists them is refused (two sources of one object would disagree after the first write).
 */
function withStoreObjects(raw: unknown, file: string, overlay: Overlay | undefined): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const r = raw as Record<string, unknown>;
  if (r.config_store === undefined || r.config_store === null) return raw;
  const listed = STORED_COLLECTIONS.filter((k) => r[k] !== undefined);
  if (listed.length)
    throw new ConfigError(
      listed.map((k) => ({
        path: k,
        code: 'TLSGATE_E_STORE_COLLECTION' as const,
        severity: 'error' as const,
        message: `${file} sets config_store: ${k} live in the store, not in the file (tlsgate push copies them there)`,
      })),
    );
  return overlay ? { ...r, ...overlay.collections } : raw;
}

function position(lc: LineCounter, offset: number): string {
  const { line, col } = lc.linePos(offset);
  return `${line}:${col}`;
}
