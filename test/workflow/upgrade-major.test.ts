/**
 * upgradeMajor decisions on a real Temporal dev server with mocked activities (the real thing on
 * the lab: test/lab/upgrade-major.test.ts): Patroni's sequence in order; the dry run touches
 * nothing; nothing is upgraded before the gate `pg_upgrade` is approved; a rejected gate or a
 * failed pg_upgrade (before the point of no return) brings the old major back and says so; a
 * failure after the new leader started is not rolled back and says so; a worker that dies after
 * pg_upgrade does not make a second one run it again. The `major-fast-cutover` shape: pg_upgrade,
 * the new configuration and the old Barman server's retirement at once, the rollback only after
 * all of them ended; the new leader routed by HAProxy's runtime API while it starts; extensions
 * updated; with a backup CT a fresh backup under the new major's Barman server (and the old one
 * active again after a rollback).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { Context } from '@temporalio/activity';
import { WorkflowFailedError } from '@temporalio/client';
import type { WorkflowHandle } from '@temporalio/client';
import { ApplicationFailure } from '@temporalio/common';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { MajorPlan } from '../../activities/upgrade-major';
import { Failures } from '../../runbooks/failures';
import type { Inventory, InventoryInput } from '../../runbooks/schema';
import { approve, progress } from '../../workflows/messages';
import { errorMessage } from '../../workflows/steps';
import type { UpgradeMajorReport } from '../../workflows/upgrade-major';
import { repoRoot, waitFor } from '../helpers/local-common';
import { createTestWorker, startTestServer, uniqueId } from '../helpers/temporal';

let env: TestWorkflowEnvironment;
before(async () => {
  env = await startTestServer();
});
after(async () => {
  await env?.teardown();
});

const inventory = (cluster: string, opts: { backupCt?: boolean } = {}): InventoryInput => {
  const raw = parse(readFileSync(join(repoRoot, 'runbooks/clusters/lab17.yaml'), 'utf8')) as Record<
    string,
    unknown
  >;
  const names = [
    ...Object.keys(raw.secrets as object),
    ...(opts.backupCt ? ['barmanPassword', 'streamingBarmanPassword'] : []),
  ];
  const secrets = Object.fromEntries(names.map((k) => [k, 'env:PGHA_UP_TEST_SECRET']));
  const nodes = raw.nodes as Record<string, unknown>;
  return {
    ...raw,
    cluster,
    secrets,
    ...(opts.backupCt
      ? { nodes: { ...nodes, backup: [{ vmid: 126, hostname: 'backup17', ip: '10.213.50.46' }] } }
      : {}),
  } as InventoryInput;
};

const failed = (message: string) =>
  ApplicationFailure.create({ type: Failures.MajorUpgradeFailed, nonRetryable: true, message });

/** The activities as a log of calls (`name version member`); each answers as a healthy cluster would. */
function mock(
  opts: {
    failPgUpgrade?: boolean;
    failLeaderStart?: boolean;
    /** Called when the configure step starts (beside pg_upgrade). */
    onConfigure?: () => Promise<void>;
    /** The new configuration takes this long (ms): a rollback must wait for it. */
    configureMs?: number;
  } = {},
) {
  const calls: string[] = [];
  const log = (...parts: (string | undefined)[]) => calls.push(parts.filter(Boolean).join(' '));
  const ver = (inv: Inventory) => inv.versions.postgresql;
  const server = (inv: Inventory) => inv.backup.server ?? inv.cluster;
  const done = (inv: Inventory, hostname: string) =>
    Promise.resolve({ node: hostname, vmid: 0, installed: [], files: [], services: [] });
  const plan: MajorPlan = {
    leader: 'pg17a',
    replicas: ['pg17b'],
    fromNum: 170011,
    build: '18.6.0',
    toNum: 180006,
    alreadyDone: false,
    lagBytes: { pg17b: 0 },
    checkedAt: new Date().toISOString(),
  };
  const activities = {
    majorPrecheck: () => (log('majorPrecheck'), Promise.resolve(plan)),
    majorInstall: (a: { next: Inventory; member: string }) => (
      log('majorInstall', ver(a.next), a.member),
      Promise.resolve({ member: a.member, installed: [] })
    ),
    majorCheck: (a: { leader: string }) => {
      log('majorCheck', a.leader);
      return Promise.resolve({
        leader: a.leader,
        checksums: true,
        initdb: true,
        extensions: ['plpgsql'],
        check: 'ok',
      });
    },
    patroniSetPause: (a: { pause: boolean }) => {
      log('patroniSetPause', String(a.pause));
      return Promise.resolve({ pause: a.pause, patched: true, members: [] });
    },
    majorStop: (a: { phase?: string }) => (
      log('majorStop', a.phase),
      Promise.resolve({ checkpoints: {}, stopped: [] })
    ),
    majorPgUpgrade: (a: { leader: string }) => {
      log('majorPgUpgrade', a.leader);
      if (opts.failPgUpgrade) throw failed('pg_upgrade on pg17a failed (exit 1)');
      return Promise.resolve({ action: 'ran', tookMs: 1 });
    },
    installPostgres: async (a: { inv: Inventory; hostname: string }) => {
      if (ver(a.inv) === '18.6') {
        await opts.onConfigure?.();
        if (opts.configureMs) await new Promise((r) => setTimeout(r, opts.configureMs));
      }
      log('installPostgres', ver(a.inv), a.hostname);
      return { node: a.hostname, vmid: 0, installed: [], files: [], services: [] };
    },
    majorBackupRetire: (a: { inv: Inventory }) => {
      log('majorBackupRetire', server(a.inv));
      return Promise.resolve({ server: server(a.inv), did: [] });
    },
    guardianRoute: (a: { inv: Inventory; leader: string }) => {
      log('guardianRoute', ver(a.inv), a.leader);
      return Promise.resolve({ leader: a.leader, writableAt: 1, routedAt: 2, routedOn: ['haproxy17'] });
    },
    majorUpdateExtensions: (a: { inv: Inventory }) => {
      log('majorUpdateExtensions', ver(a.inv));
      return Promise.resolve({
        updated: [{ database: 'postgres', extension: 'pg_stat_statements', from: '1.11', to: '1.12' }],
      });
    },
    installBackup: (a: { inv: Inventory }) => {
      log('installBackup', ver(a.inv), server(a.inv));
      return done(a.inv, 'backup17');
    },
    prepareBackupCluster: (a: { inv: Inventory; leader: string }) => {
      log('prepareBackupCluster', ver(a.inv), a.leader);
      return Promise.resolve({ roles: [], slot: 'present' });
    },
    waitBarmanReady: (a: { inv: Inventory }) => {
      log('waitBarmanReady', server(a.inv));
      return Promise.resolve({ ok: true, checks: [] });
    },
    physicalBackup: (a: { inv: Inventory; name: string }) => {
      log('physicalBackup', server(a.inv));
      return Promise.resolve({
        server: server(a.inv),
        backupId: '20261130T030000',
        name: a.name,
        endLsn: '0/5000000',
      });
    },
    dcsCleanDelete: () => (
      log('dcsCleanDelete'),
      Promise.resolve({ prefix: '/patroni/postgres/', deleted: 5, left: 0 })
    ),
    startPatroni: (a: { inv: Inventory; hostname: string }) => {
      log('startPatroni', ver(a.inv), a.hostname);
      return Promise.resolve({ node: a.hostname, vmid: 0, installed: [], files: [], services: [] });
    },
    majorWaitMember: (a: { inv: Inventory; member: string; role: string }) => {
      log('majorWaitMember', ver(a.inv), a.member);
      if (opts.failLeaderStart && a.role === 'leader' && ver(a.inv) === '18.6')
        throw failed('timed out waiting for pg17a up on PostgreSQL 18 as leader');
      return Promise.resolve({ member: a.member, role: a.role, state: 'running', serverVersion: 180006 });
    },
    majorAnalyze: () => (log('majorAnalyze'), Promise.resolve({ tookMs: 1 })),
    majorRestoreOld: () => (log('majorRestoreOld'), Promise.resolve({ restored: ['pg_control'] })),
    majorStartOld: (a: { member: string }) => (
      log('majorStartOld', a.member),
      Promise.resolve({ started: [] })
    ),
  };
  return { calls, activities };
}

