// Open-file budget of this process. Node raises its soft RLIMIT_NOFILE to the hard limit
// at start (measured on Node 20: `prlimit --nofile=256:4096 node` runs with 4096), so the
// soft limit read here is what the operator's hard limit allows. A connection holds one
// fd and may hold one more to an upstream; past the limit accept() fails with EMFILE.
import { readFileSync } from 'node:fs';

/** fds kept for logs, IPC, the admin side and upstream pools' idle sockets. */
const RESERVE = 64;

/** Soft limit of open files, or undefined where /proc is not there. */
export function openFilesLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft === undefined || soft === 'unlimited' ? undefined : Number(soft);
  } catch {
    return undefined;
  }
}

/** Client connections this process can hold with an upstream socket each. */
export function connectionBudget(limit = openFilesLimit()): number {
  return limit === undefined ? Number.MAX_SAFE_INTEGER : Math.max(1, Math.floor((limit - RESERVE) / 2));
}
