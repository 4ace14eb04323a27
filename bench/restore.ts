/**
 * `npm run bench:restore`: the restore runbook's RTO on the lab (PGHA_LAB_INVENTORY, default
 * runbooks/clusters/lab.yaml; it must have a backup CT). It restores the cluster IN PLACE (every
 * change after the target is lost): it refuses, before anything, an inventory that is not a lab's.
 *  1. the database of about 1.5 GB (bench/common.ts pgbenchDatabase: `pgbench -i -s 100`), a backup
 *     of it by the `backup` runbook; then 100 rows, a time T, 100 more rows;
 *  2. by hand, in the same CTs: the same backup restored the way one does without pgha, on the
 *     Proxmox host — the base backup and the WAL since it piped from the backup CT into the
 *     leader's CT after `barman switch-wal --archive` as the runbook's plan does (`pct exec … tar | pct exec … tar`: the CTs have no SSH between them, so this is
 *     `barman restore`'s copy), recovery to T with `cp` from the copied WAL as restore_command,
 *     PostgreSQL started beside the cluster (its own directory and port) and waited for until it
 *     accepts writes — timed from the first byte copied; then dropped. (Restoring inside the backup
 *     CT, where no copy between CTs is needed, is not the same work: the runbook must move the
 *     data into a member's CT);
 *  3. the runbook: `restore --mode in-place --target-time T`, approved at once; its RTO is the
 *     runbook's own work until the restored leader accepts writes (the plan step, then everything
 *     from the approval to the step `restored leader`: stop, clean the DCS, move aside, stage
 *     through the Proxmox host's pipe, Patroni's bootstrap and recovery); the whole run (replicas
 *     cloned, verification, old data removed, first backup of the new timeline) is printed beside;
 *  4. exactness: every row committed before T is on the restored leader, none after.
 * Last line exactly: `restore rto_s=<n> by_hand_s=<n> ratio=<r> pitr_exact=<true|false>` (ratio =
 * rto / by hand; the issue's goal ≤ 1.1).
 */
