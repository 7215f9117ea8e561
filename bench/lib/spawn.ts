// Child processes of the bench: servers under test, upstream, load generators.
// Every wait is bounded; every process started here is stopped by its own pid.
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { which } from './machine';

/** CPU sets for `taskset -c`: the server on one core, clients on the other, when the machine has two or more. */
export interface Pinning {
  server?: string;
  client?: string;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export interface Proc {
  child: ChildProcess;
  pid: number;
  name: string;
  /** Last ~64 KB of stdout+stderr, for error messages. */
  output(): string;
  /** Resolves with the exit code (or signal name). */
  exited: Promise<number | string>;
  stop(timeoutMs?: number): Promise<void>;
}

export interface StartOptions {
  cpus?: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  onLine?: (line: string) => void;
}

export function startProcess(name: string, cmd: string, args: string[], o: StartOptions = {}): Proc {
  const taskset = o.cpus ? which('taskset') : undefined;
  const [file, argv] = taskset ? [taskset, ['-c', o.cpus!, cmd, ...args]] : [cmd, args];
  // taskset execs the command, so child.pid is the server's pid either way.
  const child = spawn(file, argv, { cwd: o.cwd, env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let buf = '';
  let partial = '';
  const onData = (d: Buffer): void => {
    const s = d.toString();
    buf = (buf + s).slice(-65536);
    if (o.onLine) {
      partial += s;
      const lines = partial.split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) o.onLine(l);
    }
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1));
    child.on('error', (err) => {
      buf += `\nspawn error: ${err.message}`;
      resolve(-1);
    });
  });
  let stopping: Promise<void> | undefined;
  const proc: Proc = {
    child,
    pid: child.pid ?? -1,
    name,
    output: () => buf,
    exited,
    stop(timeoutMs = 5000) {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        child.kill('SIGTERM');
        const done = await Promise.race([exited.then(() => true), sleep(timeoutMs).then(() => false)]);
        if (!done) {
          child.kill('SIGKILL');
          await exited;
        }
      })();
      return stopping;
    },
  };
  return proc;
}

/** Resolves once something accepts TCP connections on host:port; throws if the process exits or time runs out. */
export async function waitForPort(port: number, proc: Proc, timeoutMs = 15000, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exitCode: number | string | undefined;
  void proc.exited.then((c) => (exitCode = c));
  while (Date.now() < deadline) {
    if (exitCode !== undefined) throw new Error(`${proc.name} exited (${exitCode}) before listening on ${port}:\n${proc.output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ port, host }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(20);
  }
  throw new Error(`${proc.name} did not listen on ${port} within ${timeoutMs} ms:\n${proc.output()}`);
}

/** Run a command to completion with a hard time limit; resolves with its output. */
export async function runToEnd(
  name: string,
  cmd: string,
  args: string[],
  o: StartOptions & { timeoutMs: number },
): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const taskset = o.cpus ? which('taskset') : undefined;
  const [file, argv] = taskset ? [taskset, ['-c', o.cpus!, cmd, ...args]] : [cmd, args];
  const child = spawn(file, argv, { cwd: o.cwd, env: o.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-65536)));
  const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
  const code = await new Promise<number | string>((resolve) => {
    child.on('exit', (c, s) => resolve(c ?? s ?? -1));
    child.on('error', (err) => {
      stderr += `\nspawn error (${name}): ${err.message}`;
      resolve(-1);
    });
  });
  clearTimeout(timer);
  return { code, stdout, stderr };
}
