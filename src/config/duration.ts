// Durations in the config: "500ms", "60s", "5m", "1h", "1d", compounds such as "1m30s",
// decimals such as "1.5s". A bare number (or numeric string) is seconds, as in nginx,
// because `refresh_interval: 60` written by an operator means a minute, not 60 ms.

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/y;
const BARE = /^\d+(?:\.\d+)?$/;

/** Milliseconds (rounded), or null when the text is not a non-negative duration. */
export function parseDuration(text: string | number): number | null {
  if (typeof text === 'number') {
    return Number.isFinite(text) && text >= 0 ? Math.round(text * 1000) : null;
  }
  const s = text.trim();
  if (s === '') return null;
  if (BARE.test(s)) return Math.round(Number(s) * 1000);
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < s.length) {
    const at = PART.lastIndex;
    const m = PART.exec(s);
    if (!m || m.index !== at) return null;
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
  }
  return Number.isFinite(total) ? Math.round(total) : null;
}
