// The self-contained HTML report written beside the bench JSON: every scenario's table and
// its latency distributions as CDF charts in inline SVG (no script, no external asset), so
// a reader sees the tail of each target at a glance, tlsgate and nginx side by side.
import { writeFileSync } from 'node:fs';
import { BASELINE, type Chart, type RunResults, type ScenarioResult } from './report';

const COLORS: Record<string, string> = {
  nginx: '#2f9e44',
  haproxy: '#7048e8',
  'node-https': '#868e96',
  'tlsgate/node': '#1c7ed6',
  'tlsgate/uws': '#e8590c',
};
const EXTRA = ['#c2255c', '#0c8599', '#5c940d', '#d6336c'];

export const escapeHtml = (s: string): string =>
  s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

function colorOf(label: string, i: number): string {
  const key = Object.keys(COLORS).find((k) => label === k || label.startsWith(`${k} `));
  return key ? COLORS[key]! : EXTRA[i % EXTRA.length]!;
}

const fmtNum = (v: number): string => {
  if (!Number.isFinite(v)) return '—';
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(2);
};

/** Round tick positions (1, 2, 5 × 10^k apart) covering [lo, hi]. */
function niceTicks(lo: number, hi: number, want = 6): number[] {
  const raw = (hi - lo) / want;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) ?? 10 * mag;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

/**
 * One CDF chart: x = value (log scale when the data span more than 20×), y = fraction of
 * samples ≤ x on a tail-stretched scale (−log10(1 − p): p50, p90, p99, p99.9 equally apart),
 * so the tail, what a reader looks for, is not squeezed into the top pixels.
 */
