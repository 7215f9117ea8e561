// The config file as `tlsgate start` / `validate` read it: once. The dev files check, the
// log settings, config_store and the first build all used to read and parse it again, and
// YAML costs ~0.15 ms per object line (measured): a 10k-object file was parsed up to four times.
import { readFile } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import { LineCounter, parseDocument, type Document } from 'yaml';
import type { ConfigIssue } from '../errors';
import { fastYaml } from './fast-yaml';

export class ConfigSource {
  private parsed: { doc: Document.Parsed; lineCounter: LineCounter } | undefined;
  private js: { value: unknown } | { error: unknown } | undefined;
  /** The fast reader's result (fast-yaml.ts): null when the text is outside its shape. */
  private fast: { value: unknown } | null | undefined;

  private constructor(
    /** Absolute path. */
    readonly file: string,
    /** undefined: the file could not be read (readIssue says why). */
    readonly text: string | undefined,
    private readonly errno?: string,
  ) {}

  /** `text` as the content of `file` (tests, callers that hold the text). */
  static fromText(file: string, text: string): ConfigSource {
    return new ConfigSource(file, text);
  }

  static async read(path: string): Promise<ConfigSource> {
    const file = resolvePath(path);
    try {
      return new ConfigSource(file, await readFile(file, 'utf8'));
    } catch (err) {
      return new ConfigSource(file, undefined, (err as NodeJS.ErrnoException).code ?? 'EIO');
    }
  }

  /** The build's error for an unreadable file, undefined when it was read. */
  readIssue(): ConfigIssue | undefined {
    if (this.text !== undefined) return undefined;
    const message = `cannot read the config file (${this.errno})`;
    return { path: this.file, code: 'TLSGATE_E_CONFIG_READ', message, severity: 'error' };
  }

  /**
   * The YAML document, with the build's options (its errors name line:column through the
   * LineCounter; prettyErrors would quote the source, which could hold a key). Throws when unread.
   */
  document(): { doc: Document.Parsed; lineCounter: LineCounter } {
    if (this.parsed !== undefined) return this.parsed;
    if (this.text === undefined) throw new Error(`${this.file} was not read`);
    const lineCounter = new LineCounter();
    const doc = parseDocument(this.text, { prettyErrors: false, uniqueKeys: true, lineCounter });
    return (this.parsed = { doc, lineCounter });
  }

  /**
   * True when the text was read by the fast reader: it is well-formed YAML and value() is its
   * data, with no Document made. Otherwise document() has the errors, with their positions.
   */
  readFast(): boolean {
    if (this.fast === undefined) {
      const v = this.text === undefined ? undefined : fastYaml(this.text);
      this.fast = v === undefined ? null : { value: v };
    }
    return this.fast !== null;
  }

  /**
   * The document as plain data, whether or not it has YAML errors (each reader decides);
   * throws what the conversion throws (too many aliases), every time. Readers must not mutate it.
   */
  value(): unknown {
    if (this.js === undefined && this.readFast()) this.js = this.fast!;
    if (this.js === undefined) {
      try {
        this.js = { value: this.document().doc.toJS({ maxAliasCount: 100 }) };
      } catch (error) {
        this.js = { error };
      }
    }
    if ('error' in this.js) throw this.js.error;
    return this.js.value;
  }

  /** The data of a readable, well-formed file; undefined otherwise (the build reports why). */
  validValue(): unknown {
    if (this.text === undefined) return undefined;
    if (this.readFast()) return this.value();
    if (this.document().doc.errors.length > 0) return undefined;
    try {
      return this.value();
    } catch {
      return undefined;
    }
  }
}
