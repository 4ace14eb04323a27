/**
 * `pgha deploy --synchronous` on the lab (PGHA_LAB_INVENTORY, default runbooks/clusters/lab.yaml;
 * it must have a backup CT): Barman's WAL receiver is the synchronous standby, checked from
 * outside pgha — SQL directly on the members, the receiver's process read in the backup CT:
 *  - every member's postgresql.auto.conf names the receiver in synchronous_standby_names; on the
 *    leader pg_stat_replication shows it 'sync'; pg_receivewal runs with --synchronous; a commit
 *    through HAProxy returns only once the receiver has flushed it (its flush_lsn past the commit);
 *  - after a switchover the same holds on the new leader (receive-wal follows it) and writes commit;
 *  - `pgha deploy --no-synchronous` takes it back: nothing named, the receiver asynchronous.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import { BARMAN_RECEIVER_NAME } from '../../activities/render';
import { inventoryInput } from '../../clients/inventory-input';
import { startRunbook } from '../../clients/runbook';
import { labNotUpReason } from '../../lab/testing';
import type { Inventory } from '../../runbooks/schema';
import type { HandoffReport } from '../../workflows/switchover';
import { inCt, sqlAs, waitHealthyDirect } from '../helpers/lab-direct';
import { repoRoot, waitFor } from '../helpers/local-common';
import type { Proc } from '../helpers/local-common';
import { startWorkerProc, workerReady } from '../helpers/worker-procs';
import { startTestServer, uniqueId } from '../helpers/temporal';

const LAB = process.env.PGHA_LAB_INVENTORY ?? join(repoRoot, 'runbooks/clusters/lab.yaml');
const skip = labNotUpReason();

let env: TestWorkflowEnvironment;
let inv: Inventory;
let input: Awaited<ReturnType<typeof inventoryInput>>['input'];
let worker: Proc | undefined;
const taskQueue = uniqueId('bksync-lab');
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

const one = <T>(host: string, q: string, params: unknown[] = []) =>
  sqlAs(inv, host, inv.ports.postgresql, async (c) => (await c.query(q, params)).rows[0] as T);

/** synchronous_standby_names as each member's postgresql.auto.conf holds it ('' for nothing). */
async function autoConfNames(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const m of inv.nodes.postgres) {
    const r = await one<{ v: string }>(
      m.ip,
      `select coalesce((select setting from pg_file_settings where name = 'synchronous_standby_names'
         and sourcefile like '%/postgresql.auto.conf' order by seqno desc limit 1), '') as v`,
    );
    out[m.hostname] = r.v;
  }
  return out;
}

/** The receiver's pg_receivewal command line(s) in the backup CT (it has no procps: /proc). */
const receiverArgv = () =>
  inCt(inv.nodes.backup[0]!.vmid, [
    'sh',
    '-c',
    'for p in /proc/[0-9]*; do tr "\\0" " " <"$p/cmdline" 2>/dev/null; echo; done | grep "^[^ ]*/pg_receivewal " || true',
  ]).trim();

/** On `leader`: the receiver 'sync', running with --synchronous, and a commit through HAProxy flushed by it. */
async function synchronousOn(leader: string): Promise<void> {
  await waitFor(`${BARMAN_RECEIVER_NAME} sync on ${leader}`, 180_000, async () => {
    const r = await one<{ s: string } | undefined>(
      node(leader).ip,
      `select sync_state as s from pg_stat_replication where application_name = $1 and state = 'streaming'`,
      [BARMAN_RECEIVER_NAME],
    ).catch(() => undefined);
    return r?.s === 'sync' && / --synchronous( |$)/m.test(receiverArgv());
  });
  const hap = inv.nodes.haproxy[0]!.ip;
  const t0 = Date.now();
  const lsn = await sqlAs(inv, hap, inv.ports.haproxyWrite, async (c) => {
    await c.query(
      'create table if not exists pgha_sync_test (id bigserial primary key, at timestamptz default now())',
    );
    await c.query('begin');
    await c.query('insert into pgha_sync_test default values');
    const r = await c.query<{ lsn: string }>('select pg_current_wal_insert_lsn()::text as lsn');
    await c.query('commit');
    return r.rows[0]!.lsn;
  });
  const took = Date.now() - t0;
  const f = await one<{ flushed: boolean }>(
    node(leader).ip,
    `select flush_lsn >= $2::pg_lsn as flushed from pg_stat_replication where application_name = $1`,
    [BARMAN_RECEIVER_NAME, lsn],
  );
  assert.equal(f.flushed, true, `the receiver flushed the commit (past ${lsn}) before it returned`);
  assert.ok(took < 10_000, `a commit took ${took} ms`);
}

before(async () => {
  if (skip) return;
  ({ input, inventory: inv } = await inventoryInput(LAB));
  assert.ok(inv.nodes.backup.length > 0, `${LAB} has no backup CT (nodes.backup)`);
  env = await startTestServer();
  worker = startWorkerProc({
    name: 'worker-1',
    address: env.address,
    taskQueue,
    countDir: mkdtempSync(join(tmpdir(), 'pgha-count-')),
  });
  await workerReady(worker, 300_000); // bundling the workflows takes minutes on a loaded machine
});

after(async () => {
  // Leave the lab asynchronous for the other tests, whatever happened.
  if (!skip) await run('deployCluster', 'deploy', { synchronousBackup: false }).catch(() => undefined);
  await worker?.stop();
  await env?.teardown();
});

void test(
  'deploy --synchronous: Barman’s receiver is the synchronous standby, also after a switchover; --no-synchronous takes it back',
  { skip, timeout: 900_000 },
  async () => {
    await run('deployCluster', 'deploy', { synchronousBackup: true });
    const first = await waitHealthyDirect(inv);
    assert.deepEqual(
      Object.values(await autoConfNames()),
      inv.nodes.postgres.map(() => BARMAN_RECEIVER_NAME),
      'every member names the receiver',
    );
    await synchronousOn(first);

    const sw = await run<HandoffReport>('switchover', 'switchover');
    const second = await waitHealthyDirect(inv);
    assert.equal(second, sw.to);
    assert.notEqual(second, first);
    const t0 = Date.now();
    await synchronousOn(second);
    console.log(`synchronous again on ${second} ${Date.now() - t0} ms after the switchover's end`);

    await run('deployCluster', 'deploy', { synchronousBackup: false });
    assert.deepEqual(
      Object.values(await autoConfNames()),
      inv.nodes.postgres.map(() => ''),
      'no member names the receiver any more',
    );
    const s = await one<{ s: string }>(node(second).ip, 'show synchronous_standby_names');
    assert.equal(Object.values(s)[0], '');
  },
);
