// Every error code is in the README's error table: codes are the contract.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ErrorCodes } from '../src/errors';
import { ROOT } from './helpers/gateway';

test('every error code is documented in README.md', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const missing = Object.keys(ErrorCodes).filter((c) => !readme.includes('`' + c + '`'));
  assert.deepEqual(missing, []);
});
