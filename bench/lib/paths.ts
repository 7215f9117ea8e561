import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The repository root: the bench runs compiled from build/bench/…, so walk up to package.json. */
function findRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`package.json not found above ${start}`);
  }
}

export const ROOT = findRoot(__dirname);
export const FIXTURES_DIR = join(ROOT, 'bench', '.fixtures');
export const RESULTS_DIR = join(ROOT, 'bench', 'results');
/** The compiled stand-in (tsconfig.test.json puts bench/ under build/). */
export const STANDIN_JS = join(ROOT, 'build', 'bench', 'targets', 'standin.js');
export const TLSGATE_CLI = join(ROOT, 'dist', 'cli.js');
export const AUTOCANNON_BIN = join(ROOT, 'node_modules', 'autocannon', 'autocannon.js');
