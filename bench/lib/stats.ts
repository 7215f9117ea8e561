/** Nearest-rank percentile of unsorted samples; NaN for none. */
export function percentile(samples: readonly number[], p: number): number {
  if (samples.length === 0) return Number.NaN;
  const sorted = [...samples].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export interface Summary {
  n: number;
  min: number;
  p50: number;
  p99: number;
  max: number;
  mean: number;
}

export function summarize(samples: readonly number[]): Summary {
  const n = samples.length;
  if (n === 0) return { n, min: NaN, p50: NaN, p99: NaN, max: NaN, mean: NaN };
  let min = Infinity;
  let max = -Infinity;
  let sum = 0;
  for (const v of samples) {
    min = Math.min(min, v);
    max = Math.max(max, v);
    sum += v;
  }
  return { n, min, p50: percentile(samples, 50), p99: percentile(samples, 99), max, mean: sum / n };
}

/**
 * The empirical distribution in at most `points` values: the sorted samples taken at evenly
 * spaced ranks, first and last included (the HTML report draws CDFs from these).
 */
export function cdfPoints(samples: readonly number[], points = 500): number[] {
  const sorted = [...samples].sort((a, b) => a - b);
  if (sorted.length <= points) return sorted;
  const out: number[] = [];
  for (let i = 0; i < points; i++) out.push(sorted[Math.round((i * (sorted.length - 1)) / (points - 1))]!);
  return out;
}
