import { readFile } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import { LineCounter, parseDocument } from 'yaml';
import { ConfigError, type ConfigIssue } from '../errors';
import { validateConfig } from './schema';
import type { GatewayConfig } from './types';

export interface Loaded {
  config: GatewayConfig;
  /** Warnings only (errors throw). */
  issues: ConfigIssue[];
  /** Raw text: the reload watcher skips a write that changed nothing. */
  text: string;
  /** Revision of the config store objects merged in (config_store), if any. */
  overlay?: string;
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
export async function loadConfigFile(path: string, previous?: Loaded, overlay?: Overlay): Promise<Loaded> {
  const file = resolvePath(path);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new ConfigError([
      {
        path: file,
        code: 'TLSGATE_E_CONFIG_READ',
        message: `cannot read the config file (${code})`,
        severity: 'error',
      },
    ]);
  }
  if (previous && previous.text === text && previous.config.file === file && previous.overlay === overlay?.revision)
    return previous;
  return { ...parseConfigText(text, file, overlay), text, ...(overlay ? { overlay: overlay.revision } : {}) };
}

export function parseConfigText(
  text: string,
  file: string,
  overlay?: Overlay,
): { config: GatewayConfig; issues: ConfigIssue[] } {
  // linePos is only filled by prettyErrors, which also rewrites the message with a source
  // excerpt (it could echo a key): the LineCounter gives the position without that.
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { prettyErrors: false, uniqueKeys: true, lineCounter });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => ({
        path: `${file}:${position(lineCounter, e.pos[0])}`,
        code: 'TLSGATE_E_CONFIG_PARSE' as const,
        message: e.message.split('\n')[0]!,
        severity: 'error' as const,
      })),
    );
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
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
