// pgha-test: own-lab — its own CTs (runbooks/clusters/lab17.yaml), so scripts/test runs it beside the main lab tests
/**
 * upgradeMajor end to end on a lab cluster of its own deployed at PostgreSQL 17 (CI's main lab
 * runs 18): runbooks/clusters/lab17.yaml (or PGHA_LAB17_INVENTORY) — 3 etcd, 2 PostgreSQL +
 * Patroni 4.1.5, 1 HAProxy on CTs 120-125 — made fresh from the base image, deployed, and removed
 * when the file ends. A real worker process; the cluster checked from outside pgha (SQL as the
 * superuser, Patroni's REST API, the CTs through lxc-attach):
 *  1. a failure before the point of no return (the new data directory's pg_control removed while
 *     the gate `pg_upgrade` waits, then approved: pg_upgrade fails) brings 17 back by itself:
 *     every member on 17, every row there, the replica streaming, a write through HAProxy;
 *  2. 17 → 18 while a writer commits through HAProxy, the worker SIGKILLed while pg_upgrade runs
 *     and a second one finishing: every member on 18, every row and every acknowledged write on
 *     the leader, the replica streaming, a write through HAProxy, pg_upgrade run exactly once,
 *     pg_stat_statements updated from 17's 1.11 to 18's default version.
 * With a backup CT in the inventory (PGHA_LAB17_INVENTORY=/work/labs/labm.yaml, not CI's lab17):
 * after 1 the old Barman server is active and streaming again; after 2 the old one is retired
 * (active = false) and the new major's server `<cluster>-pg18` holds a finished backup.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { WorkflowHandle } from '@temporalio/client';
import { startRunbook } from '../../clients/runbook';
import { down, reset } from '../../lab';
import { labNotUpReason } from '../../lab/testing';
import { Failures } from '../../runbooks/failures';
import { approve, progress } from '../../workflows/messages';
import type { upgradeMajor } from '../../workflows/upgrade-major';
import { LabWriter, inCt, sqlAs } from '../helpers/lab-direct';
import { majorBarmanServer } from '../../runbooks/pg-version';
import { upgradeLabSetup } from '../helpers/lab-upgrade';
import type { LabCluster, UpgradeLab } from '../helpers/lab-upgrade';
import { repoRoot, waitFor } from '../helpers/local-common';
import { uniqueId } from '../helpers/temporal';
import { killAt, workerReady } from '../helpers/worker-procs';

const LAB17 = process.env.PGHA_LAB17_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab17.yaml');
const skip = labNotUpReason();
const ROWS = 20_000;

let t: UpgradeLab;
let lab: LabCluster;
const quiet = () => undefined;

before(async () => {
  if (skip) return;
  // A fresh 17 cluster whatever an earlier run left (on 18 after a pass).
  reset({ inventory: LAB17, log: quiet });
  t = await upgradeLabSetup('major', { inventory: LAB17, fresh: true, prepare: async () => undefined });
  lab = t.lab;
  const leader = await lab.healthy();
  await lab.sql(t.inv.nodes.postgres.find((n) => n.hostname === leader)!.ip, t.inv.ports.postgresql, (c) =>
    c.query(
      `create table major_rows as select g as id, md5(g::text) as v from generate_series(1, ${ROWS}) g;
       alter table major_rows add primary key (id);
       create extension pg_stat_statements version '1.11'`,
    ),
  );
});

after(async () => {
  await t?.teardown();
  if (!skip) down({ inventory: LAB17, log: quiet });
});

const haproxy = () => t.inv.nodes.haproxy[0]!;
const backupCt = () => t.inv.nodes.backup[0];
/** The Barman server's file on the backup CT, and its backups as Barman lists them. */
const barmanConf = (server: string) => inCt(backupCt()!.vmid, ['cat', `/etc/barman.d/${server}.conf`]);
const barmanBackups = (server: string) =>
  (
    JSON.parse(
      inCt(
        backupCt()!.vmid,
        [
          'runuser',
          '-u',
          t.inv.backup.osUser,
          '--',
          `${t.inv.backup.install.venv}/bin/barman`,
          '-f',
          'json',
          'list-backups',
          server,
        ],
        { timeoutMs: 60_000 },
      ),
    ) as Record<string, { status: string; version?: number }[]>
  )[server] ?? [];
const vmidOf = (m: string) => t.inv.nodes.postgres.find((n) => n.hostname === m)!.vmid;
const ipOf = (m: string) => t.inv.nodes.postgres.find((n) => n.hostname === m)!.ip;

function start(extra: { approve?: boolean } = {}): Promise<WorkflowHandle<typeof upgradeMajor>> {
  return startRunbook<typeof upgradeMajor>(t.env.client, {
    workflow: 'upgradeMajor',
    args: [{ inventory: t.input, to: '18', ...extra }],
    cluster: t.inv.cluster,
    operation: 'upgrade',
    suffix: uniqueId('major'),
    taskQueue: t.taskQueue,
  });
}

const stepIs = async (h: WorkflowHandle, step: string, status: string) =>
  (await h.query(progress)).steps.some((s) => s.name === step && s.status === status);

