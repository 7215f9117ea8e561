// The balancers beside smooth WRR (wrr.ts): least_conn and chash, as nginx and APISIX
// define them. Every picker skips `exclude` (the node a retry leaves), weight-0 nodes and
// nodes `eligible` refuses (passive back-off, active checks), and falls back to every
// node when none is eligible: a fully failed upstream is still tried (502 with the code
// when it really is down), as before and as APISIX does.
import type { BalanceSnapshot } from '../snapshot/types';
import type { WrrItem } from './wrr';

// ---- least_conn ------------------------------------------------------------------------

/**
 * nginx's least_conn: the node with the fewest in-flight requests per unit of weight
 * (`inflight[i] / weight`, compared by cross-multiplication), ties broken by smooth WRR
 * among the tied nodes only. Counts are per worker, like nginx's without a shared zone.
 * @returns the index of the node, or -1 when no node has weight.
 */
export function pickLeastConn<T extends WrrItem>(
  items: readonly T[],
  inflight: Int32Array,
  eligible: (item: T) => boolean,
  exclude?: T,
): number {
  let anyEligible = false;
  for (const it of items) {
    if (it !== exclude && it.weight > 0 && eligible(it)) {
      anyEligible = true;
      break;
    }
  }
  let best = -1;
  let tied = 0;
  for (let i = 0; i < items.length; i++) {
    const it = items[i]!;
    if (it === exclude || it.weight <= 0 || (anyEligible && !eligible(it))) continue;
    if (best < 0) {
      best = i;
      tied = 1;
      continue;
    }
    const b = items[best]!;
    const cmp = inflight[i]! * b.weight - inflight[best]! * it.weight;
    if (cmp < 0) {
      best = i;
      tied = 1;
    } else if (cmp === 0) tied++;
  }
  if (tied <= 1) return best;
  // Smooth WRR over the nodes tied with `best` (same ratio), as nginx does.
  const b = items[best]!;
  const bi = inflight[best]!;
  let pick = -1;
  let total = 0;
  for (let i = best; i < items.length; i++) {
    const it = items[i]!;
    if (it === exclude || it.weight <= 0 || (anyEligible && !eligible(it))) continue;
    if (inflight[i]! * b.weight !== bi * it.weight) continue;
    it.current += it.weight;
    total += it.weight;
    if (pick < 0 || it.current > items[pick]!.current) pick = i;
  }
  items[pick]!.current -= total;
  return pick;
}

// ---- chash -----------------------------------------------------------------------------

/**
 * FNV-1a over the UTF-16 code units, then murmur3's 32-bit finalizer so that keys differing
 * in one character land far apart on the ring. Not a keyed hash: every worker and every
 * gateway instance must map a key to the same node.
 */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Ring points per unit of weight (ketama uses 160 per server). */
export const POINTS_PER_WEIGHT = 160;
/** Node indexes packed under each point's hash: up to 2^21 nodes. */
const OWNER_SPAN = 2 ** 21;
/** Ring size cap per upstream (8 bytes a point: 2 MiB); beyond it every node's points are scaled down. */
export const MAX_RING_POINTS = 1 << 18;

/**
 * A consistent-hash ring with weighted virtual nodes: node i owns `160 × weight` points at
 * hash32(`<host:port>#<j>`). A node's points depend on its own key and weight only, so
 * removing (or adding) a node moves only the keys of that node's points.
 */
export class HashRing {
  readonly #points: Uint32Array;
  readonly #owner: Uint32Array;
  /** Nodes that own points (weight > 0): a walk stops once it saw each. */
  readonly #nodes: number;
  readonly #slots: number;

