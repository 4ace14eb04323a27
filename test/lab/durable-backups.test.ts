/**
 * Backups end to end on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml; it must
 * have a backup CT), run by real pgha worker processes and checked from outside pgha — Barman read
 * directly in the backup CT (lxc-attach), SQL directly on the members:
 *  - a physical backup: `barman show-backup` says DONE, `barman verify-backup` and `check-backup`
 *    pass when run here, and the backup's own data files hold the marker row and a row written just
 *    before it (the backup's copy of their relation files, in the backup directory);
 *  - a worker SIGKILLed mid-backup (while Barman shows it STARTED): a spare worker finishes the run,
 *    and Barman lists exactly one backup of that name, DONE, and no half backup;
 *  - WAL streaming across a switchover: `barman check` passes again and the permanent slot is
 *    active on the new leader (receive-wal follows through HAProxy's write port), a WAL switch is
 *    archived.
 * The cluster is deployed first (deployCluster: idempotent, fast on a deployed cluster). The file's
 * name sorts after deploy.test.ts (node runs the files sorted): in CI the cluster deploy.test.ts
 * leaves is used as it is, instead of a deploy here that deploy.test.ts's reset then throws away.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { ScheduleOverlapPolicy } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { upsertBackupSchedule } from '../../clients/schedules';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import { barmanServer } from '../../activities/render';
import { barmanDirect, listBackupsDirect } from '../helpers/lab-backup';
import type { Inventory } from '../../runbooks/schema';
import type { PhysicalBackupResult } from '../../activities/backup';
import type { BackupResult, backup } from '../../workflows/backup';
import type { deployCluster } from '../../workflows/deploy-cluster';
import type { HandoffReport, switchover } from '../../workflows/switchover';
import { inCt, sqlAs, waitHealthyDirect } from '../helpers/lab-direct';
import { labNotUpReason } from '../../lab/testing';
import { repoRoot, waitFor } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { activityCalls, startWorkerProc, workerReady } from '../helpers/worker-procs';
import { eventually, startTestServer, uniqueId } from '../helpers/temporal';
import { notDryRun } from '../../workflows/dry-run';

const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
const skip = labNotUpReason();

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
let worker: Proc;
const taskQueue = uniqueId('bk-lab');
const countDir = mkdtempSync(join(tmpdir(), 'pgha-count-'));
const procs: Proc[] = [];

function startWorker(name: string): Proc {
  const w = startWorkerProc({ name, address: env.address, taskQueue, countDir });
  procs.push(w);
  return w;
}
const backupVmid = () => inv.nodes.backup[0]!.vmid;
const ip = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.ip;

/** `barman ARGS` in the backup CT as Barman's user, read directly (throws on a non-zero exit). */
const barman = (args: string[], timeoutMs = 120_000) => barmanDirect(inv, args, timeoutMs);
const listBackups = () => listBackupsDirect(inv);

const sqlOn = <T>(host: string, q: string, params: unknown[] = [], port = inv.ports.postgresql) =>
  sqlAs(inv, host, port, async (c) => (await c.query(q, params)).rows[0] as T);

async function startBackup(
  args: Omit<Parameters<typeof backup>[0], 'inventory'> = {},
): Promise<BackupResult> {
  const h = await startRunbook<typeof backup>(env.client, {
    workflow: 'backup',
    args: [{ inventory: input, ...args }],
    cluster: inv.cluster,
    operation: 'backup',
    taskQueue,
  });
  return notDryRun(await h.result());
}
async function runBackup(): Promise<PhysicalBackupResult> {
  const r = await startBackup();
  assert.equal(r.kind, 'physical');
  return r as PhysicalBackupResult;
}

/** Whether the backup's copy of `relation`'s main fork (path from the leader) holds `text`. */
function backupFileHolds(backupId: string, relpath: string, text: string): boolean {
  const file = `${inv.backup.storage.path}/${barmanServer(inv)}/base/${backupId}/data/${relpath}`;
  const n = inCt(backupVmid(), ['sh', '-c', 'grep -a -c -F -- "$1" "$2" || true', 'sh', text, file]).trim();
  return Number(n) > 0;
}