/**
 * The calls against the expected shape: a string is the next call; an array is the next calls in
 * any order (what runs at once). Returns the calls regrouped as expected, for one deepEqual.
 */
function shaped(calls: string[], expected: (string | string[])[]): (string | string[])[] {
  const out: (string | string[])[] = [];
  let i = 0;
  for (const e of expected) {
    if (typeof e === 'string') out.push(calls[i++] ?? '(none)');
    else {
      out.push(calls.slice(i, i + e.length).sort());
      i += e.length;
    }
  }
  return [...out, ...calls.slice(i)];
}
const sorted = (e: (string | string[])[]) => e.map((x) => (typeof x === 'string' ? x : [...x].sort()));

/** Calls with each run of the same activity sorted: the steps that act on every member at once run in parallel. */
function norm(calls: string[]): string[] {
  const out: string[] = [];
  let run: string[] = [];
  const name = (c: string) => c.split(' ')[0];
  for (const c of calls) {
    if (run.length && name(run[0]!) !== name(c)) {
      out.push(...run.sort());
      run = [];
    }
    run.push(c);
  }
  return [...out, ...run.sort()];
}

type Outcome = { result?: UpgradeMajorReport; error?: { message: string; type?: string } };

async function outcome(handle: WorkflowHandle): Promise<Outcome> {
  try {
    return { result: (await handle.result()) as UpgradeMajorReport };
  } catch (err) {
    assert.ok(err instanceof WorkflowFailedError, String(err));
    let cause: unknown = err.cause;
    while (cause instanceof Error && !(cause instanceof ApplicationFailure) && cause.cause)
      cause = cause.cause;
    return {
      error: {
        message: errorMessage(cause),
        type: cause instanceof ApplicationFailure ? (cause.type ?? undefined) : undefined,
      },
    };
  }
}

