// Synchronisation for tests: poll a condition against a deadline, or wait for an event
// with a timeout. Never a bare sleep.
import { once, type EventEmitter } from 'node:events';

export async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs}ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export async function nextEvent<T extends unknown[]>(emitter: EventEmitter, event: string, timeoutMs = 5000): Promise<T> {
  return (await once(emitter, event, { signal: AbortSignal.timeout(timeoutMs) })) as T;
}

/** Collects log calls; `text()` is everything that would have been written. */
export class MemoryLogger {
  readonly lines: Array<{ level: 'warn' | 'info'; obj: object; msg: string }> = [];
  warn(obj: object, msg: string): void {
    this.lines.push({ level: 'warn', obj, msg });
  }
  info(obj: object, msg: string): void {
    this.lines.push({ level: 'info', obj, msg });
  }
  warnings(): number {
    return this.lines.filter((l) => l.level === 'warn').length;
  }
  text(): string {
    return JSON.stringify(this.lines);
  }
}
