/**
 * The smoke runbook's --dry-run on a real dev server (mock activities): only the read-only
 * preflight is scheduled, whatever the input asks for (a gate, a signed marker); the plan names
 * preflight, write, [gate before-verify], verify and cleanup on the worker that answered; no marker
 * is written, checked or removed, and no gate waits.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRunbook } from '../../clients/runbook';
import { describeDryRun, type DryRunReport } from '../../workflows/dry-run';
import type { smoke, SmokeInput } from '../../workflows/smoke';
import { createTestWorker, scheduledActivityTypes, startTestServer, uniqueId } from '../helpers/temporal';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

async function dryRun(input: Omit<SmokeInput, 'cluster' | 'dryRun'>) {
  const taskQueue = uniqueId('smoke');
  const cluster = uniqueId('sm');
  const called: string[] = [];
  const mock =
    <T>(name: string, r: T) =>
    async () => {
      called.push(name);
      return r;
    };
  const worker = await createTestWorker(env, {
    taskQueue,
    activities: {
      smokePreflight: mock('smokePreflight', { cluster, worker: 'w1', pid: 42, node: 'v20.0.0' }),
      smokeWriteMarker: mock('smokeWriteMarker', { path: '/tmp/marker', created: true, signed: true }),
      smokeVerifyMarker: mock('smokeVerifyMarker', { ok: true }),
      smokeRemoveMarker: mock('smokeRemoveMarker', undefined),
    },
  });
  return worker.runUntil(async () => {
    const h = await startRunbook<typeof smoke>(env.client, {
      workflow: 'smoke',
      args: [{ cluster, ...input, dryRun: true }],
      cluster,
      operation: 'smoke',
      taskQueue,
    });
    const result = (await h.result()) as DryRunReport;
    return { cluster, called, result, scheduled: await scheduledActivityTypes(h) };
  });
}

const steps = (r: DryRunReport) => r.plan.map((l) => l.split(':')[0]);

void test('--dry-run with a gate and a secret: only the preflight runs; the plan names every step on the worker, the gate and its timeout', async () => {
  const { cluster, called, result, scheduled } = await dryRun({
    note: 'hello',
    secretRef: 'env:PGHA_SMOKE_NEVER_RESOLVED',
    approvalTimeout: '5m',
  });
  assert.deepEqual(scheduled, ['smokePreflight']);
  assert.deepEqual(called, ['smokePreflight']);
  assert.equal(result.outcome, 'dry-run');
  assert.equal(result.cluster, cluster);
  assert.equal(result.operation, 'smoke');
  assert.deepEqual(steps(result), [
    'preflight',
    'write on worker w1',
    'gate before-verify',
    'verify on worker w1',
    'cleanup on worker w1',
  ]);
  assert.match(result.plan[0]!, /worker w1 \(pid 42, node v20\.0\.0\) answers/);
  assert.match(result.plan[1]!, /signed \(HMAC-SHA256\) with the secret env:PGHA_SMOKE_NEVER_RESOLVED/);
  assert.match(result.plan[2]!, /wait up to 5m for pgha approve/);
  assert.match(result.plan[3]!, /signature checked/);
  assert.match(
    describeDryRun(result),
    /^dry run of smoke on cluster .*\(nothing was touched\)\n {2}1\. preflight: /,
  );
});

void test('--dry-run without a gate or a secret: no gate in the plan, the marker unsigned', async () => {
  const { called, result, scheduled } = await dryRun({});
  assert.deepEqual(scheduled, ['smokePreflight']);
  assert.deepEqual(called, ['smokePreflight']);
  assert.deepEqual(steps(result), [
    'preflight',
    'write on worker w1',
    'verify on worker w1',
    'cleanup on worker w1',
  ]);
  assert.match(result.plan[1]!, /unsigned \(no secret reference\)/);
  assert.doesNotMatch(result.plan[3]!, /signature/);
});
