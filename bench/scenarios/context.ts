import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BaseFixtures } from '../lib/fixtures';
import { processTree, startTime } from '../lib/proc';
import type { Pinning } from '../lib/spawn';
import type { ScenarioResult } from '../lib/report';
import type { RunningServer, ServerSpec, Target } from '../targets/types';

/** tiny: the CI plumbing test; quick: `--quick`, under 60 s; full: the published run. */
export type Profile = 'tiny' | 'quick' | 'full';

/** Command-line knobs of the issue-13 scenarios; unset = the profile's default. */
export interface Knobs {
  /** --rotation-sizes: SSL objects (one cert file each) per cert-rotation run. */
  rotationSizes?: number[];
  /** --rotations: cert files replaced per size and target. */
  rotations?: number;
  /** --rotation-budget: seconds of rotations per size and target (at least one rotation is made). */
  rotationBudgetS?: number;
  /** --respawns: workers SIGKILLed per size and target. */
  respawns?: number;
  /** --rotation-peer-max: largest size nginx is started with (it builds every context at start). */
  peerMax?: number;
  /** --rotate-one: every rotation replaces the same object's file (the issue-13 soak), not a different one. */
  rotateOne?: boolean;
  /** --rotation-load: seconds of the under-load phase (wrk keep-alive + new connections while rotating); 0 = off. */
  loadS?: number;
  /** --soak: rotations of one file back to back per tlsgate engine, RSS sampled, forced GC at both ends; 0 = off. */
  soak?: number;
  /** --soak-heap: also write a worker heap snapshot before and after the soak (kept, path logged). */
  soakHeap?: boolean;
}

export interface Context {
  profile: Profile;
  knobs: Knobs;
  workers: number;
  fixtures: BaseFixtures;
  upstreamPort: number;
  pin: Pinning;
  /** Targets that can run here, peers first. */
  targets: Target[];
  /** Why the others can't. */
  absent: string[];
  log(msg: string): void;
}

export interface Scenario {
  name: string;
  run(ctx: Context): Promise<ScenarioResult>;
}

/** Pick by profile. */
export const by = <T>(ctx: Context, v: Record<Profile, T>): T => v[ctx.profile];

/** Start a target on a fresh temp dir, run `fn`, always stop it and remove the dir. */
export async function withServer<T>(
  ctx: Context,
  target: Target,
  spec: Partial<ServerSpec> &
    Pick<ServerSpec, 'alg' | 'protocol' | 'tickets'> & {
      /** Runs in the fresh work dir before the target starts (files its config will reference). */
      prepare?: (workDir: string) => void;
    },
  fn: (s: RunningServer) => Promise<T>,
): Promise<T> {
  const workDir = mkdtempSync(join(tmpdir(), `tlsgate-bench-${target.name.replace(/\W/g, '_')}-`));
  const { prepare, ...rest } = spec;
  const full: ServerSpec = {
    workers: ctx.workers,
    upstreamPort: ctx.upstreamPort,
    fixtures: ctx.fixtures,
    cpus: ctx.pin.server,
    workDir,
    ...rest,
  };
  let s: RunningServer;
  try {
    prepare?.(workDir);
    s = await target.start(full);
  } catch (err) {
    rmSync(workDir, { recursive: true, force: true });
    throw err;
  }
  try {
    return await fn(s);
  } finally {
    // A server stopped by SIGKILL after its grace time (nginx with 10k contexts, mid-reload) leaves
    // its workers orphaned, each with its GBs: kill what is left of the tree as it was.
    // Only a process whose pid and start time are both unchanged is the one we started.
    const tree = processTree(s.pid).map((p) => ({ pid: p.pid, start: startTime(p.pid) }));
    await s.stop();
    for (const p of tree) {
      if (p.start === undefined || startTime(p.pid) !== p.start) continue;
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        /* exited in between */
      }
    }
    rmSync(workDir, { recursive: true, force: true });
  }
}

export const errorText = (err: unknown): string => (err instanceof Error ? err.message.split('\n')[0]! : String(err));
