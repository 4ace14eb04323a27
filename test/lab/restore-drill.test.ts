/**
 * Restore drills end to end on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml; it
 * must have a backup CT and a deployed, healthy cluster: the file sorts after deploy.test.ts), run by
 * a real pgha worker process and checked from outside pgha (Barman and the scratch directory read
 * in the backup CT through LXC, SQL directly on the members):
 *  - a drill of a fresh backup passes: marker found, pg_amcheck clean, the test table's count as
 *    written before the backup (not the rows written after it), the restored LSN at the backup's
 *    end, an RTO; afterwards the scratch copy is gone (directory, process), the cluster is healthy
 *    with the same slots, and Barman's check passes;
 *  - a drill of a deliberately corrupted COPY of that backup (a new Barman backup id, bytes flipped
 *    in the test table's file) fails with DrillFailed naming the corrupted file, removes its scratch
 *    copy, and the original backup still verifies. The copy is deleted afterwards;
 *  - a worker SIGKILLed between the copy and the copy accepting queries: a second worker finishes
 *    the same drill (the copy kept, the RTO counted from the first start) and removes it.
 * About 80 s on the lab.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WorkflowFailedError } from '@temporalio/client';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import { barmanExecutable, barmanServer } from '../../activities/render';
import type { PhysicalBackupResult } from '../../activities/backup';
import type { Inventory } from '../../runbooks/schema';
import type { backup } from '../../workflows/backup';
import type { restoreDrill } from '../../workflows/restore-drill';
import { inCt, sqlAs, waitHealthyDirect } from '../helpers/lab-direct';
import { labNotUpReason } from '../../lab/testing';
import { repoRoot } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { activityCalls, killAt, startWorkerProc, workerReady } from '../helpers/worker-procs';
import { startTestServer, uniqueId } from '../helpers/temporal';
import { notDryRun } from '../../workflows/dry-run';

const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
const skip = labNotUpReason();

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
const procs: Proc[] = [];
const taskQueue = uniqueId('drill-lab');
const countDir = mkdtempSync(join(tmpdir(), 'pgha-count-'));
function startWorker(name: string): Proc {
  const w = startWorkerProc({ name, address: env.address, taskQueue, countDir });
  procs.push(w);
  return w;
}
const ROWS = 2000;
let taken: PhysicalBackupResult;
let relpath: string;

const backupVmid = () => inv.nodes.backup[0]!.vmid;
const asBarman = (argv: string[], timeoutMs = 120_000) =>
  inCt(backupVmid(), ['runuser', '-u', inv.backup.osUser, '--', ...argv], { timeoutMs });
const barman = (args: string[], timeoutMs = 120_000) => asBarman([barmanExecutable(inv), ...args], timeoutMs);
const ip = (name: string) => inv.nodes.postgres.find((n) => n.hostname === name)!.ip;
const sqlOn = <T>(host: string, q: string, params: unknown[] = []) =>
  sqlAs(inv, host, inv.ports.postgresql, async (c) => (await c.query(q, params)).rows as T[]);
const drillRoot = () => `${inv.backup.storage.path}/pgha-drill`;
/** The drill scratch directories in the backup CT, and any process running from one. */
const scratchLeft = () =>
  [
    inCt(backupVmid(), ['sh', '-c', 'ls -A "$1" 2>/dev/null || true', 'sh', drillRoot()]).trim(),
    ...inCt(backupVmid(), ['ps', '-eo', 'args='])
      .split('\n')
      .filter((l) => l.includes(`${drillRoot()}/`) && !l.startsWith('ps ')),
  ]
    .filter((x) => x !== '')
    .join('\n');

async function drill(backupRef: string) {
  return notDryRun(await (await startDrill(backupRef)).result());
}
function startDrill(backupRef: string) {
  return startRunbook<typeof restoreDrill>(env.client, {
    workflow: 'restoreDrill',
    args: [{ inventory: input, backup: backupRef }],
    cluster: inv.cluster,
    operation: 'drill',
    taskQueue,
  });
}

