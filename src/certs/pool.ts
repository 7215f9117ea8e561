// Certificate validation off the primary's event loop, cached by content hash so a
// rotation re-validates the SSL objects that changed, not all ten thousand.
import { join } from 'node:path';
import type { Piscina } from 'piscina';
import { validateSsl, type ValidateInput, type ValidateOutput } from './validate';
import { cacheKey as contentKey, ValidationCache } from './validation-cache';

const BATCH = 64; // SSL objects per task: amortises the thread hop (~50 µs) over ~40 ms of work
/**
 * A change of a few objects (a rotation) is validated on the primary's thread: ≈ 0.65 ms
 * each, less than a thread hop, and never waits for a pool thread to start again after
 * its idle timeout (seconds on this loaded 2-core machine, measured).
 */
const INLINE_MAX = 4;

/** A pool idle this long is closed (its threads hold ~10 MB each); the next batch starts one again. */
const POOL_IDLE_MS = 30_000;

export class CertValidator {
  /** Made on the first batch too large to run inline: a start whose verdicts are all cached never loads piscina. */
  private pool: Piscina | undefined;
  private idle: NodeJS.Timeout | undefined;
  private running = 0;
  private cache = new Map<string, ValidateOutput>();
  /** By content (not path, id, SNIs or day): kept across restarts once persist() names a file. */
  private verdicts = new ValidationCache(undefined, undefined);

  constructor(private readonly threads = 1) {}

  private startPool(): Piscina {
    clearTimeout(this.idle);
    if (this.pool) return this.pool;
    const { Piscina: Pool } = require('piscina') as typeof import('piscina');
    const n = Math.max(1, this.threads);
    // Every thread at once: growing on demand started the second one ~0.6 s after the first
    // (10k start, measured). Two batches queued per thread: a thread does not wait idle for
    // the primary's event loop to hand it the next one (~2.3 s of 6.7 s waited, 10k cold start).
    this.pool = new Pool({
      filename: join(__dirname, 'validate-task.js'),
      minThreads: n,
      maxThreads: n,
      concurrentTasksPerWorker: 2,
    });
    return this.pool;
  }

  /** After the last batch: close the pool once it stayed idle POOL_IDLE_MS. */
  private releaseSoon(): void {
    if (this.running > 0 || !this.pool) return;
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      const pool = this.pool;
      this.pool = undefined;
      void pool?.destroy();
    }, POOL_IDLE_MS);
    this.idle.unref();
  }

  /** Keep verdicts in this file across restarts (ValidationCache); loads it now. */
  persist(cache: ValidationCache): void {
    cache.load();
    this.verdicts = cache;
  }

  /** Writes pending verdicts now (shutdown). */
  flush(): void {
    this.verdicts.save();
  }

  async validate(inputs: ValidateInput[]): Promise<ValidateOutput[]> {
    // One hash over the PEMs per object (≈ 1 s of a 100k start was hashing them twice more, profiled).
    const contents = inputs.map(contentKey);
    const keys = inputs.map((input, i) => cacheKey(input, contents[i]!));
    const out: ValidateOutput[] = new Array(inputs.length);
    const todo: number[] = [];
    const content = new Map<number, string>();
    keys.forEach((k, i) => {
      const hit = this.cache.get(k);
      if (hit) return void (out[i] = hit);
      const ck = contents[i]!;
      const known = this.verdicts.get(ck, inputs[i]!);
      if (known) return void (out[i] = known);
      content.set(i, ck);
      todo.push(i);
    });
    if (todo.length <= INLINE_MAX) for (const i of todo.splice(0)) out[i] = validateSsl(inputs[i]!);
    const batches: number[][] = [];
    for (let i = 0; i < todo.length; i += BATCH) batches.push(todo.slice(i, i + BATCH));
    if (batches.length > 0) {
      const pool = this.startPool();
      this.running++;
      try {
        await Promise.all(
          batches.map(async (b) => {
            const res = (await pool.run(b.map((i) => inputs[i]!))) as ValidateOutput[];
            b.forEach((i, j) => (out[i] = res[j]!));
          }),
        );
      } finally {
        this.running--;
        this.releaseSoon();
      }
    }
    for (const [i, ck] of content) this.verdicts.put(ck, out[i]!);
    // Keep only what the current config uses: the cache never outgrows the config.
    const next = new Map<string, ValidateOutput>();
    keys.forEach((k, i) => next.set(k, out[i]!));
    this.cache = next;
    return out;
  }

  async close(): Promise<void> {
    clearTimeout(this.idle);
    const pool = this.pool;
    this.pool = undefined;
    await pool?.destroy();
  }
}

/** The in-memory key: the content hash (every PEM, type, warn_days) and what the verdict's wording depends on. */
function cacheKey(i: ValidateInput, content: string): string {
  // Expiry warnings depend on the day: include it so a cached result ages.
  const day = Math.floor(i.now / 86_400_000);
  return JSON.stringify([content, i.path, i.id, i.snis, day]);
}
