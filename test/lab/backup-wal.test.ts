/**
 * Barman's WAL archive has no hole across a switchover and a failover, proven on the lab
 * (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml; it must have a backup CT), checked from
 * outside pgha:
 *  - a base backup by the `backup` runbook, then a writer commits rows through HAProxy's write port
 *    all along: a switchover (runbook), then a failover — the leader's CT hard-stopped, the
 *    `failover` runbook, the CT started again and rejoined;
 *  - after each hand-off Barman's receive-wal streams from the new leader through its permanent slot
 *    and `barman check` passes; a WAL switch is archived;
 *  - the archive itself: the base backup restored in the backup CT with every WAL file from
 *    `barman get-wal` (none from the cluster) recovers across both timeline changes to the latest
 *    timeline, and holds exactly the rows the live cluster holds — every commit acknowledged
 *    before the hard stop's last second and every one after the failover. (Asynchronous
 *    replication may lose the commits of the dead leader's last moments: the cluster lost those
 *    too, and they are counted and printed.)
 * The base backup's verification, as the backup recorded it for `pgha status --backup`, is read in
 * the backup CT too. The cluster is deployed first (deployCluster: idempotent, fast on a deployed cluster).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import { barmanServer } from '../../activities/render';
import { fault, up } from '../../lab';
import { labNotUpReason } from '../../lab/testing';
import type { Inventory } from '../../runbooks/schema';
import type { BackupResult } from '../../workflows/backup';
import type { HandoffReport } from '../../workflows/switchover';
import { barmanCheckPasses, barmanDirect, restoreArchive } from '../helpers/lab-backup';
import { LabWriter, inCt, sqlAs, timelineOf, waitHealthyDirect } from '../helpers/lab-direct';
import { repoRoot, sleep, waitFor } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { startWorkerProc, workerReady } from '../helpers/worker-procs';
import { startTestServer, uniqueId } from '../helpers/temporal';

const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
const skip = labNotUpReason();

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
let worker: Proc | undefined;
const taskQueue = uniqueId('bkwal-lab');

const node = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!;

async function run<T>(workflow: string, operation: string, args: Record<string, unknown> = {}): Promise<T> {
  const h = await startRunbook<(a: unknown) => Promise<T>>(env.client, {
    workflow,
    args: [{ inventory: input, ...args }],
    cluster: inv.cluster,
    operation,
    taskQueue,
  });
  return h.result();
}

/** Barman streams from `leader` again: the permanent slot active there, `barman check` passing. */
async function streamingFrom(leader: string): Promise<void> {
  await waitFor(`the slot ${inv.backup.slot} active on ${leader}`, 180_000, () =>
    sqlAs(inv, node(leader).ip, inv.ports.postgresql, async (c) => {
      const r = await c.query<{ active: boolean }>(
        'select active from pg_replication_slots where slot_name = $1',
        [inv.backup.slot],
      );
      return r.rows[0]?.active === true;
    }).catch(() => false),
  );
  await waitFor('barman check passing', 120_000, () => Promise.resolve(barmanCheckPasses(inv)));
}

/** A replica other than `dead` that Patroni reports running or streaming (the least lag first), bounded. */
async function liveReplica(dead: string): Promise<string> {
  let found: string | undefined;
  await waitFor(`a running replica other than ${dead}`, 60_000, async () => {
    for (const n of inv.nodes.postgres.filter((x) => x.hostname !== dead)) {
      try {
        const r = await fetch(`http://${n.ip}:${inv.ports.patroniRestApi}/cluster`, {
          signal: AbortSignal.timeout(3000),
        });
        const c = (await r.json()) as { members: { name: string; state: string; lag?: number | string }[] };
        const ok = c.members
          .filter((m) => m.name !== dead && (m.state === 'running' || m.state === 'streaming'))
          .sort((a, b) => (Number(a.lag) || 0) - (Number(b.lag) || 0));
        found = ok[0]?.name;
        if (found) return true;
      } catch {
        // the next member
      }
    }
    return false;
  });
  return found!;
}

before(async () => {
  if (skip) return;
  ({ input, inventory: inv } = await inventoryInput(LAB));
  assert.ok(inv.nodes.backup.length > 0, `${LAB} has no backup CT (nodes.backup)`);
  up({ inventory: LAB, log: () => undefined }); // a CT an earlier run left hard-stopped
  env = await startTestServer();
  worker = startWorkerProc({
    name: 'worker-1',
    address: env.address,
    taskQueue,
    countDir: mkdtempSync(join(tmpdir(), 'pgha-count-')),
  });
  await workerReady(worker, 300_000); // bundling the workflows takes minutes on a loaded machine
  await run<unknown>('deployCluster', 'deploy');
  await waitHealthyDirect(inv);
});

