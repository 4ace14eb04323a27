/**
 * The backup runbook with mocked activities on a real dev server: the backup is named after the
 * workflow id (a resumed run asks for the same backup, never a second), the activity's result is
 * the runbook's, and a cluster without a backup CT is refused before any activity runs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { startRunbook } from '../../clients/runbook';
import type { InventoryInput } from '../../runbooks/schema';
import { backupName, type backup } from '../../workflows/backup';
import { repoRoot } from '../helpers/local-common';
import { scheduledActivityTypes, createTestWorker, startTestServer, uniqueId } from '../helpers/temporal';
import { notDryRun, type DryRunReport } from '../../workflows/dry-run';

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

function mocks() {
  const names: string[] = [];
  const policies: string[] = [];
  return {
    names,
    policies,
    activities: {
      logicalBackup: async (a: { name: string }) => {
        names.push(`logical:${a.name}`);
        return { kind: 'logical', name: a.name, databases: ['postgres'], files: [], sizeBytes: 1 };
      },
      applyLogicalRetention: async (a: { policy: string }) => {
        policies.push(`logical:${a.policy}`);
        return { policy: a.policy, deleted: [], kept: [] };
      },
      applyRetention: async (a: { policy: string }) => {
        policies.push(a.policy);
        return {
          policy: a.policy,
          configured: true,
          deleted: ['20261128T030000'],
          kept: ['20261129T120000'],
        };
      },
      // The dry run's looks.
      findLeader: async () => 'pg103',
      barmanCheck: async (a: { inv: { cluster: string } }) => ({
        server: a.inv.cluster,
        ok: false,
        checks: [
          { name: 'PostgreSQL', ok: true, detail: 'OK' },
          { name: 'WAL archive', ok: false, detail: 'no WAL file archived yet' },
        ],
      }),
      physicalBackup: async (a: { inv: { cluster: string }; name: string }) => {
        names.push(a.name);
        return { kind: 'physical', backupId: '20261129T120000', name: a.name, server: a.inv.cluster };
      },
    },
  };
}

void test('the backup is named after the workflow id and its description is the result', async () => {
  const m = mocks();
  const taskQueue = uniqueId('backup');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('bk');
  await worker.runUntil(async () => {
    const h = await startRunbook<typeof backup>(env.client, {
      workflow: 'backup',
      args: [{ inventory: labInput(cluster) }],
      cluster,
      operation: 'backup',
      taskQueue,
    });
    const r = notDryRun(await h.result());
    const { startTime, runId } = await h.describe();
    assert.deepEqual(m.names, [backupName(h.workflowId, { startTime, runId })]);
    assert.equal(r.name, backupName(h.workflowId, { startTime, runId }));
    assert.equal((r as { server?: string }).server, cluster);
    // The CLI reuses the id once a run ended: the next run's backup has a name of its own.
    const h2 = await startRunbook<typeof backup>(env.client, {
      workflow: 'backup',
      args: [{ inventory: labInput(cluster) }],
      cluster,
      operation: 'backup',
      taskQueue,
    });
    assert.equal(h2.workflowId, h.workflowId);
    await h2.result();
    assert.equal(m.names.length, 2);
    assert.notEqual(m.names[1], m.names[0], 'a second run asks for a new backup, not the first one again');
  });
  assert.match(m.names[0]!, /^pgha-[a-z0-9-]+$/);
});

void test('a cluster without a backup CT is refused before any activity', async () => {
  const m = mocks();
  const taskQueue = uniqueId('backup');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('bk');
  const input = labInput(cluster);
  const { backup: _omit, ...nodes } = input.nodes as InventoryInput['nodes'] & { backup?: unknown };
  await worker.runUntil(async () => {
    const h = await startRunbook<typeof backup>(env.client, {
      workflow: 'backup',
      args: [{ inventory: { ...input, nodes } }],
      cluster,
      operation: 'backup',
      taskQueue,
    });
    await assert.rejects(h.result(), (e: unknown) => {
      assert.ok(e instanceof WorkflowFailedError);
      assert.match(String(e.cause?.message), /no backup CT/);
      return true;
    });
  });
  assert.deepEqual(m.names, []);
});

void test('backupName: stable, Barman-safe, one per run', () => {
  assert.equal(backupName('backup-labd-1'), 'pgha-backup-labd-1');
  const startTime = new Date('2026-11-29T12:13:52.123Z');
  const run = { startTime, runId: '01a22865-b46a-7c3a-bc55-5265cb2f4116' };
  assert.equal(backupName('backup-labd', run), 'pgha-backup-labd-20261129t121352-2f4116');
  // two runs in the same second (their run ids share the timestamp part): two names
  const other = { startTime, runId: '01a22865-b46a-7c3a-bc55-5265cb9e0a7d' };
  assert.notEqual(backupName('backup-labd', other), backupName('backup-labd', run));
  assert.match(backupName('x'.repeat(200), run), /^pgha-x{60}-20261129t121352-2f4116$/);
  assert.match(backupName('backup-labd-2026-11-29T03:00:00Z', run), /^pgha-[a-z0-9-]{1,90}$/);
  assert.equal(backupName('Backup_Lab/2'), 'pgha-backup-lab-2');
  assert.ok(backupName('x'.repeat(200)).length <= 85);
});

void test('a retention policy is applied after the backup; a bad one is refused before any activity', async () => {
  const m = mocks();
  const taskQueue = uniqueId('backup');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('bk');
  await worker.runUntil(async () => {
    const run = async (retention: string) =>
      (
        await startRunbook<typeof backup>(env.client, {
          workflow: 'backup',
          args: [{ inventory: labInput(cluster), retention }],
          cluster,
          operation: 'backup',
          taskQueue,
        })
      )
        .result()
        .then(notDryRun);
    const r = await run('redundancy  3');
    assert.deepEqual(m.policies, ['REDUNDANCY 3']);
    assert.deepEqual(r.retention?.deleted, ['20261128T030000']);
    await assert.rejects(run('KEEP FOREVER'), (e: unknown) => {
      assert.ok(e instanceof WorkflowFailedError);
      assert.match(
        String(e.cause?.message),
        /retention "KEEP FOREVER" is not a retention policy.*REDUNDANCY <n>/,
      );
      return true;
    });
  });
  assert.equal(m.names.length, 1, 'the refused run took no backup');
  assert.equal(m.policies.length, 1);
});

void test('--kind logical runs the logical dump and its own retention, never Barman', async () => {
  const m = mocks();
  const taskQueue = uniqueId('backup');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const cluster = uniqueId('bk');
  await worker.runUntil(async () => {
    const r = await (
      await startRunbook<typeof backup>(env.client, {
        workflow: 'backup',
        args: [{ inventory: labInput(cluster), kind: 'logical', retention: 'REDUNDANCY 2' }],
        cluster,
        operation: 'backup',
        taskQueue,
      })
    )
      .result()
      .then(notDryRun);
    assert.equal(r.kind, 'logical');
    assert.equal(r.retention?.policy, 'REDUNDANCY 2');
  });
  assert.equal(m.names.length, 1);
  assert.match(m.names[0]!, /^logical:pgha-/);
  assert.deepEqual(m.policies, ['logical:REDUNDANCY 2']);
});

void test('--dry-run: only the leader look and barman check are scheduled; the plan names each step on its node; no backup, no retention', async () => {
  const m = mocks();
  const cluster = uniqueId('bk');
  const dry = async (kind: 'physical' | 'logical') => {
    const taskQueue = uniqueId('backup');
    const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
    return worker.runUntil(async () => {
      const h = await startRunbook<typeof backup>(env.client, {
        workflow: 'backup',
        args: [{ inventory: labInput(cluster), kind, retention: 'REDUNDANCY 2', dryRun: true }],
        cluster,
        operation: 'backup',
        taskQueue,
        suffix: kind,
      });
      return { result: (await h.result()) as DryRunReport, scheduled: await scheduledActivityTypes(h) };
    });
  };
  const p = await dry('physical');
  assert.deepEqual(p.scheduled, ['findLeader', 'barmanCheck']);
  assert.deepEqual(
    p.result.plan.map((l) => l.split(':')[0]),
    [
      'pre-check',
      'marker row',
      'backup on backup1 (CT 105)',
      'verify on backup1 (CT 105)',
      'retention REDUNDANCY 2',
    ],
  );
  assert.match(
    p.result.plan[0]!,
    /leader pg103; barman check FAILS: WAL archive \(no WAL file archived yet\)/,
  );
  assert.match(p.result.plan[1]!, /leader pg103 \(CT 103\)/);
  const l = await dry('logical');
  assert.deepEqual(l.scheduled, ['findLeader']);
  assert.deepEqual(
    l.result.plan.map((x) => x.split(':')[0]),
    ['pre-check', 'dump on backup1 (CT 105)', 'retention REDUNDANCY 2'],
  );
  assert.deepEqual(m.names, []);
  assert.deepEqual(m.policies, []);
});
