// An exchange that calls `done` once when its response ends, is destroyed or its client
// goes: how a least_conn / chash pool learns a request left its node without a hook in
// the forwarding code. Only those pools pay for the two extra objects.
import type { Readable } from 'node:stream';
import type { ConnFacts, Exchange, ResponseWriter } from './exchange';

class ReleasingWriter implements ResponseWriter {
  readonly #w: ResponseWriter;
  #done: (() => void) | null;
  #gone: (() => void) | null = null;

  constructor(w: ResponseWriter, done: () => void) {
    this.#w = w;
    this.#done = done;
    // The engine holds one gone-listener: this one, which calls the caller's after releasing.
    w.onGone(() => {
      this.#release();
      this.#gone?.();
    });
  }

  #release(): void {
    const d = this.#done;
    this.#done = null;
    d?.();
  }

  get headersSent(): boolean {
    return this.#w.headersSent;
  }
  get gone(): boolean {
    return this.#w.gone;
  }
  writeHead(status: number, reason: string | undefined, headers: string[]): void {
    this.#w.writeHead(status, reason, headers);
  }
  write(chunk: Buffer): boolean {
    return this.#w.write(chunk);
  }
  onDrain(cb: () => void): void {
    this.#w.onDrain(cb);
  }
  end(body?: Buffer | string, trailers?: string[]): void {
    this.#release();
    this.#w.end(body, trailers);
  }
  writeContinue(): void {
    this.#w.writeContinue();
  }
  destroy(): void {
    this.#release();
    this.#w.destroy();
  }
  onGone(cb: (() => void) | null): void {
    this.#gone = cb;
  }
  closeAfter(): void {
    this.#w.closeAfter();
  }
}

export class ReleasingExchange implements Exchange {
  readonly #ex: Exchange;
  readonly res: ResponseWriter;

  constructor(ex: Exchange, done: () => void) {
    this.#ex = ex;
    this.res = new ReleasingWriter(ex.res, done);
  }

  get method(): string {
    return this.#ex.method;
  }
  get target(): string {
    return this.#ex.target;
  }
  get httpVersion(): string | undefined {
    return this.#ex.httpVersion;
  }
  get rawHeaders(): string[] {
    return this.#ex.rawHeaders;
  }
  get conn(): ConnFacts {
    return this.#ex.conn;
  }
  get expectContinue(): boolean {
    return this.#ex.expectContinue;
  }
  body(): Readable | null {
    return this.#ex.body();
  }
  get bodyDone(): boolean {
    return this.#ex.bodyDone;
  }
}