export function cdfSvg(chart: Chart): string {
  const series = chart.series.filter((s) => s.points.some((v) => Number.isFinite(v)));
  const W = 720;
  const m = { l: 56, r: 16, t: 28, b: 44 };
  const legendH = 16 * series.length + 6;
  const H = 330 + legendH;
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b - legendH;
  const all = series.flatMap((s) => s.points).filter((v) => Number.isFinite(v));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img">`);
  out.push(`<title>${escapeHtml(chart.title)}</title>`);
  out.push(`<text x="${m.l}" y="18" font-size="14" font-weight="600">${escapeHtml(chart.title)}</text>`);
  if (all.length === 0) {
    out.push(`<text x="${m.l}" y="${m.t + 20}" font-size="13">no samples</text></svg>`);
    return out.join('');
  }
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  const log = lo > 0 && hi / lo > 20;
  if (hi === lo) {
    lo = lo * 0.9;
    hi = hi * 1.1 || 1;
  }
  const fx = (v: number): number => {
    const f = log ? (Math.log(v) - Math.log(lo)) / (Math.log(hi) - Math.log(lo)) : (v - lo) / (hi - lo);
    return m.l + Math.max(0, Math.min(1, f)) * pw;
  };
  const nMax = Math.max(...series.map((s) => s.points.length));
  const top = Math.max(2, Math.ceil(Math.log10(nMax))); // p99 at least; p99.9 from 1,000 samples
  const fy = (p: number): number => {
    const t = p >= 1 ? top : Math.min(top, -Math.log10(1 - p));
    return m.t + (1 - t / top) * ph;
  };
  const yTicks: Array<[number, string]> = [
    [0, 'p0'],
    [0.5, 'p50'],
    [0.9, 'p90'],
    [0.99, 'p99'],
    [0.999, 'p99.9'],
    [0.9999, 'p99.99'],
  ];
  for (const [p, label] of yTicks) {
    if (-Math.log10(1 - p) > top + 1e-9) continue;
    out.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${fy(p)}" y2="${fy(p)}" stroke="#dee2e6"/>`);
    out.push(`<text x="${m.l - 6}" y="${fy(p) + 4}" font-size="11" text-anchor="end">${label}</text>`);
  }
  const ticks: number[] = [];
  if (log) {
    for (let d = Math.pow(10, Math.floor(Math.log10(lo))); d <= hi * 1.0001; d *= 10) {
      for (const k of [1, 2, 5]) if (d * k >= lo && d * k <= hi) ticks.push(d * k);
    }
  } else {
    ticks.push(...niceTicks(lo, hi));
  }
  for (const v of ticks) {
    out.push(`<line x1="${fx(v)}" x2="${fx(v)}" y1="${m.t}" y2="${m.t + ph}" stroke="#f1f3f5"/>`);
    out.push(`<text x="${fx(v)}" y="${m.t + ph + 16}" font-size="11" text-anchor="middle">${fmtNum(v)}</text>`);
  }
  out.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" fill="none" stroke="#adb5bd"/>`);
  const xLabel = `${chart.unit}${log ? ' (log scale)' : ''}`;
  out.push(
    `<text x="${m.l + pw / 2}" y="${m.t + ph + 34}" font-size="12" text-anchor="middle">${escapeHtml(xLabel)}</text>`,
  );
  series.forEach((s, i) => {
    const pts = s.points.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
    const n = pts.length;
    // A step function: at each sample the fraction jumps to (rank + 1) / n.
    let d = `M${fx(pts[0]!).toFixed(1)},${fy(0).toFixed(1)}`;
    pts.forEach((v, k) => {
      const x = fx(v).toFixed(1);
      d += `L${x},${fy(k / n).toFixed(1)}L${x},${fy((k + 1) / n).toFixed(1)}`;
    });
    const c = colorOf(s.label, i);
    out.push(`<path d="${d}" fill="none" stroke="${c}" stroke-width="2"/>`);
    const ly = m.t + ph + 52 + i * 16;
    out.push(`<rect x="${m.l}" y="${ly - 7}" width="14" height="4" fill="${c}"/>`);
    const sum = (q: number): string => fmtNum(pts[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!);
    const max = fmtNum(pts[n - 1]!);
    const legend = `${s.label}: n=${s.n ?? n}, p50 ${sum(0.5)}, p99 ${sum(0.99)}, max ${max} ${chart.unit}`;
    out.push(`<text x="${m.l + 20}" y="${ly - 1}" font-size="11">${escapeHtml(legend)}</text>`);
  });
  out.push('</svg>');
  return out.join('');
}

function tableHtml(s: ScenarioResult): string {
  const targets: string[] = [];
  const cases: string[] = [];
  for (const r of s.rows) {
    if (!targets.includes(r.target)) targets.push(r.target);
    if (!cases.includes(r.case)) cases.push(r.case);
  }
  const rank = (t: string): number =>
    t === BASELINE ? 0 : t.startsWith('haproxy') ? 1 : t.startsWith('node-https') ? 2 : 3;
  targets.sort((a, b) => rank(a) - rank(b));
  if (s.rows.length === 0) return '<p><em>no rows</em></p>';
  const head = `<tr><th>case</th><th>per unit</th>${targets.map((t) => `<th>${escapeHtml(t)}</th>`).join('')}</tr>`;
  const body: string[] = [];
  for (const c of cases) {
    for (const m of s.metrics) {
      const byTarget = new Map(s.rows.filter((r) => r.case === c).map((r) => [r.target, r.metrics[m.key]]));
      if ([...byTarget.values()].every((v) => v === null || v === undefined)) continue;
      const base = byTarget.get(BASELINE);
      const cells = targets.map((t) => {
        const v = byTarget.get(t);
        if (v === null || v === undefined || !Number.isFinite(v)) return '<td>—</td>';
        const text = v.toLocaleString('en-US', {
          minimumFractionDigits: m.digits ?? 0,
          maximumFractionDigits: m.digits ?? 0,
        });
        const ratio = t !== BASELINE && base ? ` <small>(${(v / base).toFixed(2)}×)</small>` : '';
        return `<td>${text}${ratio}</td>`;
      });
      const label = `${m.label}${m.unit ? ` (${m.unit})` : ''}`;
      body.push(`<tr><td>${escapeHtml(c)}</td><td>${escapeHtml(label)}</td>${cells.join('')}</tr>`);
    }
  }
  return `<table><thead>${head}</thead><tbody>${body.join('\n')}</tbody></table>`;
}

export function reportHtml(results: RunResults, header: string): string {
  const parts: string[] = [];
  parts.push('<!doctype html><html lang="en"><head><meta charset="utf-8">');
  parts.push(`<title>tlsgate bench ${escapeHtml(results.startedAt)}</title>`);
  parts.push(`<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #212529; padding: 0 12px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { border: 1px solid #dee2e6; padding: 3px 8px; }
td { text-align: right; } td:first-child, td:nth-child(2) { text-align: left; }
th { background: #f1f3f5; } small { color: #868e96; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; } .method { color: #495057; font-size: 13px; }
</style></head><body>`);
  parts.push(`<h1>tlsgate bench</h1><pre>${escapeHtml(header)}</pre>`);
  for (const s of results.scenarios) {
    parts.push(`<h2>${escapeHtml(s.title)}</h2>`);
    parts.push(tableHtml(s));
    if (s.charts?.length) parts.push(`<div class="charts">${s.charts.map(cdfSvg).join('\n')}</div>`);
    parts.push(`<p class="method">${escapeHtml(s.method)}</p>`);
    const notes = [...s.notes, ...s.skipped.map((x) => `skipped: ${x}`)];
    if (notes.length) parts.push(`<ul>${notes.map((n) => `<li>${escapeHtml(n)}</li>`).join('')}</ul>`);
  }
  parts.push('</body></html>\n');
  return parts.join('\n');
}

export function writeHtml(jsonFile: string, results: RunResults, header: string): string {
  const file = jsonFile.replace(/\.json$/, '.html');
  writeFileSync(file, reportHtml(results, header));
  return file;
}