async function run(
  m: ReturnType<typeof mock>,
  input: Record<string, unknown> = {},
  during?: (h: WorkflowHandle) => Promise<void>,
): Promise<Outcome> {
  const taskQueue = uniqueId('major');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  return worker.runUntil(async () => {
    const handle = await env.client.workflow.start('upgradeMajor', {
      taskQueue,
      workflowId: uniqueId('upgradeMajor'),
      args: [{ inventory: inventory(uniqueId('c')), to: '18', ...input }],
    });
    await during?.(handle);
    return outcome(handle);
  });
}

const gateWaiting = (h: WorkflowHandle) =>
  waitFor('the pg_upgrade gate waiting', 20_000, async () =>
    (await h.query(progress)).steps.some((s) => s.name === 'pg_upgrade' && s.status === 'waiting'),
  );

/** The calls up to pg_upgrade, in the order Patroni's existing_data.rst gives. */
const BEFORE = [
  'majorPrecheck',
  'majorInstall 18.6 pg17a',
  'majorInstall 18.6 pg17b',
  'majorCheck pg17a',
  'patroniSetPause true',
  'majorStop leader',
];
/** BEFORE with a backup CT: a fresh backup of the old major after the check, before the pause (major-backup-before). */
const beforeWithBackup = (cluster: string) => [
  ...BEFORE.slice(0, 4),
  `physicalBackup ${cluster}`,
  ...BEFORE.slice(4),
];
/** The cutover (major-fast-cutover): pg_upgrade, the replicas' stop and the new configuration at once. */
const CUTOVER = [
  ['majorPgUpgrade pg17a', 'majorStop replicas', 'installPostgres 18.6 pg17a', 'installPostgres 18.6 pg17b'],
];
/** After the point: the leader started while HAProxy's routing waits for it, the replica re-cloned, the rest. */
const AFTER = [
  'dcsCleanDelete',
  ['startPatroni 18.6 pg17a', 'guardianRoute 18.6 pg17a'],
  'majorWaitMember 18.6 pg17a',
  'startPatroni 18.6 pg17b',
  'majorWaitMember 18.6 pg17b',
  'patroniSetPause false',
  'majorAnalyze',
  'majorUpdateExtensions 18.6',
  ['majorWaitMember 18.6 pg17a', 'majorWaitMember 18.6 pg17b'],
];
const ROLLBACK = [
  'majorRestoreOld',
  'installPostgres 17.11 pg17a',
  'installPostgres 17.11 pg17b',
  'majorStartOld pg17a',
  'majorStartOld pg17b',
  'patroniSetPause false',
  'majorWaitMember 17.11 pg17a',
  'majorWaitMember 17.11 pg17b',
];