  constructor(nodes: ReadonlyArray<{ readonly key: string; readonly weight: number }>) {
    this.#nodes = nodes.filter((n) => n.weight > 0).length;
    this.#slots = nodes.length;
    let total = 0;
    for (const n of nodes) total += Math.max(0, n.weight) * POINTS_PER_WEIGHT;
    const scale = total > MAX_RING_POINTS ? MAX_RING_POINTS / total : 1;
    // hash × 2^21 + owner in a Float64Array: a native numeric sort, no comparator (measured:
    // 200 nodes of weight 1, 32,000 points, 36 ms with [hash, owner] pairs and a comparator).
    const packed: number[] = [];
    nodes.forEach((n, i) => {
      if (n.weight <= 0) return;
      const count = Math.max(1, Math.floor(n.weight * POINTS_PER_WEIGHT * scale));
      for (let j = 0; j < count; j++) packed.push(hash32(`${n.key}#${j}`) * OWNER_SPAN + i);
    });
    const sorted = Float64Array.from(packed).sort();
    this.#points = new Uint32Array(sorted.length);
    this.#owner = new Uint32Array(sorted.length);
    for (let k = 0; k < sorted.length; k++) {
      const v = sorted[k]!;
      this.#points[k] = Math.floor(v / OWNER_SPAN);
      this.#owner[k] = v % OWNER_SPAN;
    }
    // Equal hashes (a few among 10^5 points): ordered by node key, so the ring does not
    // depend on the order the nodes are listed in.
    for (let k = 1; k < sorted.length; k++) {
      if (this.#points[k] !== this.#points[k - 1]) continue;
      let end = k + 1;
      while (end < sorted.length && this.#points[end] === this.#points[k]) end++;
      const run = Array.from(this.#owner.subarray(k - 1, end)).sort((x, y) => (nodes[x]!.key < nodes[y]!.key ? -1 : 1));
      this.#owner.set(run, k - 1);
      k = end - 1;
    }
  }

  get size(): number {
    return this.#points.length;
  }

  /**
   * The first node clockwise from `hash` that `ok` accepts (the key's node, or the next one
   * on the ring when it is skipped); -1 when the ring is empty or `ok` refuses every node.
   * Stops after every distinct node was seen once, not after the whole ring.
   */
  pick(hash: number, ok: (index: number) => boolean): number {
    const pts = this.#points;
    const n = pts.length;
    if (n === 0) return -1;
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (pts[mid]! < hash) lo = mid + 1;
      else hi = mid;
    }
    let seen: Uint8Array | undefined;
    let distinct = 0;
    for (let k = 0; k < n; k++) {
      const owner = this.#owner[(lo + k) % n]!;
      if (seen === undefined) {
        if (ok(owner)) return owner;
        seen = new Uint8Array(this.#slots);
      } else if (seen[owner] === 1) continue;
      else if (ok(owner)) return owner;
      seen[owner] = 1;
      if (++distinct >= this.#nodes) break;
    }
    return -1;
  }
}

// ---- the request's key -------------------------------------------------------------------

/** What a chash key is read from. */
export interface BalanceRequest {
  /** Flat [name, value, …] as received. */
  readonly rawHeaders: readonly string[];
  /** The normalized target (path + query) the upstream gets. */
  readonly target: string;
  readonly remoteAddress: string;
  /** The request's authority (Host / absolute target), port kept. */
  readonly authority?: string | undefined;
}

/** Reads the configured key of a request; undefined when the request does not carry it. */
type PartReader = (r: BalanceRequest) => string | undefined;
/** The key a request is hashed on. */
export type KeyReader = (r: BalanceRequest) => string;

/** Built once per pool from the snapshot; the client address when the key is absent or empty. */
export function keyReader(b: Extract<BalanceSnapshot, { type: 'chash' }>): KeyReader {
  const read = partReader(b);
  return (r) => {
    const v = read(r);
    return v === undefined || v === '' ? r.remoteAddress : v;
  };
}

function partReader(b: Extract<BalanceSnapshot, { type: 'chash' }>): PartReader {
  if (b.hashOn === 'header') return headerOf(b.key.toLowerCase());
  if (b.hashOn === 'cookie') return cookieOf(b.key);
  switch (b.key) {
    case 'remote_addr':
      return (r) => r.remoteAddress;
    case 'uri':
      return (r) => pathOf(r.target);
    case 'request_uri':
      return (r) => r.target;
    case 'query_string':
      return (r) => queryOf(r.target);
    case 'host':
      return (r) => (r.authority === undefined ? undefined : r.authority.replace(/:\d+$/, '').toLowerCase());
  }
  const m = /^(http|arg|cookie)_(.+)$/.exec(b.key);
  if (m === null) return () => undefined; // refused by validate; never reached
  const name = m[2]!;
  // nginx's $http_x_user_id: underscores stand for dashes.
  if (m[1] === 'http') return headerOf(name.toLowerCase().replace(/_/g, '-'));
  if (m[1] === 'cookie') return cookieOf(name);
  return (r) => argOf(queryOf(r.target), name);
}

function pathOf(target: string): string {
  const q = target.indexOf('?');
  return q < 0 ? target : target.slice(0, q);
}

function queryOf(target: string): string | undefined {
  const q = target.indexOf('?');
  return q < 0 ? undefined : target.slice(q + 1);
}

/** The first value of a header (name lower case); repeated headers: the first one wins. */
function headerOf(lower: string): PartReader {
  return (r) => {
    const h = r.rawHeaders;
    for (let i = 0; i < h.length; i += 2) {
      if (h[i]!.length === lower.length && h[i]!.toLowerCase() === lower) return h[i + 1];
    }
    return undefined;
  };
}

function argOf(query: string | undefined, name: string): string | undefined {
  if (query === undefined) return undefined;
  for (const part of query.split('&')) {
    const eq = part.indexOf('=');
    if ((eq < 0 ? part : part.slice(0, eq)) === name) return eq < 0 ? '' : part.slice(eq + 1);
  }
  return undefined;
}

function cookieOf(name: string): PartReader {
  const cookie = headerOf('cookie');
  return (r) => {
    const c = cookie(r);
    if (c === undefined) return undefined;
    for (const part of c.split(';')) {
      const eq = part.indexOf('=');
      if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
    }
    return undefined;
  };
}
