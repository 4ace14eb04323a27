/**
 * The readable run, with the smoke runbook on a real dev server (mock activities): the current
 * details the Web UI shows follow the runbook to its end, an activity retried by the server shows
 * as attempts in `pgha watch`'s table (from the history), and a look at a run whose worker is gone
 * returns with the last progress marked stale instead of waiting on the query.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Context } from '@temporalio/activity';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { activityRetries, progressTable } from '../../clients/commands/runs';
import { snapshot, startRunbook } from '../../clients/runbook';
import { progress } from '../../workflows/messages';
import { notDryRun } from '../../workflows/dry-run';
import type { smoke } from '../../workflows/smoke';
import { createTestWorker, startTestServer, uniqueId } from '../helpers/temporal';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

void test('current details, activity attempts from history, no wait on a gone worker', async () => {
  const taskQueue = uniqueId('summary');
  const cluster = uniqueId('sum');
  let writes = 0;
  const worker = await createTestWorker(env, {
    taskQueue,
    activities: {
      smokePreflight: async () => ({ worker: 'w1' }),
      smokeWriteMarker: async () => {
        writes++;
        if (Context.current().info.attempt === 1) throw new Error('disk busy');
        return { path: '/tmp/marker', signed: false };
      },
      smokeVerifyMarker: async () => ({ ok: true }),
      smokeRemoveMarker: async () => undefined,
    },
  });
  const handle = await startRunbook<typeof smoke>(env.client, {
    workflow: 'smoke',
    args: [{ cluster }],
    cluster,
    operation: 'smoke',
    operator: 'erin',
    taskQueue,
  });
  const [result, prog, meta] = await worker.runUntil(async () => {
    const r = notDryRun(await handle.result());
    return [
      r,
      await handle.query(progress),
      await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata'),
    ] as const;
  });
  assert.equal(result.worker, 'w1');
  assert.equal(writes, 2, 'the write was retried once by the server');
  assert.match(
    meta.currentDetails,
    new RegExp(`^\\*\\*smoke\\*\\* on cluster \\*\\*${cluster}\\*\\*: completed`),
  );

  const retries = await activityRetries(handle, prog);
  assert.deepEqual([...retries], [['write', 'smokeWriteMarker ×2']]);
  const table = progressTable(prog, retries);
  assert.match(table, /write .*completed.*1 \(smokeWriteMarker ×2\)/);

  // The worker is gone: the look returns, with the progress it was given, marked stale.
  const snap = await snapshot(env.client, handle, prog);
  assert.equal(snap.status, 'COMPLETED');
  assert.equal(snap.stale, true);
  assert.deepEqual(snap.progress, prog);
});
