/**
 * The restore runbook end to end on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml;
 * a deployed, healthy cluster with a backup CT), run by a real pgha worker process and checked from
 * outside pgha (SQL directly on every member, the CTs' directories through LXC):
 *  - in place with its rollback forced by a failure injected right after the old data directories
 *    were moved aside (failAfter): the run fails as RestoreFailed, and the cluster runs as before —
 *    healthy, the same system identifier, every row, no directory left aside;
 *  - in place to a time T between two known commits, approved at the gate: every row committed
 *    before T is on every member, none after (exact), a new timeline, replicas streaming, no old
 *    directory or staging left.
 * The new-cluster mode (into labh's CTs) is not in CI: it needs a second deployed inventory.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import type { Inventory } from '../../runbooks/schema';
import type { backup } from '../../workflows/backup';
import { approve, progress } from '../../workflows/messages';
import type { RestoreInput, restore } from '../../workflows/restore';
import { inCt, MEMBER_STREAMING, sqlAs, timelineOf, waitHealthyDirect } from '../helpers/lab-direct';
import { labNotUpReason } from '../../lab/testing';
import { repoRoot } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { startWorkerProc, workerReady } from '../helpers/worker-procs';
import { eventually, startTestServer, uniqueId } from '../helpers/temporal';

const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
// In CI since 2026-11-30: the file took 117 s on the main lab (load ~4, a chaos run on another lab
// beside it; both tests passed with the stage beside the stops). Its earlier 470 s were on labd under
// a load of ~22 (the worker's start 2 min, the backup before ~100 s, the rollback run 97 s, the PITR
// test 218 s). PGHA_LAB_RESTORE=0 skips it.
const skip =
  labNotUpReason() ??
  (process.env.PGHA_LAB_RESTORE === '0' ? 'PGHA_LAB_RESTORE=0 skips the restore file' : undefined);

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
const procs: Proc[] = [];
const taskQueue = uniqueId('restore-lab');
const countDir = mkdtempSync(join(tmpdir(), 'pgha-count-'));
let T = '';

const ip = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.ip;
const sqlOn = <R>(host: string, q: string, params: unknown[] = []) =>
  sqlAs(inv, host, inv.ports.postgresql, async (c) => (await c.query(q, params)).rows as R[]);
/** What a restore may leave in a member's CT beside its data directory. */
const leftAside = (vmid: number) =>
  inCt(vmid, [
    'sh',
    '-c',
    'ls -A "$1" | grep -E "pgha-old|pgha-restore|\\.failed$" || true',
    'sh',
    inv.postgresql.dataDir.replace(/\/[^/]+$/, ''),
  ]).trim();

async function restoreRun(extra: Partial<RestoreInput>): Promise<WorkflowHandle<typeof restore>> {
  const h = await startRunbook<typeof restore>(env.client, {
    workflow: 'restore',
    args: [{ inventory: input, mode: 'in-place', ...extra }],
    cluster: inv.cluster,
    operation: 'restore',
    taskQueue,
  });
  await eventually(
    'the restore gate waiting',
    async () => (await h.query(progress)).steps.find((s) => s.name === 'restore')?.status,
    (s) => s === 'waiting',
    300_000,
  );
  await h.executeUpdate(approve, { args: [{ gate: 'restore', approver: 'lab-test' }] });
  return h;
}

before(async () => {
  if (skip) return;
  ({ input, inventory: inv } = await inventoryInput(LAB));
  assert.ok(inv.nodes.backup.length > 0, `${LAB} has no backup CT (nodes.backup)`);
  env = await startTestServer();
  const w = startWorkerProc({ name: 'worker-1', address: env.address, taskQueue, countDir });
  procs.push(w);
  await workerReady(w, 300_000);
  const leader = await waitHealthyDirect(inv);
  await sqlOn(ip(leader), 'drop table if exists pgha_restore_test');
  await sqlOn(
    ip(leader),
    'create table pgha_restore_test (id int primary key, at timestamptz not null default clock_timestamp())',
  );
  const h = await startRunbook<typeof backup>(env.client, {
    workflow: 'backup',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'backup',
    taskQueue,
  });
  await h.result();
  // two known batches of commits with T between them
  await sqlOn(ip(leader), 'insert into pgha_restore_test (id) select g from generate_series(1, 100) g');
  await new Promise((r) => setTimeout(r, 1000));
  T = (
    await sqlOn<{ t: string }>(
      ip(leader),
      'select to_char(clock_timestamp() at time zone \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\') as t',
    )
  )[0]!.t;
  await new Promise((r) => setTimeout(r, 1000));
  await sqlOn(ip(leader), 'insert into pgha_restore_test (id) select g from generate_series(101, 200) g');
});

