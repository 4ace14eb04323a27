/**
 * `npm run bench:restore`: the restore runbook's RTO on the lab (PGHA_LAB_INVENTORY, default
 * runbooks/clusters/lab.yaml; it must have a backup CT). It restores the cluster IN PLACE (every
 * change after the target is lost): it refuses, before anything, an inventory that is not a lab's.
 *  1. the database of about 1.5 GB (bench/common.ts pgbenchDatabase: `pgbench -i -s 100`), a backup
 *     of it by the `backup` runbook; then 100 rows, a time T, 100 more rows;
 *  2. by hand: the same backup restored the way one does without pgha — the base backup copied
 *     out of Barman's storage, `barman get-wal` as restore_command, PostgreSQL started and waited
 *     for until recovery has ended (test/helpers/lab-backup.ts restoreArchive, in the backup CT,
 *     where Barman's files are: no copy between CTs) — timed to the moment it accepts writes;
 *  3. the runbook: `restore --mode in-place --target-time T`, approved at once; its RTO is the
 *     runbook's own work until the restored leader accepts writes (the plan step, then everything
 *     from the approval to the step `restored leader`: stop, clean the DCS, move aside, stage
 *     through the Proxmox host's pipe, Patroni's bootstrap and recovery); the whole run (replicas
 *     cloned, verification, old data removed, first backup of the new timeline) is printed beside;
 *  4. exactness: every row committed before T is on the restored leader, none after.
 * Last line exactly: `restore rto_s=<n> by_hand_s=<n> ratio=<r> pitr_exact=<true|false>` (ratio =
 * rto / by hand; the goal ≤ 1.1).
 */
import { join } from 'node:path';
import { inventoryInput } from '../clients/inventory-input';
import { startRunbook } from '../clients/runbook';
import type { PhysicalBackupResult } from '../activities/backup';
import { restoreArchive } from '../test/helpers/lab-backup';
import { waitHealthyDirect } from '../test/helpers/lab-direct';
import { approve, progress } from '../workflows/messages';
import type { restore } from '../workflows/restore';
import { benchTemporal, bounded, pgbenchDatabase, psqlMember, requireLabInventory, sleep } from './common';

const INVENTORY = process.env.PGHA_LAB_INVENTORY ?? join(__dirname, '..', 'runbooks', 'clusters', 'lab.yaml');

const seconds = (ms: number) => Math.round(ms / 100) / 10;

async function main() {
  requireLabInventory('bench:restore', 'restores the cluster in place (changes after T are lost)', INVENTORY);
  const { input, inventory: inv } = await inventoryInput(INVENTORY);
  if (!inv.nodes.backup.length)
    throw new Error(`bench:restore needs a backup CT (nodes.backup) in ${INVENTORY}`);
  const { env, worker, taskQueue } = await benchTemporal('bench-restore');
  const table = 'bench_restore_rows';
  await worker.runUntil(async () => {
    let leader = await waitHealthyDirect(inv);
    pgbenchDatabase(inv, leader);
    leader = await waitHealthyDirect(inv, 600_000);
    console.log(
      `database: ${psqlMember(inv, leader, "select pg_size_pretty(pg_database_size('postgres'))")}`,
    );
    const b = await startRunbook<(a: unknown) => Promise<PhysicalBackupResult>>(env.client, {
      workflow: 'backup',
      args: [{ inventory: input }],
      cluster: inv.cluster,
      operation: 'backup',
      taskQueue,
    });
    const backup = await b.result();
    console.log(`backup ${backup.backupId}: ${(backup.sizeBytes / 1048576).toFixed(0)} MiB`);
    psqlMember(
      inv,
      leader,
      `drop table if exists ${table}; create table ${table} (id int primary key, at timestamptz not null default clock_timestamp())`,
    );
    psqlMember(inv, leader, `insert into ${table} (id) select g from generate_series(1, 100) g`);
    await sleep(1000);
    const T = psqlMember(
      inv,
      leader,
      `select to_char(clock_timestamp() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`,
    );
    await sleep(1000);
    psqlMember(inv, leader, `insert into ${table} (id) select g from generate_series(101, 200) g`);

    // by hand: the base backup out of Barman's storage, barman get-wal, start, until it accepts writes
    const h0 = Date.now();
    const restored = await restoreArchive(inv, backup.backupId);
    const byHandS = seconds(Date.now() - h0);
    const handRows = restored.query(`select count(*) from ${table}`)[0]?.[0];
    restored.drop();
    console.log(
      `by hand (copy + barman get-wal + start, to the archive's end): ${byHandS} s, ${handRows} rows`,
    );

    // the runbook, in place, to T
    const r0 = Date.now();
    const h = await startRunbook<typeof restore>(env.client, {
      workflow: 'restore',
      args: [{ inventory: input, mode: 'in-place', targetTime: T }],
      cluster: inv.cluster,
      operation: 'restore',
      taskQueue,
    });
    await bounded(
      'the restore gate',
      600_000,
      async () =>
        (await h.query(progress)).steps.find((s) => s.name === 'restore')?.status === 'waiting'
          ? true
          : undefined,
      500,
    );
    await h.executeUpdate(approve, { args: [{ gate: 'restore', approver: 'bench' }] });
    const result = await h.result();
    const total = seconds(Date.now() - r0);
    const steps = (await h.query(progress)).steps;
    const span = (name: string) => {
      const s = steps.find((x) => x.name === name);
      if (!s?.startedAt || !s.endedAt) throw new Error(`step ${name} has no times in the run's progress`);
      return { start: Date.parse(s.startedAt), end: Date.parse(s.endedAt) };
    };
    const plan = span('plan');
    const rtoS = seconds(plan.end - plan.start + span('restored leader').end - span('restore').end);
    console.log(
      `runbook: RTO ${rtoS} s (plan ${seconds(plan.end - plan.start)} s, then approval → restored leader accepting writes); whole run ${total} s (staged ${result.staged?.bytes ?? '?'} B in ${result.staged?.seconds ?? '?'} s; first backup ${result.firstBackup})`,
    );
    leader = await waitHealthyDirect(inv, 600_000);
    const [lo, hi, late] = psqlMember(
      inv,
      leader,
      `select min(id), max(id), count(*) filter (where at >= '${T}') from ${table}`,
    ).split('|');
    const exact = lo === '1' && hi === '100' && late === '0';
    console.log(`restored to ${T}: ids ${lo}..${hi}, ${late} after T; ${result.verified?.stoppedAt}`);
    const ratio = rtoS / byHandS;
    console.log(`restore rto_s=${rtoS} by_hand_s=${byHandS} ratio=${ratio.toFixed(2)} pitr_exact=${exact}`);
  });
  await env.teardown();
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
