// Route matching (issue 17: "O(routes per host) or better, measured with 10k routes"): CPU ns
// per Router.match() in this process, no I/O, for 10, 1k and 10k routes on one host and 10k
// routes over 1k hosts, with exact (`= /p`), prefix (`/p`), `/p/*` and mixed tables. The
// linear scan the router uses for tiny tables (`scanMax` forced to every size) is the
// reference column: it grows with the table, the maps should not.
//
//   npm run bench -- --only route-match [--quick]
import { Router } from '../../src/routing/router';
import type { RouteSnapshot } from '../../src/snapshot/types';
import { newScenario, type ScenarioResult } from '../lib/report';
import { by, type Context, type Scenario } from './context';

type Mix = 'exact' | 'prefix' | 'star' | 'mixed';
interface Layout {
  name: string;
  routes: number;
  hosts: number;
}

/** Route i of a table: one path each; hosts spread evenly; a catch-all `/` per host last. */
function table(l: Layout, mix: Mix): RouteSnapshot[] {
  const out: RouteSnapshot[] = [];
  const perHost = Math.ceil(l.routes / l.hosts);
  for (let i = 0; i < l.routes; i++) {
    const h = Math.floor(i / perHost);
    const kind = mix === 'mixed' ? (['exact', 'prefix', 'star'] as const)[i % 3]! : mix;
    const base = `/svc${i % perHost}/v${h % 7}`;
    const path = kind === 'exact' ? `= ${base}/ping` : kind === 'prefix' ? base : `${base}/*`;
    out.push({ id: `r${i}`, hosts: [`h${h}.bench.test`], paths: [path], upstream: 'u' });
  }
  for (let h = 0; h < l.hosts; h++) {
    out.push({ id: `all${h}`, hosts: [`h${h}.bench.test`], paths: ['/'], upstream: 'u' });
  }
  return out;
}

/** 1024 lookups that hit the table's routes (and 1 in 8 misses to the catch-all), host and path. */
function lookups(l: Layout, mix: Mix): Array<[string, string]> {
  const perHost = Math.ceil(l.routes / l.hosts);
  const out: Array<[string, string]> = [];
  let seed = 7;
  const rnd = (n: number): number => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
  for (let k = 0; k < 1024; k++) {
    const i = rnd(l.routes);
    const h = Math.floor(i / perHost);
    const kind = mix === 'mixed' ? (['exact', 'prefix', 'star'] as const)[i % 3]! : mix;
    const base = `/svc${i % perHost}/v${h % 7}`;
    const path = k % 8 === 7 ? `/nothing/here/${k}` : kind === 'exact' ? `${base}/ping` : `${base}/users/${k}/orders`;
    out.push([`h${h}.bench.test`, path]);
  }
  return out;
}

/** CPU ns per lookup over `budgetMs` of repeated passes (at least one pass). */
function measure(router: Router, work: Array<[string, string]>, budgetMs: number): number {
  let sink = 0;
  // Warm-up: let the JIT settle on this router's shapes.
  for (const [h, p] of work) if (router.match(h, p, 'GET') !== undefined) sink++;
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  let n = 0;
  do {
    for (const [h, p] of work) if (router.match(h, p, 'GET') !== undefined) sink++;
    n += work.length;
  } while (performance.now() - t0 < budgetMs);
  const c = process.cpuUsage(c0);
  if (sink < 0) throw new Error('unreachable');
  return ((c.user + c.system) * 1000) / n;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export const routeMatch: Scenario = {
  name: 'route-match',
  async run(ctx: Context): Promise<ScenarioResult> {
    const s = newScenario('route-match', 'Route matching: CPU per lookup (in process)',
      'Router.match(host, path, GET) on 1024 pre-generated lookups (7 in 8 hit a route, 1 in 8 falls to the ' +
        "host's catch-all `/`), repeated for a time budget; CPU time (process.cpuUsage) per lookup, median of the " +
        'rounds with the spread in the JSON. "linear scan": the same router with its small-table scan forced, ' +
        'for reference. No target process: the tlsgate column is this process.', [
        { key: 'ns', label: 'CPU per lookup', unit: 'ns' },
        { key: 'min', label: 'fastest round', unit: 'ns' },
        { key: 'max', label: 'slowest round', unit: 'ns' },
      ]);
    const layouts: Layout[] = by(ctx, {
      tiny: [
        { name: '10 routes, 1 host', routes: 10, hosts: 1 }, { name: '1k routes, 1 host', routes: 1000, hosts: 1 },
      ],
      quick: [
        { name: '10 routes, 1 host', routes: 10, hosts: 1 }, { name: '1k routes, 1 host', routes: 1000, hosts: 1 },
        { name: '10k routes, 1 host', routes: 10_000, hosts: 1 },
        { name: '10k routes, 1k hosts', routes: 10_000, hosts: 1000 },
      ],
      full: [
        { name: '10 routes, 1 host', routes: 10, hosts: 1 }, { name: '1k routes, 1 host', routes: 1000, hosts: 1 },
        { name: '10k routes, 1 host', routes: 10_000, hosts: 1 },
        { name: '10k routes, 1k hosts', routes: 10_000, hosts: 1000 },
      ],
    });
    const rounds = by(ctx, { tiny: 1, quick: 3, full: 5 });
    const budgetMs = by(ctx, { tiny: 5, quick: 60, full: 200 });
    const mixes: Mix[] = ['exact', 'prefix', 'star', 'mixed'];
    for (const l of layouts) {
      for (const mix of mixes) {
        const routes = table(l, mix);
        const work = lookups(l, mix);
        const routers = [['tlsgate', new Router(routes)], ['linear scan', new Router(routes, Infinity)]] as const;
        for (const [target, router] of routers) {
          // The forced scan costs milliseconds a lookup at 10k routes: 64 lookups a pass (a round makes at least one).
          const ns: number[] = [];
          const scan = target !== 'tlsgate';
          for (let r = 0; r < rounds; r++) ns.push(measure(router, scan ? work.slice(0, 64) : work, budgetMs));
          s.rows.push({
            case: `${l.name}, ${mix}`,
            target,
            metrics: { ns: median(ns), min: Math.min(...ns), max: Math.max(...ns) },
            raw: { rounds: ns, routes: routes.length },
          });
        }
        const [maps, scan] = [s.rows.at(-2)!.metrics.ns, s.rows.at(-1)!.metrics.ns];
        ctx.log(`route-match: ${l.name}, ${mix}: ${maps?.toFixed(0)} ns (scan ${scan?.toFixed(0)} ns)`);
      }
    }
    s.notes.push(
      'Per-lookup cost should stay flat from 1k to 10k routes and from 1 host to 1k hosts (README "Route matching").',
    );
    return s;
  },
};
