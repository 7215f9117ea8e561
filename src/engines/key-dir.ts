// uWS takes key and certificate *file names* only. tlsgate writes each pair to a
// private directory on tmpfs (/dev/shm: never on a disk), 0700 directory and 0600
// files, for the duration of one context creation, then unlinks them: a key exists as
// a file only while BoringSSL reads it. The directory is removed at exit; a crashed
// process leaves at most an empty directory, removed by the next start.
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { CertKeyPair } from '../snapshot/types';

const PREFIX = 'tlsgate-keys-';

/** /dev/shm when it is a writable directory (tmpfs on Linux), else the OS temp dir. */
export function keyBase(): string {
  const override = process.env.TLSGATE_KEY_DIR;
  if (override) return override;
  try {
    if (statSync('/dev/shm').isDirectory()) {
      const probe = join('/dev/shm', `${PREFIX}probe-${process.pid}`);
      mkdirSync(probe, { mode: 0o700 });
      rmSync(probe, { recursive: true, force: true });
      return '/dev/shm';
    }
  } catch {
    /* not there or not writable */
  }
  return tmpdir();
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Remove directories left by tlsgate processes that no longer exist. Returns how many. */
export function cleanStaleKeyDirs(base: string): number {
  let n = 0;
  let names: string[];
  try {
    names = readdirSync(base);
  } catch {
    return 0;
  }
  const uid = process.getuid?.();
  for (const name of names) {
    const m = /^tlsgate-keys-(\d+)-[0-9a-f]+$/.exec(name);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || alive(pid)) continue;
    const p = join(base, name);
    try {
      if (uid !== undefined && statSync(p).uid !== uid) continue;
      rmSync(p, { recursive: true, force: true });
      n++;
    } catch {
      /* raced with another cleaner */
    }
  }
  return n;
}

export class KeyDir {
  readonly path: string;
  private removed = false;
  private readonly onExit = (): void => this.remove();

  constructor(base = keyBase()) {
    cleanStaleKeyDirs(base);
    this.path = join(base, `${PREFIX}${process.pid}-${randomBytes(6).toString('hex')}`);
    mkdirSync(this.path, { mode: 0o700 });
    process.once('exit', this.onExit);
  }

  /** Write the pair, call fn with the file names, unlink both whatever fn does. */
  withPair<T>(pair: CertKeyPair, fn: (files: { key_file_name: string; cert_file_name: string }) => T): T {
    const id = randomBytes(8).toString('hex');
    const key = join(this.path, `${id}.key`);
    const cert = join(this.path, `${id}.crt`);
    try {
      writeFileSync(key, pair.key, { mode: 0o600, flag: 'wx' });
      writeFileSync(cert, pair.cert, { mode: 0o600, flag: 'wx' });
      return fn({ key_file_name: key, cert_file_name: cert });
    } finally {
      for (const f of [key, cert]) {
        try {
          unlinkSync(f);
        } catch {
          /* never written */
        }
      }
    }
  }

  remove(): void {
    if (this.removed) return;
    this.removed = true;
    process.off('exit', this.onExit);
    rmSync(this.path, { recursive: true, force: true });
  }
}
