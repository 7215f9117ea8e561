// The open-files limit bounds the connections a worker can hold. Node raises its soft
// limit to the hard limit at start (measured on Node 20.20; workers inherit it), so only
// the hard limit matters: `ulimit -n 1024` sets both, and 1,100 idle connections then took
// a worker down (EMFILE). The primary logs the limit and warns when the listeners' caps
// do not fit in it; each worker also caps itself (engines/fd-budget.ts).
import type { Logger } from '../log';
import { connectionBudget, openFilesLimit } from '../engines/fd-budget';

export function checkFdLimit(log: Logger, listeners: ReadonlyArray<{ name: string; maxConnections: number }>): void {
  const limit = openFilesLimit();
  const budget = connectionBudget(limit);
  const wanted = listeners.reduce((n, l) => n + l.maxConnections, 0);
  log.info({ open_files: limit ?? 'unlimited', connection_budget: budget }, 'open files limit');
  if (wanted > budget) {
    log.warn(
      { open_files: limit, max_connections: wanted, budget },
      'the open files limit holds fewer connections than max_connections allows: raise the hard limit ' +
        '(systemd LimitNOFILE=, ulimit -Hn); each worker caps its listeners at the budget',
    );
  }
}