const lsn = (s: string) => {
  const [hi, lo] = s.split('/');
  return BigInt(`0x${hi}`) * 2n ** 32n + BigInt(`0x${lo}`);
};

before(async () => {
  if (skip) return;
  ({ input, inventory: inv } = await inventoryInput(LAB));
  assert.ok(inv.nodes.backup.length > 0, `${LAB} has no backup CT (nodes.backup)`);
  env = await startTestServer();
  worker = startWorker('worker-1');
  await workerReady(worker, 300_000); // bundling the workflows takes minutes on a loaded machine
  const d = await startRunbook<typeof deployCluster>(env.client, {
    workflow: 'deployCluster',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'deploy',
    taskQueue,
  });
  await d.result();
  const l = await waitHealthyDirect(inv);
  await sqlOn(
    ip(l),
    'create table if not exists pgha_bk_test (id bigserial primary key, note text not null)',
  );
});

after(async () => {
  for (const w of procs) await w.stop();
  await env?.teardown();
});

void test(
  'a physical backup: DONE and verified in the backup CT, holding the marker and the rows written before it',
  { skip, timeout: 600_000 },
  async () => {
    const leader = await waitHealthyDirect(inv);
    const note = `before-backup-${randomUUID()}`;
    await sqlOn(
      inv.nodes.haproxy[0]!.ip,
      'insert into pgha_bk_test (note) values ($1)',
      [note],
      inv.ports.haproxyWrite,
    );
    const r = await runBackup();
    const server = barmanServer(inv);

    const shown = (
      JSON.parse(barman(['-f', 'json', 'show-backup', server, r.backupId])) as Record<
        string,
        {
          status: string;
          backup_name?: string;
          base_backup_information: { begin_lsn: string; end_lsn: string; timeline: number };
        }
      >
    )[server]!;
    assert.equal(shown.status, 'DONE');
    assert.equal(shown.backup_name, r.name);
    assert.equal(shown.base_backup_information.begin_lsn, r.beginLsn);
    assert.equal(shown.base_backup_information.end_lsn, r.endLsn);
    barman(['verify-backup', server, r.backupId], 600_000); // throws unless pg_verifybackup passes
    barman(['check-backup', server, r.backupId]); // throws unless every WAL file it needs is archived
    assert.equal(r.verified, true);
    assert.equal(r.walComplete, true);

    // The marker: written on the leader before the backup began, recorded in the result.
    assert.equal(r.marker.id, r.name);
    assert.equal(r.marker.leader, leader);
    assert.ok(lsn(r.marker.lsn) <= lsn(r.beginLsn), `marker ${r.marker.lsn} before begin ${r.beginLsn}`);
    const m = await sqlOn<{ lsn: string }>(
      ip(leader),
      'select lsn::text from pgha_backup_marker where id = $1',
      [r.marker.id],
    );
    assert.equal(m.lsn, r.marker.lsn);
    assert.ok(r.sizeBytes > 0 && r.durationSeconds >= 0 && r.timeline >= 1 && r.postgresVersion >= 180000);

    // In the backup itself: the relation files' copies hold both rows (the backup's start checkpoint
    // flushed them before the copy).
    const paths = await sqlOn<{ marker: string; test: string }>(
      ip(leader),
      `select pg_relation_filepath('pgha_backup_marker') as marker, pg_relation_filepath('pgha_bk_test') as test`,
    );
    assert.ok(backupFileHolds(r.backupId, paths.marker, r.marker.id), 'the marker row is in the backup');
    assert.ok(backupFileHolds(r.backupId, paths.test, note), 'the row written before the backup is in it');
    assert.ok(
      !backupFileHolds(r.backupId, paths.test, `never-written-${randomUUID()}`),
      'the check can fail',
    );
  },
);

void test(
  'a worker SIGKILLed mid-backup: a spare worker finishes, exactly one completed backup, no half one left',
  { skip, timeout: 900_000 },
  async () => {
    const leader = await waitHealthyDirect(inv);
    // Enough data that the copy takes seconds (rows of ~1 KiB stay inline, uncompressed).
    await sqlOn(
      ip(leader),
      `create table if not exists pgha_bk_bulk as
         select g, repeat(md5(g::text), 28) as pad from generate_series(1, 150000) g`,
    );
    const calls = activityCalls(countDir, 'physicalBackup');
    const spare = startWorker('worker-2');
    await workerReady(spare, 300_000);
    const started = listBackups().map((b) => b.backup_id);
    const run = runBackup();
    run.catch(() => undefined);
    try {
      await killMidBackup(run, spare, calls, started);
    } finally {
      // Whatever happened, the run ends before the next test (it holds the cluster lock).
      await Promise.race([run.catch(() => undefined), new Promise((r) => setTimeout(r, 600_000))]);
    }
  },
);

