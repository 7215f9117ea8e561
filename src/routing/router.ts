// Route matching: the longest path prefix wins; on equal prefixes an exact host
// beats a wildcard host, which beats "any host". Compiled once per snapshot.
import type { RouteSnapshot } from '../snapshot/types';
import { patternCovers } from './names';

interface Entry {
  prefix: string;
  /** 0 exact, 1 wildcard, 2 any */
  rank: number;
  hosts: string[] | undefined;
  route: RouteSnapshot;
}

export class Router {
  private readonly entries: Entry[] = [];

  constructor(routes: RouteSnapshot[]) {
    for (const route of routes) {
      const groups: Array<[number, string[] | undefined]> = route.hosts
        ? [
            [0, route.hosts.filter((h) => !h.startsWith('*.'))],
            [1, route.hosts.filter((h) => h.startsWith('*.'))],
          ]
        : [[2, undefined]];
      for (const [rank, hosts] of groups) {
        if (hosts && hosts.length === 0) continue;
        for (const prefix of route.paths) this.entries.push({ prefix, rank, hosts, route });
      }
    }
    this.entries.sort((a, b) => b.prefix.length - a.prefix.length || a.rank - b.rank);
  }

  /** host: normalised Host (no port), or null when absent/invalid. path: request target. */
  match(host: string | null, path: string): RouteSnapshot | undefined {
    for (const e of this.entries) {
      if (!path.startsWith(e.prefix)) continue;
      if (e.hosts === undefined) return e.route;
      if (host !== null && e.hosts.some((h) => patternCovers(h, host))) return e.route;
    }
    return undefined;
  }
}