after(async () => {
  for (const w of procs) await w.stop();
  await env?.teardown();
});

void test(
  'in place, a failure after the move-aside: the old data goes back and the cluster runs as before',
  { skip, timeout: 600_000 },
  async () => {
    const leader = await waitHealthyDirect(inv);
    const sysid = (
      await sqlOn<{ s: string }>(ip(leader), 'select system_identifier::text as s from pg_control_system()')
    )[0]!.s;
    const h = await restoreRun({ failAfter: 'move aside' });
    await assert.rejects(h.result(), (e: unknown) => {
      assert.ok(e instanceof WorkflowFailedError);
      assert.match(
        String(e.cause?.message),
        /injected failure.*old data directories were put back.*every replica streams from/,
      );
      return true;
    });
    // right away, directly on the old leader (the run said so): every replica streams from it
    const streaming = await sqlOn<{ c: string }>(
      ip(leader),
      `select count(*)::text as c from pg_stat_replication where ${MEMBER_STREAMING}`,
    );
    assert.equal(streaming[0]!.c, String(inv.nodes.postgres.length - 1), 'every replica streams at once');
    const now = await waitHealthyDirect(inv);
    assert.equal(now, leader, 'the old leader leads again');
    for (const n of inv.nodes.postgres) {
      const [r] = await sqlOn<{ c: string; s: string }>(
        n.ip,
        'select count(*)::text as c, (select system_identifier::text from pg_control_system()) as s from pgha_restore_test',
      );
      assert.equal(r!.c, '200', `${n.hostname}: every row still there`);
      assert.equal(r!.s, sysid);
      assert.equal(leftAside(n.vmid), '', `${n.hostname}: nothing left aside`);
    }
  },
);

void test(
  'in place to a time T between two known commits: exactly the rows before T, a new timeline, replicas streaming',
  { skip, timeout: 900_000 },
  async (t) => {
    const before = await timelineOf(inv, ip(await waitHealthyDirect(inv)));
    const h = await restoreRun({ targetTime: T });
    const r = await h.result();
    t.diagnostic(`restored to ${T}: ${r.verified?.stoppedAt}; first backup ${r.firstBackup}`);
    assert.equal(r.outcome, 'restored');
    const leader = await waitHealthyDirect(inv);
    assert.ok((await timelineOf(inv, ip(leader))) > before, 'a new timeline');
    // the bootstrap's recovery settings are not left in the leader's postgresql.conf (the next base
    // backup would carry them into every restore of it)
    const vmid = inv.nodes.postgres.find((n) => n.hostname === leader)!.vmid;
    const conf = `${inv.postgresql.dataDir}/postgresql.conf`;
    assert.equal(
      inCt(vmid, [
        'sh',
        '-c',
        `grep -E "^(recovery_target_time|restore_command) = '[^']" "$1" || true`,
        'sh',
        conf,
      ]).trim(),
      '',
      `${leader}: no recovery_target_time or restore_command left in ${conf}`,
    );
    const replicas = await sqlOn<{ c: string }>(
      ip(leader),
      "select count(*)::text as c from pg_stat_replication where state = 'streaming' and application_name not like 'barman%'",
    );
    assert.equal(replicas[0]!.c, String(inv.nodes.postgres.length - 1));
    for (const n of inv.nodes.postgres) {
      await eventually(
        `${n.hostname} replays the restored rows`,
        async () =>
          (await sqlOn<{ c: string }>(n.ip, 'select count(*)::text as c from pgha_restore_test'))[0]!.c,
        (c) => c === '100',
        60_000,
      );
      const [x] = await sqlOn<{ lo: string; hi: string; late: string }>(
        n.ip,
        'select min(id)::text as lo, max(id)::text as hi, count(*) filter (where at >= $1)::text as late from pgha_restore_test',
        [T],
      );
      assert.deepEqual(x, { lo: '1', hi: '100', late: '0' }, `${n.hostname}: every row before T, none after`);
      assert.equal(leftAside(n.vmid), '', `${n.hostname}: no old data directory or staging left`);
    }
  },
);
