/**
 * pgha's metrics (workflows/metrics.ts) on the worker's Prometheus endpoint, beside the SDK's: a
 * mocked deploy, a refused one (bad input, before the runbook starts), a switchover whose hand-off
 * measured its timings and a backup, on a real dev server; then the endpoint is scraped (bounded)
 * and each series is found with its labels and value.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRunbook } from '../../clients/runbook';
import type { backup } from '../../workflows/backup';
import type { deployCluster } from '../../workflows/deploy-cluster';
import { MetricNames } from '../../workflows/metrics';
import type { switchover } from '../../workflows/switchover';
import { deployMocks } from '../helpers/deploy-mocks';
import { labInventoryInput } from '../helpers/lab-inventory';
import { freePort } from '../helpers/local-common';
import {
  createTestWorker,
  eventually,
  installTestRuntime,
  startTestServer,
  uniqueId,
} from '../helpers/temporal';

let env: TestWorkflowEnvironment;
let metricsUrl = '';
before(async () => {
  const port = await freePort();
  installTestRuntime({ prometheus: `127.0.0.1:${port}` });
  metricsUrl = `http://127.0.0.1:${port}/metrics`;
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

/** The value of the first series of `name` whose labels include all of `labels`, or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)\{([^}]*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = Object.fromEntries([...m[2]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(m[3]);
  }
  return undefined;
}

void test('runs by operation and outcome, step durations, the last hand-off and backup, scraped', async () => {
  const cluster = uniqueId('met');
  const taskQueue = uniqueId('metrics');
  const inventory = { ...labInventoryInput(), cluster };
  const plan = {
    action: 'switchover',
    leader: 'pg102',
    candidate: 'pg103',
    timeline: 4,
    chosen: false,
    maxLagBytes: 1048576,
    members: [],
  };
  const endTime = '2026-11-29T03:00:42Z';
  const worker = await createTestWorker(env, {
    taskQueue,
    activities: {
      ...deployMocks().activities,
      switchoverPrecheck: async () => plan,
      switchoverCutover: async () => ({
        outcome: 'switched',
        leader: 'pg103',
        // ms after the POST: writes stop at 300, the candidate is writable at 1400, routed at 1432
        timings: { postedAt: Date.now(), oldLeaderCutMs: 300, candidateWritableMs: 1400, routedMs: 1432 },
        routedOn: ['haproxy1', 'haproxy2'],
      }),
      switchoverVerify: async () => ({ leader: 'pg103', timeline: 5 }),
      physicalBackup: async (a: { name: string }) => ({
        kind: 'physical',
        name: a.name,
        backupId: 'b1',
        endTime,
      }),
    },
  });
  const start = <W extends typeof deployCluster | typeof switchover | typeof backup>(
    workflow: string,
    operation: string,
    args: Parameters<W>,
  ) => startRunbook<W>(env.client, { workflow, args, cluster, operation, operator: 'erin', taskQueue });

  let text = '';
  await worker.runUntil(async () => {
    await (await start<typeof deployCluster>('deployCluster', 'deploy', [{ inventory }])).result();
    // Refused before the runbook started (an inventory without nodes): counted all the same.
    const bad = await start<typeof deployCluster>('deployCluster', 'deploy', [
      { inventory: { ...inventory, nodes: undefined } as never },
    ]);
    await assert.rejects(bad.result());
    await (
      await start<typeof switchover>('switchover', 'switchover', [{ inventory, candidate: 'pg103' }])
    ).result();
    await (await start<typeof backup>('backup', 'backup', [{ inventory }])).result();
    text = await eventually(
      'pgha metrics on the worker endpoint',
      // pgha's series and the SDK's workflow completions (the rest of the page is not needed)
      async () =>
        (await (await fetch(metricsUrl)).text())
          .split('\n')
          .filter((l) => /^(pgha_|temporal_workflow_completed)/.test(l))
          .join('\n'),
      (t) =>
        sample(t, MetricNames.runs, { operation: 'backup', outcome: 'succeeded' }) !== undefined &&
        sample(t, MetricNames.backupEnd, { cluster }) !== undefined,
    );
  });

  const runs = (operation: string, outcome: string) =>
    sample(text, MetricNames.runs, { cluster, operation, outcome });
  assert.equal(runs('deploy', 'succeeded'), 1);
  assert.equal(runs('deploy', 'refused'), 1, 'a refusal before the runbook started is counted');
  assert.equal(runs('switchover', 'succeeded'), 1);
  assert.equal(runs('backup', 'succeeded'), 1);
  assert.equal(runs('deploy', 'failed'), undefined);

  const steps = (step: string) =>
    sample(text, `${MetricNames.stepDuration}_count`, {
      cluster,
      operation: 'deploy',
      step,
      status: 'completed',
    });
  for (const step of ['preflight', 'etcd', 'bootstrap leader', 'haproxy', 'status'])
    assert.equal(steps(step), 1, step);
  assert.equal(
    sample(text, `${MetricNames.stepDuration}_count`, { cluster, operation: 'switchover', step: 'hand-off' }),
    1,
  );

  assert.equal(sample(text, MetricNames.writeGap, { cluster, action: 'switchover' }), 1132);
  assert.equal(sample(text, MetricNames.routingLag, { cluster, action: 'switchover' }), 32);
  assert.equal(
    sample(text, MetricNames.backupEnd, { cluster, kind: 'physical' }),
    Date.parse(endTime) / 1000,
  );
  // The SDK's own metrics are there too.
  assert.match(text, /^temporal_workflow_completed/m);
});