after(async () => {
  await worker?.stop();
  await env?.teardown();
});

void test(
  'the WAL archive has no hole across a switchover and a failover: a restore from it holds every row the cluster holds',
  { skip, timeout: 900_000 },
  async () => {
    const first = await waitHealthyDirect(inv);
    await streamingFrom(first);
    const base = await run<BackupResult>('backup', 'backup');
    assert.equal(base.kind, 'physical');
    if (base.kind !== 'physical') return;
    // What `pgha status --backup` shows as "verified": recorded in the backup CT by the backup.
    const rec = JSON.parse(
      inCt(inv.nodes.backup[0]!.vmid, [
        'cat',
        `${inv.backup.storage.path}/pgha-verified/${base.backupId}.json`,
      ]),
    ) as { backupId: string; verified: boolean; walComplete: boolean };
    assert.deepEqual([rec.backupId, rec.verified, rec.walComplete], [base.backupId, true, true]);
    const tl0 = await timelineOf(inv, node(first).ip);

    const writer = await new LabWriter(inv, `pgha_wal_${Date.now()}`, inv.nodes.haproxy[0]!.ip).start();
    let stoppedAt = 0;
    let restored: Awaited<ReturnType<typeof restoreArchive>> | undefined;
    try {
      await sleep(2000);
      // A switchover: receive-wal follows HAProxy's write port to the new leader.
      const sw = await run<HandoffReport>('switchover', 'switchover');
      const second = await waitHealthyDirect(inv);
      assert.equal(second, sw.to);
      await streamingFrom(second);

      // A failover: the leader's CT hard-stopped, the failover runbook to a replica, the CT back.
      const acked0 = writer.acked.length;
      await waitFor('the writer committing on the new leader', 30_000, () =>
        Promise.resolve(writer.acked.length > acked0 + 20),
      );
      stoppedAt = Date.now();
      console.log(fault.stopCt(node(second).vmid, { inventory: LAB }));
      try {
        const candidate = await liveReplica(second);
        const fo = await run<HandoffReport>('failover', 'failover', { candidate });
        assert.equal(fo.to, candidate);
      } finally {
        up({ inventory: LAB, log: () => undefined });
      }
      const third = await waitHealthyDirect(inv, 240_000);
      assert.notEqual(third, second);
      await streamingFrom(third);
      const ackedAfter = writer.acked.length;
      await waitFor('the writer committing after the failover', 30_000, () =>
        Promise.resolve(writer.acked.length > ackedAfter + 20),
      );
    } finally {
      await writer.stop();
    }
    const leader = await waitHealthyDirect(inv);
    const tl = await timelineOf(inv, node(leader).ip);
    assert.ok(tl >= tl0 + 2, `timeline ${tl0} → ${tl}: a switchover and a failover`);
    barmanDirect(
      inv,
      ['switch-wal', '--force', '--archive', '--archive-timeout', '120', barmanServer(inv)],
      180_000,
    );
    barmanDirect(inv, ['check-backup', barmanServer(inv), base.backupId]);

    const live = await sqlAs(inv, node(leader).ip, inv.ports.postgresql, async (c) =>
      (await c.query<{ id: string }>(`select id from ${writer.table} order by id`)).rows.map((r) =>
        Number(r.id),
      ),
    );
    try {
      restored = await restoreArchive(inv, base.backupId);
      const fromArchive = restored
        .query(`select id from ${writer.table} order by id`)
        .map((r) => Number(r[0]));
      // It followed the timeline history to the end: it promoted onto a timeline after the cluster's.
      const restoredTl = Number(
        restored.query(
          `select ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int`,
        )[0]![0],
      );
      assert.equal(restoredTl, tl + 1, `the restore recovered to timeline ${tl} and promoted`);
      assert.deepEqual(fromArchive, live, 'the archive holds exactly the rows the cluster holds');

      const have = new Set(fromArchive);
      const lost = writer.acked.filter((a) => !have.has(a.id));
      console.log(
        `acknowledged ${writer.acked.length}, in the archive ${fromArchive.length}, lost by the hard stop ${lost.length}` +
          (lost.length ? ` (acknowledged ${lost.map((a) => stoppedAt - a.at).join(', ')} ms before it)` : ''),
      );
      for (const a of lost)
        assert.ok(
          a.at >= stoppedAt - 1000 && a.at <= stoppedAt + 1000,
          `row ${a.id} acknowledged ${stoppedAt - a.at} ms before the hard stop is missing: only the dead leader's last moment may be`,
        );
      assert.ok(writer.acked.length > 0 && fromArchive.length >= writer.acked.length - lost.length);
    } finally {
      restored?.drop();
    }
  },
);
