// Node has no setrlimit: the primary raises its own soft limit of open files to the hard
// limit with util-linux `prlimit` before it forks, and the workers inherit it. Each TCP
// connection holds an fd: under a 1,024 soft limit, 1,100 idle connections took a worker
// down (measured), while the hard limit is usually far higher.
import { execFileSync } from 'node:child_process';
import type { Logger } from '../log';

export interface FdLimit {
  soft: string;
  hard: string;
}

function read(pid: number): FdLimit {
  const out = execFileSync('prlimit', ['--pid', String(pid), '--nofile', '--raw', '--noheadings', '--output', 'SOFT,HARD'], {
    encoding: 'utf8',
    timeout: 5_000,
  });
  const [soft = '', hard = ''] = out.trim().split(/\s+/);
  return { soft, hard };
}

/** Raise the soft RLIMIT_NOFILE of this process to its hard limit; logs the outcome, never throws. */
export function raiseFdLimit(log: Logger, pid = process.pid): FdLimit | undefined {
  try {
    const before = read(pid);
    if (before.soft !== before.hard) {
      execFileSync('prlimit', ['--pid', String(pid), `--nofile=${before.hard}:${before.hard}`], { timeout: 5_000 });
    }
    const after = read(pid);
    log.info({ soft: after.soft, hard: after.hard, was: before.soft }, 'open files limit');
    return after;
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'cannot raise the open files limit with prlimit (util-linux); each connection holds one fd');
    return undefined;
  }
}
