// Watches the config file, every `$file://` it references and every watched `ssl_dirs`
// directory (any name in it: a file added, replaced, removed or re-linked), and reports a change only
// once the files are stable: an editor or `cp` writes in several chunks, and a chunk
// that is valid YAML on its own (measured: a config cut before an ssl's `client:` block)
// would otherwise be applied and switch mTLS off. A file is stable when two probes
// `quietMs` apart agree (size, mtime, inode, content hash) and its mtime is at least
// `quietMs` old. Watchers are per directory (editors replace files by rename) and are
// never closed and re-opened on a reload: an event queued while the primary was busy
// would be dropped with the closed watcher.
//
// Fast path: a file that got only `rename` events (inotify IN_MOVED_TO / IN_CREATE, never
// IN_MODIFY) was moved or linked in whole: `mv x.tmp x`, certbot's symlink swap,
// cert-manager's `..data` swap. It is complete when the event arrives, so it is reported
// after one probe when it is a complete PEM file, instead of after the stable window
// (≥ 175 ms). Any write into the file (`cp`, an editor, `cat >`, `rm` + a new file written
// in chunks) also raises a `change` event and keeps the stable window. The write that made
// the bytes the probe read raised its event before the read, so one more poll phase after
// the probe is enough to see it (2 ms, checked before reporting).
import { createHash } from 'node:crypto';
import { statSync, watch, type FSWatcher } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { readLocalFile } from '../secrets/resolve';
import { dirSignature } from '../config/ssl-dirs';

export interface FileWatchOptions {
  /** Called once the changed files are stable; `paths` are the files that changed. */
  onStable: (paths: string[], timing: WatchTiming) => void;
  onError: (err: Error, dir: string) => void;
  debounceMs?: number;
  quietMs?: number;
  /** Files larger than this are compared by stat only. */
  maxReadBytes?: number;
}

export const FILE_WATCH_DEFAULTS = {
  // One probe per burst of events: a cert and its key renamed in one after the other (µs
  // apart) are reported together; 10 ms is most of a rename-replaced file's latency.
  debounceMs: 10,
  quietMs: 150, // two probes this far apart must agree; a writer pausing longer between chunks is not detected
  maxRounds: 40, // a file still changing after ~6 s is applied as it is then (the whole config is still validated)
  maxReadBytes: 64 * 1024 * 1024,
} as const;

/** When the reported change was seen (epoch ms, sub-ms): the first event, the end of the debounce. */
export interface WatchTiming {
  eventAt: number;
  settleAt: number;
}

/** Epoch ms with the monotonic clock's resolution (phases of one change, logged at debug). */
export function nowMs(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 10) / 10;
}

interface Dir {
  watcher: FSWatcher;
  names: Set<string>;
  /** An `ssl_dirs` directory: an event for any name in it is a change. */
  whole: boolean;
}

/** An `ssl_dirs` directory and its signature when it was read (dirSignature). */
export interface WholeDir {
  path: string;
  signature: string;
}

export class FileWatch {
  private readonly dirs = new Map<string, Dir>();
  private readonly dirty = new Set<string>();
  /** Dirty paths that saw a `change` event (a write into the file): never the fast path. */
  private readonly written = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  /** The first event not yet reported. */
  private eventAt: number | undefined;
  private settling = false;
  private closed = false;

  constructor(private readonly o: FileWatchOptions) {}

  /**
   * Watch exactly these files (absolute paths) and directories; returns the files not watched
   * before. A directory newly watched whose signature differs from the one it was read with
   * changed in between: it is marked, so that change is not lost.
   */
  set(files: Iterable<string>, dirs: readonly WholeDir[] = []): string[] {
    const want = new Map<string, Set<string>>();
    for (const f of files) {
      const d = dirname(f);
      if (!want.has(d)) want.set(d, new Set());
      want.get(d)!.add(basename(f));
    }
    const whole = new Map(dirs.map((d) => [d.path, d.signature]));
    for (const d of whole.keys()) if (!want.has(d)) want.set(d, new Set());
    const wasWhole = new Set([...this.dirs].filter(([, e]) => e.whole).map(([d]) => d));
    const added: string[] = [];
    for (const [dir, entry] of this.dirs) {
      if (!want.has(dir)) {
        entry.watcher.close();
        this.dirs.delete(dir);
      }
    }
    for (const [dir, names] of want) {
      let entry = this.dirs.get(dir);
      if (!entry) {
        try {
          const watcher = watch(dir, { persistent: false }, (event, name) => {
            this.onEvent(dir, name === null ? null : name.toString(), event);
          });
          watcher.on('error', (err) => this.o.onError(err, dir));
          entry = { watcher, names: new Set(), whole: false };
          this.dirs.set(dir, entry);
        } catch (err) {
          this.o.onError(err as Error, dir);
          continue;
        }
      }
      for (const n of names) if (!entry.names.has(n)) added.push(join(dir, n));
      entry.names = names;
      entry.whole = whole.has(dir);
      if (entry.whole && !wasWhole.has(dir) && dirSignature(dir) !== whole.get(dir)) this.mark([dir]);
    }
    return added;
  }