/** Every member on `major`, a leader with the other streaming, `rows` rows, and a write through HAProxy. */
async function servesOn(major: number, table = 'major_rows'): Promise<string> {
  const leader = await lab.healthy(120_000);
  for (const m of lab.members()) assert.match(await lab.version(m), new RegExp(`^PostgreSQL ${major}\\.`), m);
  const n = await lab.sql(ipOf(leader), t.inv.ports.postgresql, async (c) =>
    Number((await c.query<{ n: string }>(`select count(*) as n from ${table}`)).rows[0]!.n),
  );
  assert.equal(n, ROWS, `every row of ${table} on the leader`);
  await sqlAs(t.inv, haproxy().ip, t.inv.ports.haproxyWrite, (c) =>
    c.query(`insert into major_rows values (${ROWS + major}, 'through haproxy on ${major}')`),
  );
  await lab.sql(ipOf(leader), t.inv.ports.postgresql, (c) =>
    c.query(`delete from major_rows where id > ${ROWS}`),
  );
  return leader;
}

void test(
  'a failure before the point of no return brings 17 back, and the cluster serves as before',
  { skip, timeout: 240_000 },
  async () => {
    const leader = await lab.healthy();
    const h = await start({ approve: true });
    await waitFor('the gate pg_upgrade waiting', 120_000, () => stepIs(h, 'pg_upgrade', 'waiting'));
    // The cluster is stopped and the new data directory made: break it, then approve.
    inCt(vmidOf(leader), ['rm', '-f', '/var/lib/pgsql/18/data/global/pg_control']);
    await h.executeUpdate(approve, { args: [{ gate: 'pg_upgrade', approver: 'lab-test' }] });
    const err = await h.result().then(
      () => assert.fail('the run succeeded with a broken new data directory'),
      (e: Error & { cause?: Error & { type?: string } }) => e.cause,
    );
    assert.equal(err?.type, Failures.MajorUpgradeRolledBack, err?.message);
    assert.match(
      err!.message,
      /^before the point of no return: pg_upgrade on \S+ failed.*PostgreSQL 17\.11 serves again/s,
    );

    assert.equal(await servesOn(17), leader, 'the same leader');
    assert.equal(lab.sh(leader, 'ls', '/var/lib/pgsql/18'), '', 'the new data directory removed');
    lab.sh(leader, 'test', '-f', '/var/lib/pgsql/17/data/global/pg_control');
    if (backupCt()) {
      assert.doesNotMatch(
        barmanConf(t.inv.cluster),
        /^active = false$/m,
        'the old Barman server active again',
      );
      assert.equal(
        inCt(backupCt()!.vmid, ['systemctl', 'is-active', 'barman-receive-wal']).trim(),
        'active',
        "Barman's WAL receiver running again",
      );
    }
  },
);

void test(
  '17 → 18: every row, every member on 18, the replica streaming, a write through HAProxy; a killed worker does not run pg_upgrade twice',
  { skip, timeout: 480_000 },
  async () => {
    const leader = await lab.healthy();
    const since = Math.floor(Date.now() / 1000);
    await lab.sql(ipOf(leader), t.inv.ports.postgresql, (c) =>
      c.query('create table if not exists major_writer (id int primary key, at timestamptz default now())'),
    );
    const writer = await new LabWriter(t.inv, 'major_writer', haproxy().ip).start();
    try {
      const h = await start();
      // Seen in the CT, not through a query: killAt asks again while the worker is frozen.
      const pgUpgradeRuns = () =>
        Promise.resolve(
          inCt(vmidOf(leader), ['systemctl', 'show', '-p', 'SubState', 'pgha-pg-upgrade']).trim() ===
            'SubState=running',
        );
      await killAt(t.worker, 'pg_upgrade running', 180_000, pgUpgradeRuns, 200);
      const w2 = t.startWorker('worker-2');
      await workerReady(w2, 120_000);
      const report = await h.result();
      assert.equal(report.outcome, 'upgraded', report.message);
      assert.match(
        report.pgUpgrade?.action ?? '',
        /^(already-done|joined)$/,
        'the retried step found the first pg_upgrade',
      );
      assert.equal(await servesOn(18), leader);
      const ext = await lab.sql(
        ipOf(leader),
        t.inv.ports.postgresql,
        async (c) =>
          (
            await c.query<{ v: string; d: string }>(
              "select extversion as v, default_version as d from pg_extension join pg_available_extensions on name = extname where extname = 'pg_stat_statements'",
            )
          ).rows[0],
      );
      assert.ok(
        ext && ext.v !== '1.11' && ext.v === ext.d,
        `pg_stat_statements updated: ${JSON.stringify(ext)}`,
      );
      if (backupCt()) {
        const server = majorBarmanServer(t.inv.cluster, 18);
        assert.equal(report.backup?.server, server);
        assert.match(barmanConf(t.inv.cluster), /^active = false$/m, 'the old Barman server retired');
        const done = barmanBackups(server).filter((b) => b.status === 'DONE');
        assert.equal(done.length, 1, `one finished backup of ${server}`);
      }
    } finally {
      await writer.stop();
    }
    const onLeader = await lab.sql(ipOf(leader), t.inv.ports.postgresql, async (c) =>
      (await c.query<{ id: number }>('select id from major_writer')).rows.map((r) => r.id),
    );
    const have = new Set(onLeader);
    const lost = writer.ackedIds.filter((id) => !have.has(id));
    assert.ok(writer.ackedIds.length > 0, 'the writer committed');
    assert.deepEqual(lost, [], 'every acknowledged write on the new leader');
    const ran = inCt(vmidOf(leader), [
      'journalctl',
      '-u',
      'pgha-pg-upgrade',
      '--since',
      `@${since}`,
      '-o',
      'cat',
    ]);
    assert.equal(ran.match(/^Performing Upgrade/gm)?.length, 1, `pg_upgrade ran once:\n${ran}`);
  },
);
