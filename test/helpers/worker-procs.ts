/**
 * Real pgha worker processes for tests that kill them (test/helpers/worker-process.ts in a child
 * process, on the test's own server, counting every activity call in `countDir`).
 */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Proc, repoRoot, sleep, waitFor } from './local-common';
import { testCodecKey } from './temporal';

export interface WorkerProcOptions {
  name: string;
  /** The test server's address (TestWorkflowEnvironment.address). */
  address: string;
  taskQueue: string;
  countDir: string;
  stateDir?: string;
  env?: Record<string, string>;
}

export function startWorkerProc(o: WorkerProcOptions): Proc {
  return new Proc(
    o.name,
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'test/helpers/worker-process.ts')],
    {
      cwd: repoRoot,
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: o.address,
        TEMPORAL_NAMESPACE: 'default',
        PGHA_TASK_QUEUE: o.taskQueue,
        PGHA_CODEC_KEY: testCodecKey.toString('base64'),
        PGHA_STATE_DIR: o.stateDir ?? mkdtempSync(join(tmpdir(), 'pgha-state-')),
        PGHA_COUNT_DIR: o.countDir,
        PGHA_METRICS_ADDRESS: 'off',
        ...o.env,
      },
    },
  );
}

/** Resolves once the worker polls (it prints READY); fails at once if it exits. */
export const workerReady = (w: Proc, timeoutMs = 90_000) =>
  waitFor(`${w.name} polling`, timeoutMs, async () => {
    if (!w.running) throw new Error(`${w.name} exited: ${w.output()}`);
    return w.output().includes('READY');
  });

/** How many times the worker processes ran `activity` (one line per call). */
export const activityCalls = (countDir: string, activity: string) =>
  existsSync(join(countDir, activity))
    ? readFileSync(join(countDir, activity), 'utf8').trim().split('\n').length
    : 0;

/** The pids of the worker processes that ran `activity`, one per call, in order. */
export const activityCallers = (countDir: string, activity: string): number[] =>
  existsSync(join(countDir, activity))
    ? readFileSync(join(countDir, activity), 'utf8').trim().split('\n').map(Number)
    : [];

/**
 * SIGKILLs worker `w` at a point `at` confirms while the process is frozen (SIGSTOP), so it cannot
 * have gone past that point between the look and the kill: `at` is polled every `everyMs` while the
 * worker runs; when it says yes, the worker is frozen and `at` asked again — yes: SIGKILL; no:
 * SIGCONT and on. Returns the time of the kill (epoch ms); fails after `timeoutMs`.
 */
export async function killAt(
  w: Proc,
  what: string,
  timeoutMs: number,
  at: () => Promise<boolean>,
  everyMs = 20,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (!w.running) throw new Error(`${w.name} exited before ${what}: ${w.output()}`);
    if (await at().catch(() => false)) {
      w.child.kill('SIGSTOP');
      let confirmed = false;
      try {
        confirmed = await at();
      } finally {
        if (!confirmed) w.child.kill('SIGCONT');
      }
      if (confirmed) {
        const t = Date.now();
        await w.kill();
        return t;
      }
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} to kill ${w.name}`);
}
