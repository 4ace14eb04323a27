/**
 * deployCluster's decisions on a real Temporal dev server with mocked activities: the seed's order
 * (etcd, then PostgreSQL + Patroni, then HAProxy, each checked), an existing leader kept, the
 * approval gate before any PostgreSQL starts, a bad inventory refused before anything runs, a final
 * verdict that is not healthy failing the run, the PgOutcome each run ends with, and the guardian
 * started when asked (once: a second deploy keeps the running one).
 * (The real thing, on the lab: test/lab/deploy.test.ts.)
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { WorkflowFailedError, WorkflowNotFoundError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRunbook } from '../../clients/runbook';
import type { InventoryInput } from '../../runbooks/schema';
import type { deployCluster } from '../../workflows/deploy-cluster';
import { Failures } from '../../runbooks/failures';
import type { WatchArgs, WatchResult } from '../../activities/guardian';
import { guardianWorkflowId } from '../../workflows/guardian';
import { PgOperation, PgOutcome, approve, progress } from '../../workflows/messages';
import { repoRoot, sleep } from '../helpers/local-common';
import { deployMocks as mocks } from '../helpers/deploy-mocks';
import {
  createTestWorker,
  eventually,
  scheduledActivityTypes,
  startTestServer,
  uniqueId,
} from '../helpers/temporal';
import type { DryRunReport } from '../../workflows/dry-run';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

const labInput = (cluster: string): InventoryInput => {
  const raw = parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab.yaml'), 'utf8')) as InventoryInput;
  return { ...raw, cluster };
};

const phase = (calls: string[], name: string) => calls.filter((c) => c.startsWith(`${name} `) || c === name);
const firstIndex = (calls: string[], name: string) => calls.findIndex((c) => c.startsWith(name));
const lastIndex = (calls: string[], name: string) => calls.map((c) => c.startsWith(name)).lastIndexOf(true);

void test('the seed order: etcd (checked), then PostgreSQL + Patroni (leader first, replicas after), then HAProxy', async () => {
  const m = mocks();
  const taskQueue = uniqueId('deploy');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('dep');
  const result = await worker.runUntil(async () => {
    const h = await startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory: labInput(cluster) }],
      cluster,
      operation: 'deploy',
      taskQueue,
    });
    return h.result();
  });
  assert.equal((result as { verdict: { status: string } }).verdict.status, 'healthy');
  const c = m.calls;
  assert.equal(phase(c, 'preflightNode').length, 8);
  assert.deepEqual(phase(c, 'installEtcd').sort(), [
    'installEtcd etcd1',
    'installEtcd etcd2',
    'installEtcd etcd3',
  ]);
  assert.ok(
    lastIndex(c, 'preflightNode') < firstIndex(c, 'installEtcd'),
    'preflight before anything is installed',
  );
  assert.ok(lastIndex(c, 'installEtcd') < firstIndex(c, 'etcdWaitHealthy'));
  assert.ok(
    firstIndex(c, 'etcdWaitHealthy') < firstIndex(c, 'installPostgres'),
    'etcd healthy before PostgreSQL',
  );
  assert.ok(lastIndex(c, 'installPostgres') < firstIndex(c, 'startPatroni'));
  // The first node bootstraps alone, then the replicas start.
  const starts = phase(c, 'startPatroni');
  assert.equal(starts[0], 'startPatroni pg102');
  assert.ok(c.indexOf('waitPrimary pg102') < c.indexOf('startPatroni pg103'));
  assert.deepEqual(starts.slice(1).sort(), ['startPatroni pg103', 'startPatroni pg104']);
  assert.ok(lastIndex(c, 'startPatroni') < firstIndex(c, 'waitReplication'));
  assert.ok(
    firstIndex(c, 'waitReplication') < firstIndex(c, 'installHaproxy'),
    'replication checked before HAProxy',
  );
  assert.ok(lastIndex(c, 'installHaproxy') < firstIndex(c, 'checkThroughHaproxy'));
  // The backup CT (lab.yaml has backup1): Barman connects through HAProxy, so after it; the roles
  // and slot on the leader before Barman is installed, barman check last.
  assert.deepEqual(
    c.filter((x) => /^(prepareBackupCluster|installBackup|waitBarmanReady|ensureBackupSynchronous)/.test(x)),
    ['prepareBackupCluster pg102', 'installBackup', 'waitBarmanReady', 'ensureBackupSynchronous async'],
  );
  assert.ok(firstIndex(c, 'checkThroughHaproxy') < firstIndex(c, 'prepareBackupCluster'));
  assert.equal(c[c.length - 1], 'clusterStatus');
});

void test('--synchronous (synchronousBackup): the backup synchronous step asks for it, after barman check', async () => {
  const m = mocks();
  const taskQueue = uniqueId('deploy');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('dep');
  await worker.runUntil(async () => {
    const h = await startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory: labInput(cluster), synchronousBackup: true }],
      cluster,
      operation: 'deploy',
      taskQueue,
    });
    return h.result();
  });
  const c = m.calls;
  assert.deepEqual(phase(c, 'ensureBackupSynchronous'), ['ensureBackupSynchronous sync']);
  assert.ok(lastIndex(c, 'waitBarmanReady') < firstIndex(c, 'ensureBackupSynchronous'));
});

void test('a leader that already exists is kept (a resumed or repeated deploy)', async () => {
  const m = mocks({ existingLeader: 'pg103' });
  const taskQueue = uniqueId('deploy');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('dep');
  await worker.runUntil(async () => {
    const h = await startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory: labInput(cluster) }],
      cluster,
      operation: 'deploy',
      taskQueue,
    });
    await h.result();
  });
  const starts = phase(m.calls, 'startPatroni');
  assert.equal(starts[0], 'startPatroni pg103');
  assert.deepEqual(starts.slice(1).sort(), ['startPatroni pg102', 'startPatroni pg104']);
  assert.ok(m.calls.includes('waitPrimary pg103'));
});

void test('the before-bootstrap gate holds every PostgreSQL start until approved', async () => {
  const m = mocks();
  const taskQueue = uniqueId('deploy');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('dep');
  await worker.runUntil(async () => {
    const h = await startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory: labInput(cluster), approvalTimeout: '10m' }],
      cluster,
      operation: 'deploy',
      taskQueue,
    });
    await eventually(
      'the gate waiting',
      () => h.query(progress),
      (p) => p.steps.some((s) => s.name === 'before-bootstrap' && s.status === 'waiting'),
    );
    assert.equal(phase(m.calls, 'installPostgres').length, 3, 'PostgreSQL is installed before the gate');
    assert.equal(phase(m.calls, 'startPatroni').length, 0, 'nothing started before approval');
    await h.executeUpdate(approve, { args: [{ gate: 'before-bootstrap', approver: 'test' }] });
    await h.result();
  });
  assert.equal(phase(m.calls, 'startPatroni').length, 3);
});

void test('a bad inventory fails the run before any activity, naming the field', async () => {
  const m = mocks();
  const taskQueue = uniqueId('deploy');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('dep');
  const bad = labInput(cluster);
  bad.nodes.etcd = bad.nodes.etcd.slice(0, 2); // an even number of etcd members
  await worker.runUntil(async () => {
    const h = await startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory: bad }],
      cluster,
      operation: 'deploy',
      taskQueue,
    });
    const err = await h.result().then(
      () => undefined,
      (e: unknown) => e,
    );
    assert.ok(err instanceof WorkflowFailedError);
    const cause = err.cause as Error & { type?: string };
    assert.equal(cause.type, Failures.InvalidInventory);
    assert.match(cause.message, /nodes\.etcd/);
  });
  assert.deepEqual(m.calls, []);
});

void test('a deploy whose final verdict is not healthy FAILS with the status in the failure (and recorded as failed)', async () => {
  const reasons = [
    "pg104 is not a member in Patroni's /cluster (Patroni stopped, or not yet joined)",
    'etcd member etcd3 (http://10.213.50.53:2379) is unhealthy: connect ECONNREFUSED',
  ];
  for (const status of ['degraded', 'down'] as const) {
    const m = mocks({ verdict: { status, reasons } });
    const taskQueue = uniqueId('deploy');
    const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
    const cluster = uniqueId('dep');
    const { err, outcome } = await worker.runUntil(async () => {
      const h = await startRunbook<typeof deployCluster>(env.client, {
        workflow: 'deployCluster',
        args: [{ inventory: labInput(cluster) }],
        cluster,
        operation: 'deploy',
        taskQueue,
      });
      const e = await h.result().then(
        () => undefined,
        (x: unknown) => x,
      );
      return { err: e, outcome: (await h.describe()).typedSearchAttributes.get(PgOutcome) };
    });
    assert.ok(err instanceof WorkflowFailedError, `${status}: the run failed (got ${String(err)})`);
    const cause = err.cause as Error & { type?: string };
    assert.equal(cause.type, Failures.DeployUnhealthy);
    assert.match(cause.message, new RegExp(`is ${status}`));
    for (const r of reasons)
      assert.ok(cause.message.includes(r), `${status}: the reason "${r}" is in the failure`);
    assert.doesNotMatch(cause.message, /password|secret/i);
    assert.equal(outcome, 'failed', 'PgOutcome says failed (a deploy that ran is not a refusal)');
    assert.equal(m.calls.at(-1), 'clusterStatus', 'every step ran; the verdict failed it');
  }
});

void test('a healthy deploy is recorded as succeeded; a bad inventory as refused', async () => {
  const m = mocks();
  const taskQueue = uniqueId('deploy');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const ok = uniqueId('dep');
  const bad = uniqueId('dep');
  const badInput = labInput(bad);
  badInput.nodes.etcd = badInput.nodes.etcd.slice(0, 2);
  const outcomes = await worker.runUntil(async () => {
    const run = async (cluster: string, inventory: InventoryInput) => {
      const h = await startRunbook<typeof deployCluster>(env.client, {
        workflow: 'deployCluster',
        args: [{ inventory }],
        cluster,
        operation: 'deploy',
        taskQueue,
      });
      await h.result().catch(() => undefined);
      return (await h.describe()).typedSearchAttributes.get(PgOutcome);
    };
    return [await run(ok, labInput(ok)), await run(bad, badInput)];
  });
  assert.deepEqual(outcomes, ['succeeded', 'refused']);
});

void test("guardian: true starts the cluster's guardian as the last step before status; a second deploy keeps the running one; without it, none", async () => {
  const m = mocks();
  const watches: string[] = [];
  const activities = {
    ...m.activities,
    // The guardian's watch, quiet: it knows the leader and waits (the real one: test/lab/guardian.test.ts).
    guardianWatch: async (a: WatchArgs): Promise<WatchResult> => {
      watches.push(a.inv.cluster);
      await sleep(1000);
      return { kind: 'quiet', old: a.known ?? null, leader: 'pg102', observedAt: Date.now() };
    },
  };
  const taskQueue = uniqueId('deploy');
  const worker = await createTestWorker(env, { taskQueue, activities });
  const cluster = uniqueId('dep');
  const other = uniqueId('dep');
  const deploy = (inventory: InventoryInput, guard?: boolean) =>
    startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory, ...(guard === undefined ? {} : { guard }) }],
      cluster: inventory.cluster,
      operation: 'deploy',
      taskQueue,
    }).then(async (h) => {
      await h.result();
      return (await h.query(progress)).steps.map((s) => s.name);
    });
  await worker.runUntil(async () => {
    const steps = await deploy({ ...labInput(cluster), guardian: true });
    assert.deepEqual(steps.slice(-2), ['guardian', 'status']);
    const g = env.client.workflow.getHandle(guardianWorkflowId(cluster));
    const first = await g.describe();
    assert.equal(first.status.name, 'RUNNING', 'the guardian runs after the deploy ended');
    assert.equal(first.typedSearchAttributes.get(PgOperation), 'guardian');
    await eventually(
      'the guardian watching',
      async () => watches.filter((c) => c === cluster).length,
      (n) => n > 0,
    );

    // Again, with --guard: the running guardian is kept (same run), nothing fails.
    const again = await deploy(labInput(cluster), true);
    assert.ok(again.includes('guardian'));
    const second = await g.describe();
    assert.equal(second.status.name, 'RUNNING');
    assert.equal(second.runId, first.runId, 'the running guardian was left as it is');

    // Without the key or --guard: no guardian step, no guardian.
    const plain = await deploy(labInput(other));
    assert.ok(!plain.includes('guardian'));
    await assert.rejects(
      env.client.workflow.getHandle(guardianWorkflowId(other)).describe(),
      WorkflowNotFoundError,
    );

    await g.cancel();
    assert.equal((await g.result()).phase, 'stopped');
  });
});

void test('--dry-run: only the read-only pre-flight and leader look are scheduled; the plan names each step on its nodes, in the seed order', async () => {
  const m = mocks();
  const taskQueue = uniqueId('deploy');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('dep');
  const { result, scheduled } = await worker.runUntil(async () => {
    const h = await startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory: labInput(cluster), approvalTimeout: '1h', dryRun: true }],
      cluster,
      operation: 'deploy',
      taskQueue,
    });
    return { result: (await h.result()) as DryRunReport, scheduled: await scheduledActivityTypes(h) };
  });
  // 3 etcd + 3 PostgreSQL + 2 HAProxy pre-flights, one look for a leader: nothing installed or started.
  assert.deepEqual(scheduled, [...Array<string>(8).fill('preflightNode'), 'findLeader']);
  assert.equal(result.outcome, 'dry-run');
  assert.deepEqual(
    result.plan.map((l) => l.split(':')[0]),
    [
      'preflight passed',
      'etcd',
      'etcd healthy',
      'postgres install',
      'gate before-bootstrap',
      'bootstrap leader',
      'replicas join',
      'replication',
      'haproxy',
      'end-to-end',
      'backup roles',
      'backup install',
      'backup check',
      'backup synchronous',
      'status',
    ],
  );
  assert.match(result.plan[1]!, /etcd1, etcd2, etcd3 \(CT 109, 110, 111\)$/);
  assert.match(result.plan[5]!, /Patroni started on pg102 \(CT 102\), which bootstraps/);
  assert.match(result.plan[6]!, /pg103, pg104 \(CT 103, 104\); each clones from pg102/);
  assert.match(result.plan[11]!, /Barman on backup1 \(CT 105\)/);
  // A leader found (a deployed cluster): kept, and the others join it.
  const again = mocks({ existingLeader: 'pg103' });
  const w2 = await createTestWorker(env, { taskQueue: `${taskQueue}-2`, activities: again.activities });
  const r2 = await w2.runUntil(async () => {
    const h = await startRunbook<typeof deployCluster>(env.client, {
      workflow: 'deployCluster',
      args: [{ inventory: labInput(cluster), dryRun: true }],
      cluster,
      operation: 'deploy',
      taskQueue: `${taskQueue}-2`,
    });
    return (await h.result()) as DryRunReport;
  });
  assert.match(r2.plan[4]!, /^bootstrap leader: pg103 \(CT 103\) leads already: kept/);
  assert.match(r2.plan[5]!, /pg102, pg104 \(CT 102, 104\); each clones from pg103/);
  assert.ok(
    again.calls.every((c) => c.startsWith('preflightNode') || c === 'findLeader'),
    again.calls.join(', '),
  );
});