void test("Patroni's sequence, in order; the report says what to change in the inventory", async () => {
  const m = mock();
  const { result, error } = await run(m);
  assert.equal(error, undefined, error?.message);
  const expected = [...BEFORE, ...CUTOVER, ...AFTER];
  assert.deepEqual(shaped(norm(m.calls), expected), sorted(expected));
  assert.deepEqual(result?.extensions, [
    { database: 'postgres', extension: 'pg_stat_statements', from: '1.11', to: '1.12' },
  ]);
  assert.equal(result?.backup, undefined, 'no backup CT, no backup');
  assert.equal(result?.outcome, 'upgraded');
  assert.equal(result?.from, '17.11');
  assert.equal(result?.to, '18.6.0');
  assert.match(
    result?.inventoryChange ?? '',
    /versions\.postgresql: '18\.6'.*\/var\/lib\/pgsql\/18\/data.*\/usr\/pgsql-18\/bin/,
  );
});

void test('the dry run schedules only the pre-check', async () => {
  const m = mock();
  const { result } = await run(m, { dryRun: true });
  assert.equal(result?.outcome, 'dry-run');
  assert.deepEqual(norm(m.calls), ['majorPrecheck']);
  assert.match(result!.plan.join('\n'), /point of no return.*start pg17a on 18\.6\.0/);
});

void test('bad input is refused before any step, naming the field', async () => {
  const m = mock();
  const { error } = await run(m, { to: 'latest' });
  assert.equal(error?.type, Failures.InvalidInput);
  assert.match(error!.message, /to "latest" is not a PostgreSQL version: use e\.g\. --to 18/);
  assert.deepEqual(norm(m.calls), []);
});

void test('nothing is upgraded before the gate; approved, the run goes on', async () => {
  const m = mock();
  const { result } = await run(m, { approve: true }, async (h) => {
    await gateWaiting(h);
    assert.deepEqual(norm(m.calls), BEFORE, 'stopped, nothing upgraded while the gate waits');
    await h.executeUpdate(approve, { args: [{ gate: 'pg_upgrade', approver: 'alice' }] });
  });
  assert.equal(result?.outcome, 'upgraded');
  assert.equal(m.calls.filter((c) => c.startsWith('majorPgUpgrade')).length, 1);
});

void test('a rejected gate brings the old major back and says which side of the point', async () => {
  const m = mock();
  const { error } = await run(m, { approve: true }, async (h) => {
    await gateWaiting(h);
    await h.executeUpdate(approve, { args: [{ gate: 'pg_upgrade', approver: 'bob', decision: 'reject' }] });
  });
  assert.equal(error?.type, Failures.MajorUpgradeRolledBack);
  assert.match(
    error!.message,
    /^before the point of no return: approval gate pg_upgrade rejected by bob.*PostgreSQL 17\.11 serves again/,
  );
  assert.deepEqual(norm(m.calls), [...BEFORE, ...ROLLBACK]);
});

void test('a failed pg_upgrade is rolled back once the new configuration beside it ended: the new major never starts', async () => {
  const m = mock({ failPgUpgrade: true, configureMs: 400 });
  const { error } = await run(m);
  assert.equal(error?.type, Failures.MajorUpgradeRolledBack);
  assert.match(error!.message, /before the point of no return: pg_upgrade on pg17a failed/);
  // pg_upgrade fails at once; the rollback's old patroni.yml comes only after the new one was written
  const expected = [...BEFORE, ...CUTOVER, ...ROLLBACK];
  assert.deepEqual(shaped(norm(m.calls), expected), sorted(expected));
});

