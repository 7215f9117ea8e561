#!/usr/bin/env node
// Writes the config field table (generated from src/config/declaration.ts) into README.md
// between its markers. Run after a build: `npm run build && node scripts/config-table.js`.
'use strict';
const { readFileSync, writeFileSync } = require('node:fs');
const { join } = require('node:path');
const { withTable } = require('../dist/config/table.js');

const file = join(__dirname, '..', 'README.md');
const before = readFileSync(file, 'utf8');
const after = withTable(before);
if (after !== before) writeFileSync(file, after);
console.log(after === before ? 'README config table is up to date' : 'README config table written');
