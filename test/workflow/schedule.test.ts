/**
 * Backup schedules (clients/schedules.ts) on a real dev server with the backup activities mocked:
 * created with overlap SKIP, a catch-up window and pause on failure, the cron / kind / retention in
 * its memo and note; its action holds the inventory with secret references only; a trigger starts
 * a backup run that applies the retention; a second `schedule backup` updates it instead of adding
 * one; a failed backup pauses it; delete removes it. Bad flags are refused before anything exists.
 * Restore drill schedules: the action starts restoreDrill (latest backup), a failed drill pauses it.
 * --dry-run (scheduleDryRun): the plan says create or update, the cron, the policies, the workflow and
 * its arguments (the inventory as its digest); afterwards nothing is listed, nothing changed.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ScheduleNotFoundError, ScheduleOverlapPolicy } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import {
  backupScheduleId,
  backupScheduleSettings,
  describeSchedule,
  drillScheduleId,
  drillScheduleSettings,
  etcdMaintainScheduleSettings,
  listBackupSchedules,
  listSchedules,
  scheduleDryRun,
  upsertBackupSchedule,
  upsertDrillSchedule,
} from '../../clients/schedules';
import { describeDryRun } from '../../workflows/dry-run';
import type { BackupScheduleMemo } from '../../clients/schedules';
import type { InventoryInput } from '../../runbooks/schema';
import type { BackupInput } from '../../workflows/backup';
import { repoRoot } from '../helpers/local-common';
import { createTestWorker, eventually, startTestServer, uniqueId } from '../helpers/temporal';

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

function mocks(fail = false) {
  const calls: { name?: string; policy?: string }[] = [];
  return {
    calls,
    activities: {
      physicalBackup: async (a: { inv: { cluster: string }; name: string }) => {
        calls.push({ name: a.name });
        if (fail) throw new Error('barman backup failed (mock)');
        return { kind: 'physical', backupId: '20261129T030000', name: a.name, server: a.inv.cluster };
      },
      applyRetention: async (a: { policy: string }) => {
        calls.push({ policy: a.policy });
        return {
          policy: a.policy,
          configured: true,
          deleted: ['20261120T030000'],
          kept: ['20261129T030000'],
        };
      },
    },
  };
}

void test('create, describe, trigger (a backup with its retention), update, delete', async () => {
  const m = mocks();
  const taskQueue = uniqueId('sched');
  const cluster = uniqueId('sc');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const o = {
    cluster,
    inventory: labInput(cluster),
    cron: '0 3 * * *',
    retention: 'redundancy 3',
    taskQueue,
    operator: 'alice',
  };
  const { handle, created } = await upsertBackupSchedule(env.client, o);
  assert.equal(created, true);
  assert.equal(handle.scheduleId, backupScheduleId(cluster, 'physical'));
  const d = await handle.describe();
  assert.equal(d.policies.overlap, 'SKIP');
  assert.equal(d.policies.pauseOnFailure, true);
  assert.equal(d.policies.catchupWindow, 3600_000);
  const memo = d.memo as unknown as BackupScheduleMemo;
  assert.equal(memo.retention, 'REDUNDANCY 3');
  assert.equal(memo.cron, '0 3 * * *');
  assert.equal(memo.kind, 'physical');
  assert.match(d.state.note ?? '', /retention REDUNDANCY 3/);
  assert.match(describeSchedule(d), /retention REDUNDANCY 3/);
  // The action's input: the inventory with references only, never a secret's value.
  const args = (d.action as { args?: unknown[] }).args as [BackupInput];
  assert.equal(args[0].retention, 'REDUNDANCY 3');
  for (const [k, v] of Object.entries(args[0].inventory.secrets as Record<string, string>))
    assert.match(v, /^(file|env):/, `secrets.${k} is a reference`);
  assert.deepEqual(
    (await listBackupSchedules(env.client, cluster)).map((s) => s.scheduleId),
    [handle.scheduleId],
  );

  await worker.runUntil(async () => {
    await handle.trigger(ScheduleOverlapPolicy.SKIP);
    const ran = await eventually(
      'the triggered backup run',
      async () => (await handle.describe()).info.recentActions,
      (a) => a.length === 1,
    );
    const wf = ran[0]!.action.workflow;
    assert.match(wf.workflowId, new RegExp(`^backup-${cluster}-`));
    const r = (await env.client.workflow.getHandle(wf.workflowId, wf.firstExecutionRunId).result()) as {
      name: string;
      retention?: { policy: string; deleted: string[] };
    };
    assert.deepEqual(r.retention?.deleted, ['20261120T030000']);
    assert.deepEqual(m.calls, [{ name: r.name }, { policy: 'REDUNDANCY 3' }]);
  });

  // Again with other settings: the same schedule, updated.
  const again = await upsertBackupSchedule(env.client, { ...o, cron: '30 2 * * *', retention: undefined });
  assert.equal(again.created, false);
  const d2 = await handle.describe();
  assert.equal((d2.memo as unknown as BackupScheduleMemo).cron, '0 3 * * *', 'memo is set at creation');
  assert.match(d2.state.note ?? '', /'30 2 \* \* \*', no retention/);
  assert.equal(((d2.action as { args?: unknown[] }).args as [BackupInput])[0].retention, undefined);

  await handle.delete();
  await assert.rejects(handle.describe(), ScheduleNotFoundError);
});

void test('a failed backup pauses the schedule', async () => {
  const m = mocks(true);
  const taskQueue = uniqueId('sched');
  const cluster = uniqueId('sc');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const { handle } = await upsertBackupSchedule(env.client, {
    cluster,
    inventory: labInput(cluster),
    cron: '0 3 * * *',
    taskQueue,
  });
  await worker.runUntil(async () => {
    await handle.trigger(ScheduleOverlapPolicy.SKIP);
    await eventually(
      'the schedule paused after the failed run',
      async () => (await handle.describe()).state.paused,
      (p) => p,
      120_000,
    );
  });
  assert.ok(m.calls.length >= 1);
  await handle.delete();
});

void test('bad flags are refused before anything is created', async () => {
  const cluster = uniqueId('sc');
  const base = { cluster, inventory: labInput(cluster), cron: '0 3 * * *' };
  await assert.rejects(
    upsertBackupSchedule(env.client, { ...base, cron: '0 3 * *' }),
    /--cron .*five cron fields/,
  );
  await assert.rejects(
    upsertBackupSchedule(env.client, { ...base, retention: 'KEEP FOREVER' }),
    /--retention .*'REDUNDANCY <n>'/,
  );
  assert.deepEqual(await listBackupSchedules(env.client, cluster), []);
});

void test('a restore drill schedule starts restoreDrill on the latest backup; a failed drill pauses it', async () => {
  const calls: string[] = [];
  const activities = {
    drillChooseBackup: async (a: { backup: string }) => {
      calls.push(`choose ${a.backup}`);
      return { server: 'x', backupId: '20261129T030000', consistentLsn: '0/1', endLsn: '0/2' };
    },
    drillVerify: async () => ({ ok: false, detail: 'checksum mismatch for file "base/5/16390" (mock)' }),
    drillRestore: async () => ({ rtoSeconds: 1 }),
    drillCheck: async () => ({ problems: [] }),
    drillTeardown: async () => {
      calls.push('teardown');
      return { stopped: true, removed: true };
    },
  };
  const taskQueue = uniqueId('sched');
  const cluster = uniqueId('sc');
  const worker = await createTestWorker(env, { taskQueue, activities });
  const { handle, created } = await upsertDrillSchedule(env.client, {
    cluster,
    inventory: labInput(cluster),
    cron: '0 5 * * *',
    taskQueue,
  });
  assert.ok(created);
  assert.equal(handle.scheduleId, drillScheduleId(cluster));
  const d = await handle.describe();
  assert.equal(d.action.type, 'startWorkflow');
  assert.equal(d.action.workflowType, 'restoreDrill');
  assert.equal((d.memo as { pgha?: string }).pgha, 'drill-schedule');
  assert.equal(d.policies.pauseOnFailure, true);
  assert.equal(d.policies.overlap, ScheduleOverlapPolicy.SKIP);
  assert.match(describeSchedule(d), /restore drill of backup latest/);
  await worker.runUntil(async () => {
    await handle.trigger(ScheduleOverlapPolicy.SKIP);
    await eventually(
      'the schedule paused after the failed drill',
      async () => (await handle.describe()).state.paused,
      (p) => p,
      120_000,
    );
  });
  assert.deepEqual(calls, ['choose latest', 'teardown']);
  await assert.rejects(
    upsertDrillSchedule(env.client, {
      cluster,
      inventory: labInput(cluster),
      cron: '0 5 * * *',
      backup: 'x;y',
    }),
    /--backup .*expected latest/,
  );
  await handle.delete();
});

void test('--dry-run: the plan says what would be created or changed, and nothing is', async () => {
  const cluster = uniqueId('sc');
  const base = {
    cluster,
    inventory: labInput(cluster),
    cron: '0 3 * * *',
    retention: 'redundancy 3',
    taskQueue: 'pgha',
    operator: 'alice',
  };
  const steps = (plan: string[]) => plan.map((l) => l.split(':')[0]);

  // none there yet: each kind would be created
  const b = await scheduleDryRun(env.client, backupScheduleSettings(base));
  assert.equal(b.outcome, 'dry-run');
  assert.equal(b.operation, 'schedule backup');
  assert.deepEqual(steps(b.plan), [
    `create schedule backup-${cluster}-physical (none by that id yet)`,
    'spec',
    'policies',
    'action',
    'note',
    'memo',
  ]);
  assert.equal(b.plan[1], "spec: cron '0 3 * * *', in UTC (no timezone set)");
  assert.match(
    b.plan[2]!,
    /overlap SKIP .*catch-up window 1h .*, pause on failure \(a failed run pauses the schedule\)$/,
  );
  assert.match(
    b.plan[3]!,
    new RegExp(
      `start workflow backup on task queue pgha as backup-${cluster}-<due time> \\(PgCluster ${cluster}, PgOperation backup\\), ` +
        `arguments \\[\\{"kind":"physical","retention":"REDUNDANCY 3","inventory":"sha256:[0-9a-f]{16}"\\}\\]`,
    ),
  );
  assert.match(b.plan[4]!, /retention REDUNDANCY 3/);
  assert.match(b.plan[5]!, /"by":"alice"/);
  const all = b.plan.join('\n');
  assert.doesNotMatch(all, /secrets|superuserPassword|file:|env:/, 'the inventory only as its digest');
  assert.match(describeDryRun(b), /^dry run of schedule backup on cluster .*\n {2}1\. create schedule /);

  const e = await scheduleDryRun(env.client, etcdMaintainScheduleSettings({ ...base, cron: '0 4 * * 0' }));
  assert.match(e.plan[0]!, new RegExp(`^create schedule etcd-maintain-${cluster}-scheduled`));
  assert.match(e.plan[3]!, /start workflow etcdMaintain .*PgOperation etcd-maintain/);
  const d = await scheduleDryRun(env.client, drillScheduleSettings({ ...base, cron: '0 5 * * *' }));
  assert.match(d.plan[0]!, new RegExp(`^create schedule drill-${cluster}-scheduled`));
  assert.match(d.plan[3]!, /start workflow restoreDrill .*"backup":"latest"/);
  assert.deepEqual(await listSchedules(env.client, cluster), [], 'nothing was created');

  // bad flags are refused by a dry run too, before anything is read
  assert.throws(() => backupScheduleSettings({ ...base, cron: '0 3 * *' }), /--cron .*five cron fields/);

  // one there: it would be updated; it is left exactly as it was
  const { handle } = await upsertBackupSchedule(env.client, base);
  const before = await handle.describe();
  const u = await scheduleDryRun(
    env.client,
    backupScheduleSettings({ ...base, cron: '30 2 * * *', retention: undefined }),
  );
  assert.match(
    u.plan[0]!,
    new RegExp(
      `^update schedule backup-${cluster}-physical \\(there, active: pgha physical backup of ${cluster} at '0 3 \\* \\* \\*', retention REDUNDANCY 3\\): ` +
        'its spec, action and policies replaced by these, its note too; its paused state and memo kept',
    ),
  );
  assert.equal(u.plan[1], "spec: cron '30 2 * * *', in UTC (no timezone set)");
  assert.match(u.plan[4]!, /no retention/);
  assert.match(u.plan[5]!, /^memo \(kept: set at creation\)/);
  const after = await handle.describe();
  assert.equal(after.state.note, before.state.note);
  assert.deepEqual(after.spec, before.spec);
  assert.deepEqual(after.action, before.action);
  assert.deepEqual(after.policies, before.policies);
  assert.deepEqual(
    (await listSchedules(env.client, cluster)).map((x) => x.scheduleId),
    [handle.scheduleId],
  );
  await handle.delete();
});
