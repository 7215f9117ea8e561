// The cert-rotation bench's GC hook (bench/lib/gc-hook.ts), preloaded into a real child by
// NODE_OPTIONS=--require as the bench does for the gateway: it announces itself, runs a
// forced GC on SIGUSR2 and counts it, and writes a heap snapshot only when asked.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GC_HOOK_DIR_ENV } from '../bench/lib/gc-hook';
import { waitFor } from './helpers/gateway';

const HOOK = join(__dirname, '..', 'bench', 'lib', 'gc-hook.js');
const dirs: string[] = [];
const children: ChildProcess[] = [];

function child(env: NodeJS.ProcessEnv): ChildProcess {
  // Without --expose-gc: the hook must expose gc itself (the primary has no such flag).
  const c = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], {
    env: { ...process.env, ...env, NODE_OPTIONS: `--require ${HOOK}` },
    stdio: 'ignore',
  });
  children.push(c);
  return c;
}

const count = (dir: string, pid: number): number => {
  const f = join(dir, `gc-${pid}`);
  return existsSync(f) ? Number(readFileSync(f, 'utf8')) : 0;
};

describe('bench GC hook', () => {
  after(() => {
    for (const c of children) c.kill('SIGKILL');
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('announces itself, collects on SIGUSR2 and counts each request', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tlsgate-gc-hook-'));
    dirs.push(dir);
    const c = child({ [GC_HOOK_DIR_ENV]: dir });
    const pid = c.pid!;
    await waitFor(() => existsSync(join(dir, `ready-${pid}`)), 'hook ready');
    c.kill('SIGUSR2');
    await waitFor(() => count(dir, pid) === 1 || undefined, 'first GC counted');
    c.kill('SIGUSR2');
    await waitFor(() => count(dir, pid) === 2 || undefined, 'second GC counted');
    assert.equal(c.exitCode, null, 'the process survives the signals');
    assert.equal(readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).length, 0, 'no snapshot unless asked');
  });

  test('writes a heap snapshot when the marker file is present', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tlsgate-gc-hook-'));
    dirs.push(dir);
    const c = child({ [GC_HOOK_DIR_ENV]: dir });
    const pid = c.pid!;
    await waitFor(() => existsSync(join(dir, `ready-${pid}`)), 'hook ready');
    writeFileSync(join(dir, 'heapsnapshot'), '');
    c.kill('SIGUSR2');
    await waitFor(() => count(dir, pid) === 1 || undefined, 'GC counted', 30_000);
    const snaps = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot'));
    assert.deepEqual(snaps, [`worker-${pid}-1.heapsnapshot`]);
    const head = readFileSync(join(dir, snaps[0]!), 'utf8').slice(0, 20);
    assert.match(head, /^\{"snapshot"/);
  });

});
