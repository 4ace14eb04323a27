/**
 * Durability: a real worker process is SIGKILLed in the middle of the four-step smoke runbook (after
 * step 2, while the run waits at its approval gate); a new worker process picks the run up from
 * history and finishes it, and each step's activity ran exactly once (counted in files).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRunbook } from '../../clients/runbook';
import { approve, progress } from '../../workflows/messages';
import { notDryRun } from '../../workflows/dry-run';
import type { smoke } from '../../workflows/smoke';
import type { Proc } from '../helpers/local-common';
import { startWorkerProc, workerReady } from '../helpers/worker-procs';
import { eventually, startTestServer, uniqueId } from '../helpers/temporal';

let env: TestWorkflowEnvironment;
const workers: Proc[] = [];
before(async () => {
  env = await startTestServer();
});
after(async () => {
  for (const w of workers) await w.stop();
  await env?.teardown();
});

function startWorker(name: string, taskQueue: string, dirs: { count: string; state: string }): Proc {
  const w = startWorkerProc({
    name,
    address: env.address,
    taskQueue,
    countDir: dirs.count,
    stateDir: dirs.state,
    env: { PGHA_SMOKE_SECRET: 'kill-test-secret' },
  });
  workers.push(w);
  return w;
}

const ready = (w: Proc) => workerReady(w, 60_000);

void test('SIGKILL of the worker after step 2; a new worker finishes the run; each step ran once', async () => {
  const taskQueue = uniqueId('crash');
  const cluster = uniqueId('crash');
  const dirs = {
    count: mkdtempSync(join(tmpdir(), 'pgha-count-')),
    state: mkdtempSync(join(tmpdir(), 'pgha-state-')),
  };

  const first = startWorker('worker-1', taskQueue, dirs);
  await ready(first);
  const handle = await startRunbook<typeof smoke>(env.client, {
    workflow: 'smoke',
    args: [{ cluster, secretRef: 'env:PGHA_SMOKE_SECRET', approvalTimeout: '10m' }],
    cluster,
    operation: 'smoke',
    taskQueue,
  });
  const p = await eventually(
    'steps 1-2 done, run at its gate',
    () => handle.query(progress),
    (p) => p.steps.find((s) => s.name === 'before-verify')?.status === 'waiting',
  );
  assert.deepEqual(
    p.steps.map((s) => [s.name, s.status]),
    [
      ['preflight', 'completed'],
      ['write', 'completed'],
      ['before-verify', 'waiting'],
      ['verify', 'pending'],
      ['cleanup', 'pending'],
    ],
  );

  await first.kill();
  assert.equal(first.child.signalCode, 'SIGKILL');
  const firstPid = String(first.child.pid);

  const second = startWorker('worker-2', taskQueue, dirs);
  await ready(second);
  await handle.executeUpdate(approve, { args: [{ gate: 'before-verify', approver: 'crash-test' }] });
  const result = notDryRun(await handle.result());
  assert.equal(result.signed, true);
  assert.equal(result.approvedBy, 'crash-test');
  assert.ok(!existsSync(result.marker), 'the cleanup step removed the marker');

  const ran = (activity: string) => readFileSync(join(dirs.count, activity), 'utf8').trim().split('\n');
  const secondPid = String(second.child.pid);
  assert.deepEqual(ran('smokePreflight'), [firstPid]);
  assert.deepEqual(ran('smokeWriteMarker'), [firstPid]);
  assert.deepEqual(ran('smokeVerifyMarker'), [secondPid]);
  assert.deepEqual(ran('smokeRemoveMarker'), [secondPid]);
  assert.deepEqual(readdirSync(dirs.count).sort(), [
    'smokePreflight',
    'smokeRemoveMarker',
    'smokeVerifyMarker',
    'smokeWriteMarker',
  ]);
  const end = await handle.query(progress);
  assert.equal(end.state, 'completed');
  assert.ok(end.steps.every((s) => s.attempt === 1));
});