void test('with a backup CT: the old Barman server retired beside pg_upgrade, a fresh backup under the new one', async () => {
  const m = mock();
  const cluster = uniqueId('c');
  const taskQueue = uniqueId('major');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const { result, error } = await worker.runUntil(async () =>
    outcome(
      await env.client.workflow.start('upgradeMajor', {
        taskQueue,
        workflowId: uniqueId('upgradeMajor'),
        args: [{ inventory: inventory(cluster, { backupCt: true }), to: '18' }],
      }),
    ),
  );
  assert.equal(error, undefined, error?.message);
  const expected = [
    ...beforeWithBackup(cluster),
    [...CUTOVER[0]!, `majorBackupRetire ${cluster}`],
    ...AFTER,
    `installBackup 18.6 ${cluster}-pg18`,
    'prepareBackupCluster 18.6 pg17a',
    `waitBarmanReady ${cluster}-pg18`,
    `physicalBackup ${cluster}-pg18`,
  ];
  assert.deepEqual(shaped(norm(m.calls), expected), sorted(expected));
  assert.equal(result?.backup?.server, `${cluster}-pg18`);
  assert.equal(result?.backup?.retired, cluster);
  assert.match(result?.inventoryChange ?? '', new RegExp(`backup\\.server: '${cluster}-pg18'`));
  assert.match(result!.plan.join('\n'), new RegExp(`Barman server ${cluster} retired`));
  assert.match(
    result!.plan.join('\n'),
    new RegExp(`a fresh backup of 17\\.11 under the Barman server ${cluster},`),
  );
  assert.equal(result?.backupBefore?.server, cluster, 'the old major backed up under its own server');
  assert.match(result?.backupBefore?.name ?? '', /^pgha-pre-/);
});

void test('with a backup CT, a failed pg_upgrade puts the old Barman server back', async () => {
  const m = mock({ failPgUpgrade: true });
  const cluster = uniqueId('c');
  const taskQueue = uniqueId('major');
  const worker = await createTestWorker(env, { taskQueue, activities: m.activities });
  const { error } = await worker.runUntil(async () =>
    outcome(
      await env.client.workflow.start('upgradeMajor', {
        taskQueue,
        workflowId: uniqueId('upgradeMajor'),
        args: [{ inventory: inventory(cluster, { backupCt: true }), to: '18' }],
      }),
    ),
  );
  assert.equal(error?.type, Failures.MajorUpgradeRolledBack);
  const expected = [
    ...beforeWithBackup(cluster),
    [...CUTOVER[0]!, `majorBackupRetire ${cluster}`],
    ...ROLLBACK,
    `installBackup 17.11 ${cluster}`,
  ];
  assert.deepEqual(shaped(norm(m.calls), expected), sorted(expected));
});

void test('a failure after the new leader started is not rolled back, and says so', async () => {
  const m = mock({ failLeaderStart: true });
  const { error } = await run(m);
  assert.equal(error?.type, Failures.MajorUpgradePastPoint);
  assert.match(
    error!.message,
    /^past the point of no return \(at start leader\): PostgreSQL 17\.11 cannot come back/,
  );
  assert.ok(!m.calls.includes('majorRestoreOld'), m.calls.join(', '));
  assert.ok(
    !m.calls.some((c) => c.startsWith('startPatroni 18.6 pg17b')),
    'no replica cloned from a leader that is not up',
  );
});

void test('a worker that dies after pg_upgrade: the next one goes on without running it again', async () => {
  let releaseConfigure!: () => void;
  const configureReached = new Promise<void>((resolve) => {
    releaseConfigure = resolve;
  });
  let first = true;
  const m = mock({
    // The first worker dies while the configure beside pg_upgrade runs, pg_upgrade done (the
    // configure activity never ends there).
    onConfigure: async () => {
      if (!first) return;
      await waitFor('pg_upgrade done', 10_000, () =>
        Promise.resolve(m.calls.includes('majorPgUpgrade pg17a')),
      );
      await new Promise((r) => setTimeout(r, 300)); // its completion reported
      releaseConfigure();
      await Context.current().cancelled.catch(() => undefined);
      throw new Error('worker gone');
    },
  });
  const taskQueue = uniqueId('major');
  const handle = await env.client.workflow.start('upgradeMajor', {
    taskQueue,
    workflowId: uniqueId('upgradeMajor'),
    args: [{ inventory: inventory(uniqueId('c')), to: '18' }],
  });
  const w1 = await createTestWorker(env, { taskQueue, activities: m.activities, shutdownGraceTime: '1s' });
  await w1.runUntil(configureReached);
  first = false;
  const w2 = await createTestWorker(env, { taskQueue, activities: m.activities });
  const { result, error } = await w2.runUntil(outcome(handle));
  assert.equal(error, undefined, error?.message);
  assert.equal(result?.outcome, 'upgraded');
  assert.equal(m.calls.filter((c) => c.startsWith('majorPgUpgrade')).length, 1, m.calls.join(', '));
  assert.equal(m.calls.filter((c) => c === 'dcsCleanDelete').length, 1);
});
