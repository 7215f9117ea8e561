// Results: one JSON file per run with every raw figure, and one markdown table per
// scenario with the ratio to nginx next to each figure.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { MachineInfo } from './machine';

export interface MetricSpec {
  key: string;
  label: string;
  unit: string;
  /** Decimal places in the table. */
  digits?: number;
}

export interface Row {
  /** e.g. "TLS1.3 ECDSA". */
  case: string;
  /** e.g. "nginx", "haproxy", "node-https", "tlsgate/node". */
  target: string;
  metrics: Record<string, number | null>;
  /** Raw tool output, parsed, for the JSON file only. */
  raw?: unknown;
}

/** A distribution chart for the HTML report: one CDF line per series (e.g. per target). */
export interface Chart {
  title: string;
  /** The x axis, e.g. "ms". */
  unit: string;
  /** `points`: samples or evenly spaced quantiles (stats.cdfPoints); `n`: how many samples they stand for. */
  series: Array<{ label: string; points: number[]; n?: number }>;
}

/** One chart per case: the series are the rows of that case whose raw data `pick` finds. */
export function chartsByCase(
  rows: Row[],
  title: (c: string) => string,
  unit: string,
  pick: (r: Row) => { points: number[]; n?: number } | undefined,
): Chart[] {
  const charts = new Map<string, Chart>();
  for (const r of rows) {
    const p = pick(r);
    if (!p || p.points.length === 0) continue;
    let c = charts.get(r.case);
    if (!c) charts.set(r.case, (c = { title: title(r.case), unit, series: [] }));
    c.series.push({ label: r.target, ...p });
  }
  return [...charts.values()];
}

export interface ScenarioResult {
  name: string;
  title: string;
  /** The load generator and method, printed under the table. */
  method: string;
  metrics: MetricSpec[];
  rows: Row[];
  notes: string[];
  skipped: string[];
  /** Distributions for the HTML report. */
  charts?: Chart[];
}

export interface RunResults {
  startedAt: string;
  finishedAt?: string;
  argv: string[];
  options: unknown;
  environment: { busyPercentBefore: number; loadAverageBefore: number[]; loadAverageAfter?: number[] };
  machine: MachineInfo;
  scenarios: ScenarioResult[];
}

export const BASELINE = 'nginx';

export function newScenario(name: string, title: string, method: string, metrics: MetricSpec[]): ScenarioResult {
  return { name, title, method, metrics, rows: [], notes: [], skipped: [] };
}

function fmt(v: number | null | undefined, digits: number): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '—';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** Rows are case × metric, columns are targets in first-seen order; each cell "figure (ratio×)". */
export function markdownTable(s: ScenarioResult): string {
  const targets: string[] = [];
  const cases: string[] = [];
  for (const r of s.rows) {
    if (!targets.includes(r.target)) targets.push(r.target);
    if (!cases.includes(r.case)) cases.push(r.case);
  }
  // nginx first, then the other peers, then the gateways.
  targets.sort((a, b) => rank(a) - rank(b));
  const lines: string[] = [];
  lines.push(`### ${s.title}`, '');
  if (s.rows.length === 0) {
    lines.push('_no rows_');
  } else {
    lines.push(`| case | per unit | ${targets.join(' | ')} |`);
    lines.push(`|---|---|${targets.map(() => '---:').join('|')}|`);
    for (const c of cases) {
      for (const m of s.metrics) {
        const byTarget = new Map(s.rows.filter((r) => r.case === c).map((r) => [r.target, r.metrics[m.key]]));
        if ([...byTarget.values()].every((v) => v === null || v === undefined)) continue;
        const base = byTarget.get(BASELINE);
        const cells = targets.map((t) => {
          const v = byTarget.get(t);
          const text = fmt(v, m.digits ?? 0);
          if (t === BASELINE || v === null || v === undefined || !base || !Number.isFinite(v)) return text;
          return `${text} (${(v / base).toFixed(2)}×)`;
        });
        lines.push(`| ${c} | ${m.label}${m.unit ? ` (${m.unit})` : ''} | ${cells.join(' | ')} |`);
      }
    }
  }
  lines.push('', `_${s.method}_`);
  for (const n of s.notes) lines.push(`- ${n}`);
  for (const n of s.skipped) lines.push(`- skipped: ${n}`);
  return lines.join('\n');
}

function rank(target: string): number {
  if (target === BASELINE) return 0;
  if (target.startsWith('haproxy')) return 1;
  if (target.startsWith('node-https')) return 2;
  return 3;
}

export function writeResults(dir: string, results: RunResults): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${results.startedAt.replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify(results, null, 2) + '\n');
  return file;
}