async function killMidBackup(
  run: Promise<PhysicalBackupResult>,
  spare: Proc,
  calls: number,
  started: string[],
): Promise<void> {
  const server = barmanServer(inv);
  const meta = `${inv.backup.storage.path}/${server}/meta`; // Barman 3.x keeps <id>-backup.info there
  await waitFor('Barman copying the backup (STARTED)', 180_000, async () => {
    const out = inCt(backupVmid(), [
      'sh',
      '-c',
      'grep -l -x "status=STARTED" "$1"/*-backup.info 2>/dev/null || true',
      'sh',
      meta,
    ]);
    return out.trim() !== '';
  });
  await worker.kill();
  const r = await run;
  worker = spare;
  assert.ok(
    activityCalls(countDir, 'physicalBackup') - calls >= 2,
    'the backup activity ran again after the kill',
  );

  const now = listBackups().filter((b) => !started.includes(b.backup_id));
  assert.deepEqual(
    now.map((b) => [b.backup_name, b.status]),
    [[r.name, 'DONE']],
    `exactly one new backup, DONE: ${JSON.stringify(now)}`,
  );
  assert.deepEqual(
    listBackups().filter((b) => b.status !== 'DONE' && !started.includes(b.backup_id)),
    [],
    'no half backup (STARTED, FAILED, EMPTY) left',
  );
  assert.equal(r.verified, true);
  assert.doesNotMatch(barman(['list-processes', server]), /\bbackup\b/, 'no barman backup still running');
}

void test(
  'WAL streaming continues across a switchover: barman check OK, the permanent slot active on the new leader',
  { skip, timeout: 600_000 },
  async () => {
    const from = await waitHealthyDirect(inv);
    const server = barmanServer(inv);
    const h = await startRunbook<typeof switchover>(env.client, {
      workflow: 'switchover',
      args: [{ inventory: input }],
      cluster: inv.cluster,
      operation: 'switchover',
      taskQueue,
    });
    const sw = (await h.result()) as HandoffReport;
    assert.equal(sw.from, from);
    const to = await waitHealthyDirect(inv);
    assert.equal(to, sw.to);
    assert.notEqual(to, from);
    // receive-wal reconnects (barman cron, every minute) through HAProxy's write port to the new leader.
    await waitFor(`the slot ${inv.backup.slot} active on ${to}`, 240_000, async () => {
      const s = await sqlOn<{ active: boolean } | undefined>(
        ip(to),
        'select active from pg_replication_slots where slot_name = $1',
        [inv.backup.slot],
      );
      return s?.active === true;
    });
    await waitFor('barman check passing', 240_000, async () => {
      try {
        barman(['check', server]);
        return true;
      } catch {
        return false;
      }
    });
    barman(['switch-wal', '--force', '--archive', '--archive-timeout', '60', server], 120_000);
    const s = await sqlOn<{ n: number }>(
      ip(from),
      'select count(*)::int as n from pg_replication_slots where slot_name = $1 and active',
      [inv.backup.slot],
    );
    assert.equal(s.n, 0, `the old leader ${from} (now a replica) has no active ${inv.backup.slot} slot`);
  },
);