  /** Treat these files as changed (e.g. found different from what the snapshot holds). */
  mark(paths: Iterable<string>): void {
    for (const p of paths) {
      this.dirty.add(p);
      this.written.add(p); // how it was written is not known: the stable window
    }
    if (this.dirty.size > 0) this.schedule();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    for (const d of this.dirs.values()) d.watcher.close();
    this.dirs.clear();
  }

  private onEvent(dir: string, name: string | null, event: string): void {
    const entry = this.dirs.get(dir);
    if (!entry) return;
    if (name === null) {
      // No name: anything may have happened to any file of the directory.
      for (const n of entry.names) {
        this.dirty.add(join(dir, n));
        this.written.add(join(dir, n));
      }
      if (entry.whole) this.dirty.add(dir);
    } else if (entry.names.has(name) || entry.whole) {
      const p = join(dir, name);
      this.dirty.add(p);
      if (event !== 'rename') this.written.add(p);
    } else return;
    this.schedule();
  }

  private schedule(): void {
    this.eventAt ??= nowMs();
    if (this.closed || this.settling) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.settle(), this.o.debounceMs ?? FILE_WATCH_DEFAULTS.debounceMs);
  }

  private async settle(): Promise<void> {
    this.settling = true;
    const timing: WatchTiming = { eventAt: this.eventAt ?? nowMs(), settleAt: nowMs() };
    this.eventAt = undefined;
    const quiet = this.o.quietMs ?? FILE_WATCH_DEFAULTS.quietMs;
    const first = this.probeAll();
    const whole = [...first].filter(([p, v]) => v.pem && !this.written.has(p)).map(([p]) => p);
    if (whole.length) {
      // The `change` event of a write that made the bytes just read is queued by then (the
      // kernel queues it at the end of the write(2) whose bytes the read saw): 2 ms of poll
      // phases deliver it, with a margin for a writer preempted inside that write.
      await new Promise((r) => setTimeout(r, 2));
      const fast = whole.filter((p) => !this.written.has(p));
      if (fast.length && !this.closed) {
        for (const p of fast) {
          this.dirty.delete(p);
          first.delete(p);
        }
        this.o.onStable(fast, timing);
      }
    }
    if (first.size === 0 || this.closed) {
      this.settling = false;
      if (!this.closed && this.dirty.size > 0) this.schedule();
      return;
    }
    let last = new Map([...first].map(([p, v]) => [p, v.key]));
    for (let round = 0; round < FILE_WATCH_DEFAULTS.maxRounds && !this.closed; round++) {
      await new Promise((r) => setTimeout(r, quiet));
      const now = this.probeAll();
      const stable = [...now].every(([p, v]) => last.get(p) === v.key && Date.now() - v.mtimeMs >= quiet);
      last = new Map([...now].map(([p, v]) => [p, v.key]));
      if (stable) break;
    }
    this.settling = false;
    if (this.closed) return;
    const paths = [...last.keys()];
    for (const p of paths) {
      this.dirty.delete(p);
      this.written.delete(p);
    }
    this.o.onStable(paths, timing);
    if (this.dirty.size > 0) this.schedule();
  }

  private probeAll(): Map<string, Probe> {
    const out = new Map<string, Probe>();
    for (const p of this.dirty) out.set(p, probe(p, this.o.maxReadBytes ?? FILE_WATCH_DEFAULTS.maxReadBytes));
    return out;
  }
}

interface Probe {
  key: string;
  mtimeMs: number;
  /** A regular file holding only complete PEM blocks (the fast path's content test). */
  pem: boolean;
}

function probe(p: string, max: number): Probe {
  try {
    const st = statSync(p);
    let hash = '';
    let pem = false;
    if (st.isFile() && st.size <= max) {
      try {
        const text = readLocalFile(p, p, max);
        hash = createHash('sha256').update(text).digest('hex');
        pem = completePem(text);
      } catch {
        hash = 'unreadable';
      }
    }
    return { key: `${st.ino}:${st.size}:${st.mtimeMs}:${hash}`, mtimeMs: st.mtimeMs, pem };
  } catch (err) {
    return { key: `missing:${(err as NodeJS.ErrnoException).code ?? ''}`, mtimeMs: 0, pem: false };
  }
}

const PEM_BLOCK = /-----BEGIN ([A-Z0-9 ]{1,64})-----\r?\n[A-Za-z0-9+/=\r\n]+-----END \1-----/g;

/** At least one PEM block, each BEGIN closed by its END, no marker left over (a cut file has one). */
export function completePem(text: string): boolean {
  let blocks = 0;
  const rest = text.replace(PEM_BLOCK, () => {
    blocks++;
    return '';
  });
  return blocks > 0 && !rest.includes('-----BEGIN') && !rest.includes('-----END');
}
