/**
 * `npm run bench:backup`: backups on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml;
 * it must have a backup CT). It hard-stops the leader's CT and switches synchronous WAL streaming on
 * and off: it refuses, before anything, an inventory that is not a lab's.
 *  1. a database of about 1.5 GB: `pgbench -i -s 100` (the PostgreSQL build's, in the leader's CT;
 *     kept when pgbench_accounts already has its 10 M rows);
 *  2. backup wall time: the `backup` runbook (marker, `barman backup`, verify-backup, check-backup)
 *     against a raw `pg_basebackup -D … -X stream` run by hand in the backup CT as Barman's user, to
 *     the same storage, through the same HAProxy write port; ratio = raw / runbook (goal ≥ 0.95);
 *     Barman's copy alone is printed beside it;
 *  3. write latency: a writer through HAProxy (BENCH_RATE commits/s, default 100) for 10 s,
 *     asynchronous and then synchronous (`deployCluster` with synchronousBackup): the mean commit's
 *     overhead in % (the median of ms-resolution times is printed too);
 *  4. RPO, asynchronous and synchronous: the writer on, the leader's CT hard-stopped, Patroni fails
 *     over (ttl), the writer commits on the new leader, the CT started again; then the base backup
 *     restored in the backup CT with every archived WAL file (test/helpers/lab-backup.ts): the
 *     acknowledged commits missing from it are counted, with the span in ms before the stop they
 *     were acknowledged in.
 * Leaves the cluster asynchronous. Last line exactly:
 * `backup ratio=<r> rpo_async_lost=<n> rpo_async_ms=<n> rpo_sync_lost=<n> sync_latency_overhead_pct=<n>`.
 */
import { join } from 'node:path';
import { inventoryInput } from '../clients/inventory-input';
import { startRunbook } from '../clients/runbook';
import { fault, up } from '../lab/index';
import { resolveClusterSecrets } from '../runbooks/inventory';
import { barmanConninfo } from '../runbooks/topology';
import { barmanServer } from '../activities/render';
import type { PhysicalBackupResult } from '../activities/backup';
import { barmanDirect, restoreArchive } from '../test/helpers/lab-backup';
import { inCt, waitHealthyDirect } from '../test/helpers/lab-direct';
import {
  Writer,
  benchTemporal,
  bounded,
  median,
  pgbenchDatabase,
  psqlMember,
  requireLabInventory,
  sleep,
} from './common';

const INVENTORY = process.env.PGHA_LAB_INVENTORY ?? join(__dirname, '..', 'runbooks', 'clusters', 'lab.yaml');
const RATE = Number(process.env.BENCH_RATE ?? 100);

