// The worker's end of its snapshot pipe (protocol.ts WORKER_SNAPSHOT_FD): full snapshots, one
// after the other, each `size` bytes announced by its IPC message. The socket reads straight into
// the snapshot's own buffer (net.Socket `onread`): no 64 KB chunk per read, which IPC keeps until
// a message's last chunk arrives and the C heap keeps afterwards, and which 'data' events leave
// to the GC (88 MB at 100k objects: 22-37 MB of [heap]). Read without blocking: the worker serves
// while a snapshot arrives.
import { Socket, type OnReadOpts, type SocketConstructorOpts } from 'node:net';
import { WORKER_SNAPSHOT_FD } from './protocol';

interface Want {
  buf: Buffer;
  at: number;
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
}

export class SnapshotPipe {
  private sock: Socket | undefined;
  private want: Want | undefined;
  /** Bytes read past the snapshot being read: the start of the next one. */
  private extra: Buffer | undefined;
  private failed: Error | undefined;
  private scratch: Buffer | undefined;

  constructor(private readonly fd = WORKER_SNAPSHOT_FD) {}

  /** The next `size` bytes. One read at a time (the worker's queue orders them). */
  read(size: number): Promise<Buffer> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => {
      this.want = { buf: Buffer.allocUnsafeSlow(size), at: 0, resolve, reject };
      const sock = (this.sock ??= this.open());
      const e = this.extra;
      this.extra = undefined;
      if (e) this.feed(e);
      if (this.want) sock.resume();
    });
  }

  private open(): Socket {
    const s = new Socket(<SocketConstructorOpts & { onread: OnReadOpts }>{
      fd: this.fd,
      readable: true,
      writable: false,
      onread: {
        // Straight into the snapshot being read; with none asked for, into a scratch buffer kept for the next.
        buffer: () => (this.want ? this.want.buf.subarray(this.want.at) : (this.scratch ??= Buffer.alloc(65_536))),
        callback: (n: number, buf: Uint8Array) => {
          const w = this.want;
          if (!w || buf.buffer !== w.buf.buffer) {
            this.feed(Buffer.from(buf.subarray(0, n)));
            return this.want !== undefined;
          }
          w.at += n;
          if (w.at < w.buf.length) return true;
          this.want = undefined;
          w.resolve(w.buf);
          return false;
        },
      },
    });
    s.unref();
    const fail = (err?: Error): void => {
      this.failed ??= err ?? new Error('the snapshot pipe ended');
      const w = this.want;
      this.want = undefined;
      w?.reject(this.failed);
    };
    s.on('error', fail);
    s.on('end', () => fail());
    s.on('close', () => fail());
    return s;
  }

  private feed(c: Buffer): void {
    const w = this.want;
    if (!w) {
      this.extra = this.extra ? Buffer.concat([this.extra, c]) : c;
      this.sock?.pause();
      return;
    }
    const n = Math.min(c.length, w.buf.length - w.at);
    c.copy(w.buf, w.at, 0, n);
    w.at += n;
    if (w.at < w.buf.length) return;
    this.want = undefined;
    this.sock?.pause();
    if (n < c.length) this.extra = c.subarray(n);
    w.resolve(w.buf);
  }
}
