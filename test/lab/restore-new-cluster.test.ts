/**
 * The restore runbook into a new cluster, end to end on the lab: the latest backup of the cluster of
 * PGHA_LAB_INVENTORY (default runbooks/clusters/lab.yaml; deployed, with a backup CT) restored into
 * the CTs of PGHA_LAB_RESTORE_INTO (another inventory on the same bridge, deployed by `pgha deploy`:
 * its data is replaced, so the run waits at its gate), by a real pgha worker process. Checked from
 * outside pgha, on the new cluster itself: every row committed before the backup's end is on every
 * member; the system identifier is the source's (a physical copy keeps it: as designed, the new
 * cluster is the source's data on a new timeline); every replica streams from the new leader; a
 * write through each of its HAProxies reaches every member; the source is untouched.
 *
 * Opt-in (PGHA_LAB_RESTORE_INTO=/work/labs/labh.yaml): it needs a second deployed inventory's CTs.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import { labNotUpReason } from '../../lab/testing';
import type { Inventory } from '../../runbooks/schema';
import type { backup } from '../../workflows/backup';
import { approve, progress } from '../../workflows/messages';
import type { restore } from '../../workflows/restore';
import { MEMBER_STREAMING, sqlAs, timelineOf, waitHealthyDirect } from '../helpers/lab-direct';
import { repoRoot } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { eventually, startTestServer, uniqueId } from '../helpers/temporal';
import { startWorkerProc, workerReady } from '../helpers/worker-procs';

const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
const INTO = process.env.PGHA_LAB_RESTORE_INTO;
const skip =
  labNotUpReason() ??
  (INTO
    ? undefined
    : 'PGHA_LAB_RESTORE_INTO=<a second deployed inventory> runs the new-cluster restore (not in CI: it needs its CTs)');

let env: TestWorkflowEnvironment;
let src: Inventory;
let dst: Inventory;
let srcInput: Awaited<ReturnType<typeof inventoryInput>>['input'];
let dstInput: Awaited<ReturnType<typeof inventoryInput>>['input'];
const procs: Proc[] = [];
const taskQueue = uniqueId('restore-new');
const countDir = mkdtempSync(join(tmpdir(), 'pgha-count-'));

const sqlOn = <R>(inv: Inventory, host: string, q: string, port = inv.ports.postgresql) =>
  sqlAs(inv, host, port, async (c) => (await c.query(q)).rows as R[]);
const ipOf = (inv: Inventory, name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.ip;
const sysidQ = 'select system_identifier::text as s from pg_control_system()';

before(async () => {
  if (skip) return;
  ({ input: srcInput, inventory: src } = await inventoryInput(LAB));
  ({ input: dstInput, inventory: dst } = await inventoryInput(INTO!));
  assert.ok(src.nodes.backup.length > 0, `${LAB} has no backup CT (nodes.backup)`);
  env = await startTestServer();
  const w = startWorkerProc({ name: 'worker-1', address: env.address, taskQueue, countDir });
  procs.push(w);
  await workerReady(w, 300_000);
});

after(async () => {
  for (const w of procs) await w.stop();
  await env?.teardown();
});

void test(
  'into a new cluster: the rows, the source system identifier, replicas streaming, writes through its HAProxy',
  { skip, timeout: 1_200_000 },
  async (t) => {
    const srcLeader = await waitHealthyDirect(src);
    await waitHealthyDirect(dst);
    const srcIp = ipOf(src, srcLeader);
    await sqlOn(src, srcIp, 'drop table if exists pgha_restore_new');
    await sqlOn(src, srcIp, 'create table pgha_restore_new (id int primary key)');
    await sqlOn(src, srcIp, 'insert into pgha_restore_new select g from generate_series(1, 300) g');
    const srcSysid = (await sqlOn<{ s: string }>(src, srcIp, sysidQ))[0]!.s;
    const srcTimeline = await timelineOf(src, srcIp);
    const b = await startRunbook<typeof backup>(env.client, {
      workflow: 'backup',
      args: [{ inventory: srcInput }],
      cluster: src.cluster,
      operation: 'backup',
      taskQueue,
    });
    await b.result();

    const started = Date.now();
    const h = await startRunbook<typeof restore>(env.client, {
      workflow: 'restore',
      args: [{ inventory: srcInput, mode: 'new-cluster', into: dstInput }],
      cluster: dst.cluster,
      operation: 'restore',
      taskQueue,
    });
    // the new cluster's CTs hold data (deployed): the gate waits
    await eventually(
      'the restore gate waiting',
      async () => (await h.query(progress)).steps.find((s) => s.name === 'restore')?.status,
      (s) => s === 'waiting',
      300_000,
    );
    await h.executeUpdate(approve, { args: [{ gate: 'restore', approver: 'lab-test' }] });
    const r = await h.result();
    t.diagnostic(
      `restored ${r.plan.backup.backupId} of ${src.cluster} into ${dst.cluster} in ${Math.round((Date.now() - started) / 1000)} s: ${r.verified?.stoppedAt}; ${r.firstBackup}`,
    );
    assert.equal(r.outcome, 'restored');

    const leader = await waitHealthyDirect(dst);
    const leaderIp = ipOf(dst, leader);
    const streaming = await sqlOn<{ c: string }>(
      dst,
      leaderIp,
      `select count(*)::text as c from pg_stat_replication where ${MEMBER_STREAMING}`,
    );
    assert.equal(
      streaming[0]!.c,
      String(dst.nodes.postgres.length - 1),
      'every replica streams from the new leader',
    );
    assert.ok((await timelineOf(dst, leaderIp)) > 1, 'promoted: a timeline after the backup');
    for (const n of dst.nodes.postgres) {
      const [x] = await sqlOn<{ n: string; s: string }>(
        dst,
        n.ip,
        `select (select count(*) from pgha_restore_new)::text as n, (${sysidQ}) as s`,
      );
      assert.deepEqual(
        x,
        { n: '300', s: srcSysid },
        `${n.hostname}: every row, the source's system identifier`,
      );
    }
    // a write through each of the new cluster's HAProxies, replayed on every member
    for (const [i, hap] of dst.nodes.haproxy.entries())
      await sqlOn(dst, hap.ip, `insert into pgha_restore_new values (${1001 + i})`, dst.ports.haproxyWrite);
    for (const n of dst.nodes.postgres)
      await eventually(
        `${n.hostname} replays the writes through HAProxy`,
        async () =>
          (
            await sqlOn<{ c: string }>(
              dst,
              n.ip,
              'select count(*)::text as c from pgha_restore_new where id > 1000',
            )
          )[0]!.c,
        (v) => v === String(dst.nodes.haproxy.length),
        60_000,
      );
    // the source is untouched: the same leader, timeline, and no row of the new cluster's writes
    assert.equal(await waitHealthyDirect(src), srcLeader);
    assert.equal(await timelineOf(src, srcIp), srcTimeline);
    const srcRows = await sqlOn<{ c: string }>(
      src,
      srcIp,
      'select count(*)::text as c from pgha_restore_new',
    );
    assert.equal(srcRows[0]!.c, '300');
  },
);
