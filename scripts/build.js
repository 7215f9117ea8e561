#!/usr/bin/env node
// Builds dist/ with TypeScript (a dev dependency).
//   node scripts/build.js            build; fails when TypeScript is not installed (prepack)
//   node scripts/build.js --optional build when TypeScript is installed, else say why not and
//                                    succeed (prepare: `npm ci --omit=dev` has no TypeScript)
// Plain JavaScript and node:* only, so it runs on a production install.
'use strict';
const { spawnSync } = require('node:child_process');
const { existsSync, rmSync } = require('node:fs');
const { join } = require('node:path');

const root = join(__dirname, '..');
const optional = process.argv.includes('--optional');

// `npm pack` / `npm publish` run prepack (the strict build) and then prepare: build once.
if (optional && ['pack', 'publish'].includes(process.env.npm_command ?? '')) process.exit(0);

let tsc;
try {
  tsc = require.resolve('typescript/bin/tsc', { paths: [root] });
} catch {
  if (optional) {
    const dist = existsSync(join(root, 'dist', 'cli.js')) ? 'dist/ is kept as it is' : 'there is no dist/ to run';
    process.stderr.write(`tlsgate: TypeScript is not installed (a production install): build skipped, ${dist}\n`);
    process.exit(0);
  }
  process.stderr.write('tlsgate: TypeScript is not installed: run `npm ci` (with dev dependencies) to build dist/\n');
  process.exit(1);
}

// A clean dist/: files of deleted sources must not ship.
rmSync(join(root, 'dist'), { recursive: true, force: true });
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
process.exit(r.status ?? 1);