before(async () => {
  if (skip) return;
  ({ input, inventory: inv } = await inventoryInput(LAB));
  assert.ok(inv.nodes.backup.length > 0, `${LAB} has no backup CT (nodes.backup)`);
  env = await startTestServer();
  await workerReady(startWorker('worker-1'), 300_000);
  const leader = await waitHealthyDirect(inv);
  await sqlOn(ip(leader), 'drop table if exists pgha_drill_test');
  await sqlOn(ip(leader), 'create table pgha_drill_test (id bigint primary key, note text not null)');
  await sqlOn(
    ip(leader),
    `insert into pgha_drill_test select g, repeat('x', 200) from generate_series(1, ${ROWS}) g`,
  );
  relpath = (
    await sqlOn<{ p: string }>(ip(leader), `select pg_relation_filepath('pgha_drill_test') as p`)
  )[0]!.p;
  const h = await startRunbook<typeof backup>(env.client, {
    workflow: 'backup',
    args: [{ inventory: input }],
    cluster: inv.cluster,
    operation: 'backup',
    taskQueue,
  });
  taken = (await h.result()) as PhysicalBackupResult;
  // rows after the backup's end: a drill to the backup's consistent point must not have them
  await sqlOn(
    ip(leader),
    `insert into pgha_drill_test select g, 'after' from generate_series(${ROWS + 1}, ${ROWS + 50}) g`,
  );
});

after(async () => {
  for (const w of procs) await w.stop();
  await env?.teardown();
});

void test(
  'a drill of a fresh backup passes, and leaves neither a scratch copy nor a change in the cluster',
  { skip, timeout: 300_000 },
  async (t) => {
    const leader = await waitHealthyDirect(inv);
    const slotsBefore = await sqlOn<{ slot_name: string }>(
      ip(leader),
      'select slot_name from pg_replication_slots order by 1',
    );
    const r = await drill(taken.backupId);
    t.diagnostic(`RTO ${r.restored.rtoSeconds} s, restored LSN ${r.checks.restoredLsn}`);
    assert.deepEqual(r.problems, []);
    assert.equal(r.backup.backupId, taken.backupId);
    assert.equal(r.checks.marker.expected, taken.name);
    assert.equal(r.checks.marker.found, true);
    assert.equal(r.checks.marker.lsn, taken.marker.lsn);
    assert.equal(r.checks.amcheck.ok, true, r.checks.amcheck.detail);
    assert.equal(r.checks.lsnReached, true);
    assert.equal(r.checks.restoredLsn, r.backup.consistentLsn);
    const mine = r.checks.counts.find((c) => c.table === '"public"."pgha_drill_test"');
    assert.ok(mine, `the test table is among the counted ones: ${JSON.stringify(r.checks.counts)}`);
    assert.equal(mine.restored, ROWS);
    assert.equal(mine.atEnd, ROWS);
    assert.equal(mine.atMarker, ROWS);
    // what the backup recorded, read directly: the marker row's counts and the file beside the backup
    const home = `${inv.backup.storage.path}/${barmanServer(inv)}`;
    const file = JSON.parse(asBarman(['cat', `${home}/base/${taken.backupId}/pgha-counts.json`])) as unknown;
    assert.deepEqual(file, taken.tableCounts);
    const marked = await sqlOn<{ counts: { table: string; rows: number }[] }>(
      ip(leader),
      'select counts from pgha_backup_marker where id = $1',
      [taken.name],
    );
    assert.equal(marked[0]?.counts.find((c) => c.table === '"public"."pgha_drill_test"')?.rows, ROWS);
    assert.ok(r.restored.rtoSeconds > 0 && r.restored.rtoSeconds < 120, `RTO ${r.restored.rtoSeconds} s`);
    assert.deepEqual(r.teardown, { stopped: true, removed: true });

    // directly: nothing of the scratch copy is left; the cluster serves as before, same slots
    assert.equal(scratchLeft(), '');
    const now = await waitHealthyDirect(inv);
    assert.deepEqual(
      await sqlOn<{ slot_name: string }>(ip(now), 'select slot_name from pg_replication_slots order by 1'),
      slotsBefore,
    );
    const rows = await sqlOn<{ n: string }>(ip(now), 'select count(*) as n from pgha_drill_test');
    assert.equal(Number(rows[0]!.n), ROWS + 50);
    barman(['check', barmanServer(inv)]); // throws unless every check passes
  },
);