async function main() {
  requireLabInventory(
    'bench:backup',
    'hard-stops the leader CT and changes synchronous_standby_names',
    INVENTORY,
  );
  const { input, inventory: inv } = await inventoryInput(INVENTORY);
  const backupCt = inv.nodes.backup[0];
  if (!backupCt) throw new Error(`bench:backup needs a backup CT (nodes.backup) in ${INVENTORY}`);
  const secrets = await resolveClusterSecrets(inv);
  const { env, worker, taskQueue } = await benchTemporal('bench-backup');
  const node = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!;
  const run = async <T>(workflow: string, operation: string, args: Record<string, unknown> = {}) => {
    const h = await startRunbook<(a: unknown) => Promise<T>>(env.client, {
      workflow,
      args: [{ inventory: input, ...args }],
      cluster: inv.cluster,
      operation,
      taskQueue,
    });
    return h.result();
  };
  const psqlLeader = (leader: string, sql: string, timeoutMs = 60_000) =>
    psqlMember(inv, leader, sql, timeoutMs);
  const table = `bench_backup_${Date.now()}`;
  let idBase = 1;
  const writer = () => {
    const w = new Writer({
      conn: {
        host: inv.nodes.haproxy[0]!.ip,
        port: inv.ports.haproxyWrite,
        user: inv.postgresql.superuser,
        password: secrets.superuserPassword,
      },
      table,
      rate: RATE,
      idBase,
      connectTimeoutMs: 3000,
    });
    return w;
  };
  const latencyMs = async (label: string) => {
    const w = writer();
    w.start();
    await sleep(10_000);
    await w.stop();
    idBase = w.nextIdBase;
    const ok = w.attempts.filter((a) => a.ok && a.connectMs === undefined).map((a) => a.end - a.start);
    // The mean of ms-resolution times has the sub-ms resolution a median of them lacks.
    const mean = ok.reduce((x, y) => x + y, 0) / Math.max(ok.length, 1);
    console.log(
      `${label}: ${ok.length} commits in 10 s, median ${median(ok)} ms, mean ${mean.toFixed(2)} ms, failed ${w.attempts.filter((a) => !a.ok).length}`,
    );
    return mean;
  };

  /** Hard stop of the leader's CT with the writer on; the acknowledged commits missing from the archive. */
  const rpo = async (label: string, baseId: string) => {
    const leader = await waitHealthyDirect(inv);
    const w = writer();
    w.start();
    await sleep(3000);
    const stoppedAt = Date.now();
    console.log(`${label}: ${fault.stopCt(node(leader).vmid, { inventory: INVENTORY })} with the writer on`);
    await bounded(
      'commits on the new leader',
      240_000,
      async () => (w.attempts.filter((a) => a.ok && a.start > stoppedAt).length >= 50 ? true : undefined),
      500,
    );
    await w.stop();
    idBase = w.nextIdBase;
    up({ inventory: INVENTORY, log: () => undefined });
    await waitHealthyDirect(inv, 300_000);
    barmanDirect(
      inv,
      ['switch-wal', '--force', '--archive', '--archive-timeout', '120', barmanServer(inv)],
      180_000,
    );
    const restored = await restoreArchive(inv, baseId);
    try {
      const have = new Set(restored.query(`select id from ${table}`).map((r) => Number(r[0])));
      const acked = w.attempts.filter((a) => a.ok);
      const lost = acked.filter((a) => !have.has(a.id));
      const ms = lost.length ? stoppedAt - Math.min(...lost.map((a) => a.end)) : 0;
      console.log(
        `${label}: ${acked.length} acknowledged, ${lost.length} missing from the archive${lost.length ? ` (acknowledged in the last ${ms} ms before the stop)` : ''}`,
      );
      return { lost: lost.length, ms };
    } finally {
      restored.drop();
    }
  };

  await worker.runUntil(async () => {
    await run('deployCluster', 'deploy', { synchronousBackup: false });
    let leader = await waitHealthyDirect(inv);
    pgbenchDatabase(inv, leader);
    leader = await waitHealthyDirect(inv, 600_000);
    console.log(`database: ${psqlLeader(leader, "select pg_size_pretty(pg_database_size('postgres'))")}`);

    const t0 = Date.now();
    const b = (await run<PhysicalBackupResult>('backup', 'backup')) as PhysicalBackupResult;
    const runbookS = (Date.now() - t0) / 1000;
    console.log(
      `backup runbook: ${runbookS.toFixed(1)} s (Barman's copy ${b.durationSeconds} s, ${(b.sizeBytes / 1048576).toFixed(0)} MiB, verified ${b.verified})`,
    );
    const raw = `${inv.backup.storage.path}/bench-raw-basebackup`;
    const asBarman = (argv: string[]) =>
      inCt(backupCt.vmid, ['runuser', '-u', inv.backup.osUser, '--', ...argv], { timeoutMs: 1_800_000 });
    asBarman(['rm', '-rf', raw]);
    const t1 = Date.now();
    asBarman([
      `${inv.postgresql.binDir}/pg_basebackup`,
      '-D',
      raw,
      '-X',
      'stream',
      '-c',
      'fast',
      '-w',
      '-d',
      barmanConninfo(inv, 'streaming'),
    ]);
    const rawS = (Date.now() - t1) / 1000;
    asBarman(['rm', '-rf', raw]);
    const ratio = rawS / runbookS;
    console.log(`raw pg_basebackup -X stream: ${rawS.toFixed(1)} s; ratio raw/runbook ${ratio.toFixed(2)}`);

    psqlLeader(await waitHealthyDirect(inv), `create table if not exists ${table} (id bigint primary key)`);
    const asyncMs = await latencyMs('asynchronous');
    const a = await rpo('asynchronous', b.backupId);
    await run('deployCluster', 'deploy', { synchronousBackup: true });
    const syncMs = await latencyMs('synchronous');
    const s = await rpo('synchronous', b.backupId);
    await run('deployCluster', 'deploy', { synchronousBackup: false });
    const overhead = Math.round(((syncMs - asyncMs) / asyncMs) * 100);
    console.log(
      `backup ratio=${ratio.toFixed(2)} rpo_async_lost=${a.lost} rpo_async_ms=${a.ms} rpo_sync_lost=${s.lost} sync_latency_overhead_pct=${overhead}`,
    );
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