import { join } from 'node:path';
import { inventoryInput } from '../clients/inventory-input';
import { startRunbook } from '../clients/runbook';
import { execFileSync } from 'node:child_process';
import type { PhysicalBackupResult } from '../activities/backup';
import { pctExec } from '../activities/command';
import { barmanExecutable, barmanServer } from '../activities/render';
import { segmentOf, WAL_SINCE_TAR } from '../activities/restore';
import type { Inventory } from '../runbooks/schema';
import { inCt, waitHealthyDirect } from '../test/helpers/lab-direct';
import { approve, progress } from '../workflows/messages';
import type { restore } from '../workflows/restore';
import {
  benchTemporal,
  bounded,
  pgbenchDatabase,
  pgToolArgv,
  psqlMember,
  requireLabInventory,
  sleep,
} from './common';

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

    // by hand, in the leader's CT: copy base backup and WAL through the host, recover to T, start
    const hand = await byHandInCt(inv, leader, backup, T);
    const byHandS = hand.seconds;
    console.log(
      `by hand (pct exec tar | pct exec tar of the base backup and its WAL into ${leader}'s CT, recovery to T, start): ` +
        `${byHandS} s (barman switch-wal --archive ${hand.switchS} s, copy ${seconds(hand.copyS * 1000 - hand.switchS * 1000)} s, ` +
        `recovery and start ${seconds(hand.seconds * 1000 - hand.copyS * 1000)} s), ids ${hand.rows}`,
    );
    // Barman archives the switched segment only once the next one begins: on a quiet cluster the plain
    // command waits up to ~15 s for that (the runbook makes the next segment begin). Said apart, so the
    // ratio can be read without that wait too.
    console.log(
      `by hand without the switch's wait: ${seconds(hand.seconds * 1000 - hand.switchS * 1000)} s (+ the runbook's whole plan inside its RTO)`,
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
    // where the runbook's time went, step by step
    console.log(
      `runbook steps: ${steps
        .filter((x) => x.startedAt && x.endedAt)
        .map((x) => `${x.name} ${seconds(Date.parse(x.endedAt!) - Date.parse(x.startedAt!))}s`)
        .join(', ')}`,
    );
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
    const noWait = seconds(hand.seconds * 1000 - hand.switchS * 1000);
    console.log(
      `ratio against by hand without its switch's wait (${noWait} s): ${(rtoS / noWait).toFixed(2)}`,
    );
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

/**
 * The restore an operator does by hand on the Proxmox host, into `member`'s CT beside its running
 * PostgreSQL (directory `<data dir's parent>/bench-by-hand`, port 5499, local socket only): the base
 * backup and the WAL since it piped from the backup CT, recovery to `target` (then promote), start,
 * until it accepts writes. Returns the seconds from the first byte copied, the copy's share, and the
 * ids range it holds; the copy is removed afterwards.
 */
async function byHandInCt(
  inv: Inventory,
  member: string,
  backup: PhysicalBackupResult,
  target: string,
): Promise<{ seconds: number; copyS: number; switchS: number; rows: string }> {
  const b = inv.nodes.backup[0]!;
  const m = inv.nodes.postgres.find((n) => n.hostname === member)!;
  const server = `${inv.backup.storage.path}/${barmanServer(inv)}`;
  const dir = `${inv.postgresql.dataDir.replace(/\/[^/]+$/, '')}/bench-by-hand`;
  const bin = inv.postgresql.binDir;
  const pg = inv.postgresql.osUser;
  const asPg = (argv: string[], timeoutMs = 60_000) =>
    inCt(m.vmid, ['runuser', '-u', pg, '--', ...argv], { timeoutMs });
  const dropCopy = () =>
    asPg([
      'sh',
      '-c',
      '[ -f "$2/postmaster.pid" ] && "$1/pg_ctl" -D "$2" -m immediate -w stop; rm -rf "$3"',
      'drop',
      bin,
      `${dir}/data`,
      dir,
    ]);
  dropCopy();
  asPg(['mkdir', '-p', '-m', '0700', `${dir}/data`, `${dir}/wal`]);
  // on the Proxmox host, as an operator types it (lab/pct is the lab's pct)
  const host = (line: string) =>
    execFileSync('bash', ['-c', `set -o pipefail; ${line}`], {
      env: { ...process.env, PATH: `${join(__dirname, '..', 'lab')}:${process.env.PATH}` },
      stdio: ['ignore', 'ignore', 'inherit'],
      timeout: 3_600_000,
    });
  const asBarman = ['runuser', '-u', inv.backup.osUser, '--'];
  const h0 = Date.now();
  // the WAL holding T archived first, as the runbook's plan does: `barman switch-wal --archive`
  inCt(
    b.vmid,
    [
      ...asBarman,
      barmanExecutable(inv),
      'switch-wal',
      '--force',
      '--archive',
      '--archive-timeout',
      '60',
      barmanServer(inv),
    ],
    {
      timeoutMs: 120_000,
    },
  );
  const switchS = seconds(Date.now() - h0);
  host(
    `${pctExec(b.vmid, [...asBarman, 'tar', '-C', `${server}/base/${backup.backupId}/data`, '-cf', '-', '.'])} | ` +
      pctExec(m.vmid, ['runuser', '-u', pg, '--', 'tar', '-C', `${dir}/data`, '-xf', '-']),
  );
  host(
    `${pctExec(b.vmid, [...asBarman, 'sh', '-c', WAL_SINCE_TAR, 'wal', `${server}/wals`, segmentOf(backup.beginLsn)])} | ` +
      pctExec(m.vmid, [
        'runuser',
        '-u',
        pg,
        '--',
        'tar',
        '-C',
        `${dir}/wal`,
        '--transform',
        's,.*/,,',
        '-xf',
        '-',
      ]),
  );
  const copyS = seconds(Date.now() - h0);
  asPg(
    [
      'sh',
      '-c',
      [
        'set -eu',
        'cd "$2/data"',
        'rm -f postmaster.pid postmaster.opts standby.signal && rm -rf pg_replslot/*',
        'printf "# by hand\\n" > postgresql.auto.conf',
        `printf "%s\\n" "restore_command = 'cp $2/wal/%f %p'" "recovery_target_time = '$3'" "recovery_target_action = 'promote'" >> postgresql.auto.conf`,
        'touch recovery.signal',
        'printf "local all all trust\\n" > "$2/hba.conf"',
        '"$1/pg_ctl" -D "$2/data" -l "$2/start.log" -w -t 3600 -o "-c port=5499 -c listen_addresses= -c unix_socket_directories=$2 -c hba_file=$2/hba.conf -c archive_mode=off -c synchronous_standby_names= -c cluster_name=bench-by-hand" start',
      ].join('\n'),
      'by-hand',
      bin,
      dir,
      // PostgreSQL's timestamp syntax, as one writes it by hand (it refuses ISO 8601's T…Z)
      target.replace('T', ' ').replace(/Z$/, '+00'),
    ],
    3_600_000,
  );
  const psql = (sql: string) =>
    inCt(
      m.vmid,
      pgToolArgv(inv, 'psql', ['-X', '-At', '-d', 'postgres', '-c', sql], { socket: dir, port: 5499 }),
    ).trim();
  await bounded(
    'the by-hand copy out of recovery',
    3_600_000,
    async () => (psql('select pg_is_in_recovery()') === 'f' ? true : undefined),
    200,
  );
  const took = seconds(Date.now() - h0);
  const rows = psql(`select coalesce(min(id), 0) || '..' || coalesce(max(id), 0) from bench_restore_rows`);
  dropCopy();
  return { seconds: took, copyS, switchS, rows };
}
