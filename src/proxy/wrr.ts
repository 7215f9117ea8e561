// Smooth weighted round robin (the nginx algorithm): weights 5:1:1 give
// a a b a c a a rather than a a a a a b c, and any window of sum(weights) picks
// is exact. State is per worker; no coordination between workers.

export interface WrrItem {
  readonly weight: number;
  /** Mutable WRR state, owned by `pickSmoothWrr`. */
  current: number;
}

/**
 * Picks among `items` those for which `eligible` holds (all of them when none is
 * eligible: a fully failed upstream is still tried rather than refused outright),
 * skipping `exclude` and weight-0 items.
 */
export function pickSmoothWrr<T extends WrrItem>(
  items: readonly T[],
  eligible: (item: T) => boolean,
  exclude?: T,
): T | undefined {
  let anyEligible = false;
  for (const it of items) {
    if (it !== exclude && it.weight > 0 && eligible(it)) {
      anyEligible = true;
      break;
    }
  }
  let best: T | undefined;
  let total = 0;
  for (const it of items) {
    if (it === exclude || it.weight <= 0) continue;
    if (anyEligible && !eligible(it)) continue;
    it.current += it.weight;
    total += it.weight;
    if (best === undefined || it.current > best.current) best = it;
  }
  if (best !== undefined) best.current -= total;
  return best;
}