void test(
  'a drill of a corrupted copy of the backup fails naming the corrupted file; the original still verifies',
  { skip, timeout: 300_000 },
  async (t) => {
    const server = barmanServer(inv);
    const home = `${inv.backup.storage.path}/${server}`;
    const copyId = `2000${taken.backupId.slice(4)}`; // older than every real backup: never "latest"
    const copyFile = `${home}/base/${copyId}/data/${relpath}`;
    try {
      // a COPY of the backup under a new id (Barman lists it from its backup.info), never the original
      asBarman(['cp', '-a', `${home}/base/${taken.backupId}`, `${home}/base/${copyId}`], 300_000);
      asBarman([
        'cp',
        '-a',
        `${home}/meta/${taken.backupId}-backup.info`,
        `${home}/meta/${copyId}-backup.info`,
      ]);
      // 64 bytes in the middle of the table's first page turned to 0xff
      asBarman([
        'sh',
        '-c',
        'head -c 64 /dev/zero | tr "\\000" "\\377" | dd of="$1" bs=1 seek=4096 count=64 conv=notrunc status=none',
        'sh',
        copyFile,
      ]);
      // cmp exits 1 (a throw here) when the files differ: the copy is corrupted, the original not
      assert.throws(() =>
        asBarman(['cmp', '-s', copyFile, `${home}/base/${taken.backupId}/data/${relpath}`]),
      );
      const err = await drill(copyId).then(
        () => assert.fail('the drill of a corrupted backup passed'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof WorkflowFailedError, String(err));
      const msg = err.cause?.message ?? '';
      t.diagnostic(msg);
      assert.match(msg, /FAILED/);
      assert.ok(msg.includes(relpath), `the corrupted file ${relpath} is named: ${msg}`);
      assert.equal(scratchLeft(), '');
      // the original is untouched: it still verifies against its manifest
      barman(['verify-backup', server, taken.backupId], 600_000);
    } finally {
      inCt(backupVmid(), [
        'sh',
        '-c',
        'if [ -e "$2" ]; then runuser -u "$3" -- "$4" delete "$1" "$5" || true; fi; rm -rf "$2" "$6"',
        'sh',
        server,
        `${home}/base/${copyId}`,
        inv.backup.osUser,
        barmanExecutable(inv),
        copyId,
        `${home}/meta/${copyId}-backup.info`,
      ]);
    }
  },
);

void test(
  'a worker SIGKILLed mid-restore: another worker finishes the same drill, the RTO counted from the first start',
  { skip, timeout: 300_000 },
  async () => {
    const copied = () =>
      inCt(backupVmid(), [
        'sh',
        '-c',
        'for d in "$1"/*/; do [ -e "$d.pgha-copied" ] && [ ! -e "$d.pgha-ready" ] && echo yes; done; true',
        'sh',
        drillRoot(),
      ]).includes('yes');
    const h = await startDrill(taken.backupId);
    // the copy is complete and the copy's PostgreSQL not yet accepting queries
    const killedAt = await killAt(procs[0]!, 'the restore between copy and ready', 120_000, async () =>
      copied(),
    );
    await workerReady(startWorker('worker-2'), 300_000);
    const r = notDryRun(await h.result());
    assert.deepEqual(r.problems, []);
    assert.equal(
      activityCalls(countDir, 'drillRestore') >= 2,
      true,
      'the restore ran again on the second worker',
    );
    assert.ok(Date.parse(r.restored.startedAt) < killedAt, `started ${r.restored.startedAt} before the kill`);
    assert.ok(Date.parse(r.restored.readyAt) > killedAt, `ready ${r.restored.readyAt} after the kill`);
    assert.ok(r.restored.rtoSeconds >= (killedAt - Date.parse(r.restored.startedAt)) / 1000);
    assert.equal(r.checks.amcheck.ok, true);
    assert.equal(scratchLeft(), '');
  },
);