void test(
  'a logical backup: one pg_dump per database and the globals in the backup CT, checksums verified there, restorable listing',
  { skip, timeout: 600_000 },
  async () => {
    const leader = await waitHealthyDirect(inv);
    const note = `before-dump-${randomUUID()}`;
    await sqlOn(ip(leader), 'insert into pgha_bk_test (note) values ($1)', [note]);
    // On every replica before the dump (it reads a replica).
    for (const n of inv.nodes.postgres.filter((x) => x.hostname !== leader))
      await waitFor(`the row on ${n.hostname}`, 60_000, async () => {
        const r = await sqlOn<{ n: number }>(
          n.ip,
          'select count(*)::int as n from pgha_bk_test where note = $1',
          [note],
        );
        return r.n === 1;
      });
    const r = await startBackup({ kind: 'logical' });
    assert.equal(r.kind, 'logical');
    if (r.kind !== 'logical') return;
    const dbs = await sqlOn<{ names: string[] }>(
      ip(leader),
      'select array_agg(datname::text order by oid) as names from pg_database where datallowconn and not datistemplate',
    );
    assert.deepEqual([...r.databases].sort(), [...dbs.names].sort(), 'one dump per database');
    assert.ok(r.files.some((f) => f.file === 'globals.sql'));
    // Directly in the backup CT: the checksums hold, the archive lists the table, the globals the roles.
    inCt(backupVmid(), ['sh', '-c', 'cd "$1" && sha256sum --quiet -c SHA256SUMS', 'sh', r.path]);
    const pgDb = r.files.find((f) => f.database === 'postgres')!;
    for (const f of r.files) {
      const sum: string | undefined = inCt(backupVmid(), ['sha256sum', `${r.path}/${f.file}`]).split(' ')[0];
      assert.equal(sum, f.sha256, `${f.file}: the recorded checksum is the file's`);
    }
    const toc = inCt(backupVmid(), [`${inv.postgresql.binDir}/pg_restore`, '-l', `${r.path}/${pgDb.file}`]);
    assert.match(toc, /TABLE DATA public pgha_bk_test /);
    const data = inCt(backupVmid(), [
      `${inv.postgresql.binDir}/pg_restore`,
      '-a',
      '-t',
      'pgha_bk_test',
      '-f',
      '-',
      `${r.path}/${pgDb.file}`,
    ]);
    assert.ok(data.includes(note), 'the row written before the dump is in it');
    const globals = inCt(backupVmid(), ['cat', `${r.path}/globals.sql`]);
    assert.match(globals, new RegExp(`CREATE ROLE ${inv.backup.streamingUser};`));
    assert.doesNotMatch(globals, /SCRAM-SHA-256\$/, 'no password hashes in the globals');
  },
);

void test(
  'a schedule triggered on the lab takes a backup; its retention (REDUNDANCY 1) deletes the older one',
  { skip, timeout: 900_000 },
  async () => {
    await waitHealthyDirect(inv);
    const before = listBackups().filter((b) => b.status === 'DONE');
    assert.ok(before.length >= 1, 'an older backup exists (the tests above took some)');
    const { handle } = await upsertBackupSchedule(env.client, {
      cluster: inv.cluster,
      inventory: input,
      cron: '0 3 * * *',
      retention: 'REDUNDANCY 1',
      taskQueue,
    });
    try {
      await handle.trigger(ScheduleOverlapPolicy.SKIP);
      const ran = await eventually(
        'the triggered backup run',
        async () => (await handle.describe()).info.recentActions,
        (a) => a.length >= 1,
        60_000,
      );
      const wf = ran[0]!.action.workflow;
      const r = (await env.client.workflow
        .getHandle(wf.workflowId, wf.firstExecutionRunId)
        .result()) as BackupResult;
      assert.equal(r.kind, 'physical');
      if (r.kind !== 'physical') return;
      const now = listBackups().filter((b) => b.status === 'DONE');
      assert.deepEqual(
        now.map((b) => [b.backup_id, b.backup_name]),
        [[r.backupId, r.name]],
        'only the new backup is left',
      );
      assert.deepEqual([...(r.retention?.deleted ?? [])].sort(), before.map((b) => b.backup_id).sort());
      const conf = inCt(backupVmid(), ['cat', `/etc/barman.d/${barmanServer(inv)}.retention.conf`]);
      assert.match(conf, /^retention_policy = REDUNDANCY 1$/m);
      assert.match(barman(['show-server', barmanServer(inv)]), /retention_policy: REDUNDANCY 1/);
    } finally {
      await handle.delete();
      // Leave no policy behind for the next tests of this lab.
      inCt(backupVmid(), ['rm', '-f', `/etc/barman.d/${barmanServer(inv)}.retention.conf`]);
    }
  },
);
