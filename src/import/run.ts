// `tlsgate import --from apisix FILE… [--out DIR]`: translate, write, then validate the result in-process.
import {
  chmodSync, closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readSync, rmSync, writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { formatIssue } from '../errors';
import { ImportInputError, MAX_INPUT_BYTES, parseApisix, translateApisix, type ImportOptions } from './apisix';

export interface ImportRun extends ImportOptions {
  from: string;
  files: string[];
  out: string;
  force: boolean;
}

type Write = (s: string) => void;

/** Read at most MAX_INPUT_BYTES + 1: a huge (or endless) input is refused without being loaded. */
function readBounded(path: string): string {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    if (!fstatSync(fd).isFile()) throw new ImportInputError(`${path}: not a regular file`);
    const buf = Buffer.alloc(MAX_INPUT_BYTES + 1);
    let n = 0;
    for (let got; n < buf.length && (got = readSync(fd, buf, n, buf.length - n, null)) > 0;) n += got;
    if (n > MAX_INPUT_BYTES) throw new ImportInputError(`${path}: larger than ${MAX_INPUT_BYTES / 1024 / 1024} MiB`);
    return buf.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** Exit status: 0 imported and valid, 1 refused input or an output that does not validate. */
export async function runImport(o: ImportRun, out: Write, err: Write): Promise<number> {
  if (o.from !== 'apisix') {
    err(`tlsgate import: --from ${o.from} is not supported (apisix)\n`);
    return 2;
  }
  let result;
  try {
    const texts = o.files.map((f) => {
      try {
        return { name: f, text: readBounded(f) };
      } catch (e) {
        if (e instanceof ImportInputError) throw e;
        throw new ImportInputError(`${f}: cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
      }
    });
    result = translateApisix(parseApisix(texts), o);
  } catch (e) {
    if (!(e instanceof ImportInputError)) throw e;
    err(`error: ${e.message} [TLSGATE_E_IMPORT_INPUT]\n`);
    return 1;
  }
  for (const n of result.notes) out(`not carried: ${n}\n`);
  if (result.errors.length) {
    for (const e of result.errors) err(`error: ${e} [TLSGATE_E_IMPORT_OBJECT]\n`);
    err(`tlsgate import: ${result.errors.length} object(s) cannot be imported; nothing written\n`);
    return 1;
  }
  const dir = resolve(o.out);
  const configPath = join(dir, 'gateway.yaml');
  const targets = [configPath, ...result.files.map((f) => join(dir, f.path))];
  const existing = targets.filter((t) => lstatSync(t, { throwIfNoEntry: false }) !== undefined);
  if (existing.length && !o.force) {
    for (const t of existing) err(`error: ${t} exists; pass --force to overwrite [TLSGATE_E_IMPORT_EXISTS]\n`);
    return 1;
  }
  const certs = join(dir, 'certs');
  const st = lstatSync(certs, { throwIfNoEntry: false });
  if (st && !st.isDirectory()) {
    // A symlinked certs/ would put the keys wherever it points.
    err(`error: ${certs} exists and is not a directory [TLSGATE_E_IMPORT_EXISTS]\n`);
    return 1;
  }
  mkdirSync(certs, { recursive: true, mode: 0o700 });
  chmodSync(certs, 0o700);
  // --force unlinks first: a replaced key gets mode 0600 and a symlink planted there is not followed.
  // `wx` then refuses anything created in between.
  const flag = 'wx';
  try {
    for (const t of existing) rmSync(t, { force: true });
    for (const f of result.files) {
      writeFileSync(join(dir, f.path), f.content, { flag, mode: f.secret ? 0o600 : 0o644 });
    }
    const header = `# Imported from APISIX (${o.files.join(', ')}) by tlsgate import; see "Coming from APISIX".\n`;
    writeFileSync(configPath, header + stringify(result.config, { lineWidth: 0 }), { flag, mode: 0o644 });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const which = (e as NodeJS.ErrnoException).path ?? targets[0];
    if (code === 'EEXIST') err(`error: ${which} exists; pass --force to overwrite [TLSGATE_E_IMPORT_EXISTS]\n`);
    else err(`error: cannot write ${which} (${code ?? 'error'}) [TLSGATE_E_IMPORT_EXISTS]\n`);
    return 1;
  }
  out(`wrote ${configPath} and ${result.files.length} PEM file(s) in ${join(dir, 'certs')}\n`);
  return validateOutput(configPath, out, err);
}

async function validateOutput(file: string, out: Write, err: Write): Promise<number> {
  const { checkConfig, refusalText } = await import('../validate');
  const { ConfigSource } = await import('../config/source');
  try {
    const { warnings } = await checkConfig(await ConfigSource.read(file), (m) => err(`warning: ${m}\n`));
    for (const w of warnings) out(`warning: ${formatIssue(w)}\n`);
    out(`${file}: valid (tlsgate validate)\n`);
    return 0;
  } catch (e) {
    const refused = refusalText(e);
    if (refused === undefined) throw e;
    err(refused);
    err(`tlsgate import: ${file} was written but does not pass tlsgate validate (above); edit it and run validate\n`);
    return 1;
  }
}
