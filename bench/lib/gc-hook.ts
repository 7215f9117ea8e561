// Preloaded into the gateway's processes by the cert-rotation bench (NODE_OPTIONS=--require):
// on SIGUSR2 a process runs two full GCs and writes `<dir>/gc-<pid>` with a counter, so the
// bench reads RSS after a forced collection without any hook in tlsgate itself. With
// `<dir>/heapsnapshot` present it also writes a heap snapshot (leak hunting, --soak-heap).
// Workers already run with --expose-gc (primary.ts workerExecArgv); elsewhere it is exposed here.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setFlagsFromString, writeHeapSnapshot } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { isMainThread } from 'node:worker_threads';

export const GC_HOOK_DIR_ENV = 'TLSGATE_BENCH_GC_DIR';

const dir = process.env[GC_HOOK_DIR_ENV];
if (dir && isMainThread) {
  let count = 0;
  const gc = (): (() => void) => {
    const own = (globalThis as { gc?: () => void }).gc;
    if (own) return own;
    setFlagsFromString('--expose-gc');
    return runInNewContext('gc') as () => void;
  };
  process.on('SIGUSR2', () => {
    const collect = gc();
    collect();
    collect();
    count++;
    if (existsSync(join(dir, 'heapsnapshot'))) {
      writeHeapSnapshot(join(dir, `worker-${process.pid}-${count}.heapsnapshot`));
    }
    writeFileSync(join(dir, `gc-${process.pid}`), String(count));
  });
  // The bench signals only a process that announced the hook: SIGUSR2 would end any other.
  writeFileSync(join(dir, `ready-${process.pid}`), '');
}
